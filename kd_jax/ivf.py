"""Approximate search for large collections: an inverted-file index (IVF) over a student's document vectors.

Exact search scores every document for every claim: at Wikipedia's 5.4M documents that is one 5.4M x D matrix
product per claim batch, bound by this CPU's arithmetic. IVF (Jegou et al., 2011; FAISS's IndexIVFFlat) clusters the
vectors once with k-means; a claim is scored against the `lists` centroids with the model's own score, and only the
documents of its `probe` best lists are scored exactly. The vectors are stored again, grouped by list, so each probed
list is one contiguous read. Recall against exact search is the price, measured by benchmarks/wikipedia_scale.py.

Layout (`<index>/ivf-<lists>/`): centroids.npy [L, D], order.npy [N] (document rows grouped by list), offsets.npy
[L + 1] (list l holds order[offsets[l]:offsets[l + 1]]), vecs.npy [N, D] float32 in that order, meta.json last.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from kd_jax import atomic, search


def seeds(x, lists: int, key) -> jax.Array:
  """k-means++ seeding (Arthur and Vassilvitskii, 2007): each next centroid drawn with probability proportional to
  its squared distance from the nearest centroid so far. Random seeding often puts two centroids in one cluster
  and none in another, and Lloyd's steps never move them apart."""
  first = jax.random.randint(key, (), 0, len(x))
  cent = jnp.zeros((lists, x.shape[1]), x.dtype).at[0].set(x[first])
  d2 = jnp.sum((x - x[first]) ** 2, 1)

  def body(i, state):
    cent, d2, key = state
    key, sub = jax.random.split(key)
    pick = jax.random.categorical(sub, jnp.log(jnp.maximum(d2, 1e-30)))
    cent = cent.at[i].set(x[pick])
    return cent, jnp.minimum(d2, jnp.sum((x - x[pick]) ** 2, 1)), key

  return jax.lax.fori_loop(1, lists, body, (cent, d2, key))[0]


def kmeans(sample: np.ndarray, lists: int, iters: int = 10, seed: int = 0) -> np.ndarray:
  """Centroids [lists, D] by Lloyd's algorithm (squared L2) from k-means++ seeds; an empty cluster keeps its
  previous centroid."""
  x = jnp.asarray(sample, jnp.float32)
  cent = jax.jit(seeds, static_argnums=1)(x, lists, jax.random.key(seed))

  @jax.jit
  def step(cent):
    assign = nearest(x, cent)
    sums = jax.ops.segment_sum(x, assign, num_segments=lists)
    counts = jax.ops.segment_sum(jnp.ones(len(x)), assign, num_segments=lists)
    return jnp.where(counts[:, None] > 0, sums / jnp.maximum(counts, 1)[:, None], cent)

  for _ in range(iters):
    cent = step(cent)
  return np.asarray(cent)


def nearest(x, cent):
  """Row of the nearest centroid (squared L2) for each row of x."""
  return jnp.argmin(jnp.sum(cent * cent, 1)[None] - 2 * x @ cent.T, axis=1)


def assign(doc_vecs, cent: np.ndarray, chunk_rows: int = 1 << 16) -> np.ndarray:
  """List [N] of every document (doc_vecs may be memory-mapped or a compact.Table: read in chunks)."""
  fn = jax.jit(nearest)
  c = jnp.asarray(cent)
  return np.concatenate([np.asarray(fn(jnp.asarray(np.asarray(doc_vecs[s:s + chunk_rows], np.float32)), c))
                         for s in range(0, len(doc_vecs), chunk_rows)]).astype(np.int32)


def group(list_of: np.ndarray, lists: int) -> tuple[np.ndarray, np.ndarray]:
  """(order [N]: document rows grouped by list, ascending within a list; offsets [L + 1])."""
  order = np.argsort(list_of, kind="stable")
  offsets = np.concatenate([[0], np.cumsum(np.bincount(list_of, minlength=lists))])
  return order.astype(np.int64), offsets.astype(np.int64)


def build(root: Path, doc_vecs, lists: int, sample: int = 100_000, iters: int = 10, seed: int = 0,
          chunk_rows: int = 1 << 16) -> Path:
  """Writes the IVF of `doc_vecs` into `root` (reused if complete with the same settings)."""
  root = Path(root)
  want = {"lists": lists, "sample": sample, "iters": iters, "seed": seed, "num_docs": len(doc_vecs)}
  if (root / "meta.json").is_file() and settings(root) == want:
    return root
  started = time.time()
  root.mkdir(parents=True, exist_ok=True)
  (root / "meta.json").unlink(missing_ok=True)
  rows = np.sort(np.random.default_rng(seed).choice(len(doc_vecs), min(sample, len(doc_vecs)), replace=False))
  cent = kmeans(np.asarray(doc_vecs[rows], np.float32), lists, iters, seed)
  order, offsets = group(assign(doc_vecs, cent, chunk_rows), lists)
  vecs = np.lib.format.open_memmap(root / "vecs.npy", mode="w+", dtype=np.float32, shape=(len(order), cent.shape[1]))
  for s in range(0, len(order), chunk_rows):
    rows = order[s:s + chunk_rows]
    perm = np.argsort(rows)  # read in row order (a memory-mapped table likes that), put back in list order
    got = np.asarray(doc_vecs[rows[perm]], np.float32)
    vecs[s:s + len(rows)][perm] = got
  vecs.flush()
  del vecs
  for name, arr in (("centroids.npy", cent), ("order.npy", order), ("offsets.npy", offsets)):
    with atomic.open_for_write(root / name, "wb") as f:
      np.save(f, arr)
  # last: marks the IVF complete; the build time rides along for benchmarks that find it built
  atomic.write_text(root / "meta.json", json.dumps({**want, "build_minutes": (time.time() - started) / 60}))
  logging.info("IVF of %d documents in %d lists -> %s", len(order), lists, root)
  return root


def settings(root: Path) -> dict:
  """What a built IVF was built with (its meta.json, less the build time)."""
  meta = json.loads((Path(root) / "meta.json").read_text())
  return {k: v for k, v in meta.items() if k != "build_minutes"}


class IVF:
  """A built IVF, searched with a model's own `score` (so dot and scaled-cosine students both work)."""

  def __init__(self, root: Path):
    root = Path(root)
    if not (root / "meta.json").is_file():
      raise FileNotFoundError(f"No complete IVF in {root}: build it first (ivf.build).")
    self.centroids = np.load(root / "centroids.npy")
    self.order = np.load(root / "order.npy", mmap_mode="r")
    self.offsets = np.load(root / "offsets.npy")
    self.vecs = np.load(root / "vecs.npy", mmap_mode="r")

  def search(self, built, params, claim_vecs: np.ndarray, k: int, probe: int,
             doc_bias: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(scores [Q, k], rows [Q, k]) from each claim's `probe` best lists, less `doc_bias` [N] as in search.top_k;
    rows of documents never reached are -1."""
    score = search.scorer(built)
    probe = min(probe, len(self.centroids))
    lists = np.argsort(-np.asarray(score(params, claim_vecs, self.centroids)), axis=1, kind="stable")[:, :probe]
    out_scores = np.full((len(claim_vecs), k), -np.inf, np.float32)
    out_rows = np.full((len(claim_vecs), k), -1, np.int64)
    for i, chosen in enumerate(lists):
      spans = [(self.offsets[l], self.offsets[l + 1]) for l in np.sort(chosen)]
      at = np.concatenate([np.arange(a, b) for a, b in spans]) if spans else np.zeros(0, np.int64)
      if not len(at):
        continue
      cand = np.concatenate([self.vecs[a:b] for a, b in spans])
      # Padded to a power of two, so a handful of shapes compile, not one per claim.
      size = 1 << int(np.ceil(np.log2(len(cand))))
      padded = np.concatenate([cand, np.zeros((size - len(cand), cand.shape[1]), np.float32)])
      s = np.asarray(score(params, claim_vecs[i:i + 1], padded))[0, : len(cand)]
      rows = np.asarray(self.order[at])
      if doc_bias is not None:
        s = s - doc_bias[rows]
      best = np.lexsort((rows, -s))[:k]  # best first; ties to the lower document row, as exact search
      out_scores[i, : len(best)], out_rows[i, : len(best)] = s[best], rows[best]
    return out_scores, out_rows

"""Dense retrieval with a claim-independent student: encode the collection once, then search by dot product.

The document matrix is split by rows over the mesh's `data` axis; each search is one matrix product and an
exact top-k, so it scales with devices the same way training does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from kd_jax import atomic, compact, doc_norms, metrics, sharding
from kd_jax.data import tokenize
from kd_jax.data.jsonl import read_lines
from kd_jax.data.prepare import Prepared
from kd_jax.models import students
from kd_jax.models.build import Built


# Jitted functions per (module, mesh, shape settings): building them anew at every call would retrace and recompile
# each time (an index built chunk by chunk, a search claim by claim). The module is kept in the value, so its id is
# never reused while cached.
_JITTED: dict[tuple, tuple[Any, Any]] = {}


def _cached(module, key: tuple, make):
  full = (id(module),) + key
  if full not in _JITTED:
    _JITTED[full] = (module, make())
  return _JITTED[full][1]


def _encode_rows(built: Built, params, ids: np.ndarray, mesh, batch_size: int, method: str) -> np.ndarray:
  """Vectors [n, D] for token rows [n, L], in fixed-size batches (one compile), padding the last one. A row with no
  words (an empty document) gets a zero vector, so it scores 0 against every claim: the towers would give it their
  biases' vector, which matches every claim somewhat, and which the calibration would scale up to the collection's
  median norm (doc_norms.py). A real document whose score for a claim is below 0 ranks under it."""
  step = batch_size - batch_size % mesh.shape["data"] or mesh.shape["data"]
  fn = _cached(built.module, ("encode", method, mesh), lambda: jax.jit(
      lambda p, x: built.module.apply({"params": p}, x, method=getattr(built.module, method)),
      in_shardings=(None, sharding.batch_sharding(mesh)), out_shardings=sharding.replicated(mesh)))
  out = []
  for start in range(0, len(ids), step):
    chunk = ids[start:start + step]
    padded = np.concatenate([chunk, np.zeros((step - len(chunk), ids.shape[1]), ids.dtype)])
    out.append(np.asarray(fn(params, sharding.put(padded, sharding.batch_sharding(mesh))))[: len(chunk)])
  vecs = np.concatenate(out)
  empty = ~(ids != 0).any(axis=1)  # 0: the padding id
  if empty.any():
    vecs = np.where(empty[:, None], 0.0, vecs).astype(vecs.dtype)
  return vecs


def encode_collection(built: Built, params, prepared: Prepared, mesh, batch_size: int = 256) -> np.ndarray:
  return encode_docs(built, params, prepared.docs_words, mesh, batch_size)


def encode_docs(built: Built, params, word_ids: np.ndarray, mesh, batch_size: int = 256) -> np.ndarray:
  return _encode_rows(built, params, word_ids, mesh, batch_size, "encode_docs")


def encode_claims(built: Built, params, word_ids: np.ndarray, mesh, batch_size: int = 256) -> np.ndarray:
  return _encode_rows(built, params, word_ids, mesh, batch_size, "encode_claims")


def top_k(built: Built, params, claim_vecs: np.ndarray, doc_vecs: np.ndarray, k: int, mesh,
          chunk_rows: int = 1 << 18, approx_recall: float = 0.0, doc_bias: np.ndarray | None = None):
  """Exact top-k (scores [Q, k], rows [Q, k]) of every claim over the whole collection, best first.

  `doc_vecs` may be a memory-mapped array larger than memory: documents are scored `chunk_rows` at a time (each
  chunk split by rows over `data`, padded to one fixed shape so one compile serves every chunk; padding can never
  be returned), and each chunk's top k is merged into the running best. Ties go to the lower row, as in one
  `lax.top_k` over everything. Scores use the model's own `score` (dot or scaled cosine), so search and training
  agree. `approx_recall` > 0 takes each chunk's top k with `lax.approx_max_k` at that recall target instead (exact
  on CPU, where XLA has no approximate kernel; faster on TPU). `doc_bias` [N] is subtracted from every claim's
  score of each document (hubness.py's correction). A doc_norms.Scaled index is read as stored and its dense parts
  (and lexical parts, if it scales them) scaled inside the step.
  """
  dense, norm_scale, lex_scale = 0, None, None
  if isinstance(doc_vecs, doc_norms.Scaled):  # scaled on the device inside the step, not copied and scaled by NumPy
    lex_scale = doc_vecs.lex_scale if doc_vecs.lexical else None
    doc_vecs, norm_scale, dense = doc_vecs.vecs, doc_vecs.scale, doc_vecs.dense_dim
  lexical = lex_scale is not None
  dot = _plain_dot(built)
  n, d = doc_vecs.shape
  shards = mesh.shape["data"]
  step = min(chunk_rows, n)
  step = -(-step // shards) * shards
  kc = min(k, step)
  k = min(k, n)

  # A compact index (compact.Table) travels to the device as stored and is decoded there, inside the search step:
  # a quarter (int8) or half (bfloat16) of the bytes to move, and no float32 copy made by NumPy first.
  dtype = doc_vecs.dtype if isinstance(doc_vecs, compact.Table) else "float32"

  def make():
    @jax.jit
    def search_chunk(p, claims, docs, scales, bias, norm, lex, valid):
      docs = _decode_on_device(docs, scales, dtype)
      if lexical:  # doc_norms.Scaled, both parts: each row's dense part times one factor, its lexical part another
        docs = docs * jnp.where(jnp.arange(d)[None] < dense, norm[:, None], lex[:, None])
      elif dense and not dot:  # doc_norms.Scaled: each row's dense part times its factor
        docs = jnp.where(jnp.arange(d)[None] < dense, docs * norm[:, None], docs)
      scores = built.module.apply({"params": p}, claims, docs, method=built.module.score) - bias[None]  # [Q, step]
      if dense and dot and not lexical:  # a plain dot product, cheaper: a dense part times f adds (f - 1) x its score
        scores = scores + (norm - 1.0)[None] * (claims[:, :dense] @ docs[:, :dense].T)
      scores = jnp.where(jnp.arange(step)[None] < valid, scores, -jnp.inf)
      if approx_recall:
        return jax.lax.approx_max_k(scores, kc, recall_target=approx_recall)
      return jax.lax.top_k(scores, kc)
    return search_chunk
  search = _cached(built.module, ("top_k", step, kc, approx_recall, dtype, dense, dot, lexical), make)
  rows_sharded, per_row = NamedSharding(mesh, P("data", None)), NamedSharding(mesh, P("data"))

  claims = jnp.asarray(claim_vecs)
  best_scores = np.zeros((len(claim_vecs), 0), np.float32)
  best_rows = np.zeros((len(claim_vecs), 0), np.int64)
  for start in range(0, n, step):
    if dtype == "float32":
      chunk = np.asarray(doc_vecs[start:start + step], np.float32)
      scales = np.ones(len(chunk))
    else:
      chunk = np.asarray(doc_vecs.stored[start:start + step])
      scales = np.ones(len(chunk)) if doc_vecs.scales is None else np.asarray(doc_vecs.scales[start:start + step])
    valid = len(chunk)
    bias, norm, lex = np.zeros(step, np.float32), np.ones(step, np.float32), np.ones(step, np.float32)
    if doc_bias is not None:
      bias[:valid] = doc_bias[start:start + step]
    if norm_scale is not None:
      norm[:valid] = norm_scale[start:start + step]
    if lexical:
      lex[:valid] = lex_scale[start:start + step]
    if valid < step:
      chunk = np.concatenate([chunk, np.zeros((step - valid, d), chunk.dtype)])
    scales = np.concatenate([scales, np.zeros(step - valid)]).astype(np.float32)
    scores, rows = search(params, claims, sharding.put(chunk, rows_sharded), sharding.put(scales, per_row),
                          sharding.put(bias, per_row), sharding.put(norm, per_row), sharding.put(lex, per_row), valid)
    merged_scores = np.concatenate([best_scores, np.asarray(scores)], axis=1)
    merged_rows = np.concatenate([best_rows, np.asarray(rows).astype(np.int64) + start], axis=1)
    order = np.argsort(-merged_scores, axis=1, kind="stable")[:, :k]  # earlier chunks first among ties
    best_scores = np.take_along_axis(merged_scores, order, 1)
    best_rows = np.take_along_axis(merged_rows, order, 1)
  return best_scores, best_rows


def _plain_dot(built: Built) -> bool:
  """Whether the model scores with DualEncoder's own plain dot product (not cosine, not a student's own `score`)."""
  module = built.module
  return (isinstance(module, students.DualEncoder) and type(module).score is students.DualEncoder.score
          and module.config.scoring == "dot")


def _decode_on_device(stored, scales, dtype: str):
  """compact.decode in jnp, for the rows of one search chunk (float32 rows pass through)."""
  if dtype == "bfloat16":
    return jax.lax.bitcast_convert_type(stored, jnp.bfloat16).astype(jnp.float32)
  if dtype == "int8":
    return stored.astype(jnp.float32) * scales[:, None]
  return stored


def search_split(built: Built, params, prepared: Prepared, split: str, mesh, k: int = 100):
  """Every claim of a prepared split searched over the whole collection: (scores [Q, k], rows [Q, k], claim ids)."""
  src = prepared.source(split)
  examples = [src[i] for i in range(len(src))]
  claim_vecs = encode_claims(built, params, np.stack([e["claim_words"] for e in examples]), mesh)
  doc_vecs = encode_collection(built, params, prepared, mesh)
  scores, rows = top_k(built, params, claim_vecs, doc_vecs, k, mesh)
  return scores, rows, [e["claim_id"].decode() for e in examples]


def scorer(built: Built):
  """The model's own `score(params, claims, docs)`, jitted once per module (search, hub penalties, IVF share it)."""
  return _cached(built.module, ("score",), lambda: jax.jit(
      lambda p, c, d: built.module.apply({"params": p}, c, d, method=built.module.score)))


def score_rows(built: Built, params, claim_vecs: np.ndarray, doc_vecs: np.ndarray, rows: np.ndarray,
               batch_size: int = 256) -> np.ndarray:
  """The model's scores [Q, U] of chosen documents (rows [Q, U], entries < 0 are padding and score 0)."""
  fn = scorer(built)
  out = []
  for start in range(0, len(rows), batch_size):
    r = rows[start:start + batch_size]
    scores = np.asarray(fn(params, claim_vecs[start:start + batch_size], doc_vecs[np.maximum(r, 0)]))
    out.append(np.where(r >= 0, scores, 0.0))
  return np.concatenate(out).astype(np.float32)


def run_from_arrays(scores: np.ndarray, rows: np.ndarray, mask: np.ndarray, claim_ids: list[str],
                    doc_ids: list[str], depth: int) -> dict[str, dict[str, float]]:
  """A pytrec-style run {claim: {doc: score}} keeping each claim's `depth` best valid documents."""
  run = {}
  for i, q in enumerate(claim_ids):
    valid = np.flatnonzero(mask[i])
    best = valid[np.argsort(-scores[i, valid], kind="stable")[:depth]]
    run[q] = {doc_ids[rows[i, j]]: float(scores[i, j]) for j in best}
  return run


def full_collection_metrics(scores: np.ndarray, rows: np.ndarray, claim_ids: list[str], doc_ids: list[str],
                            qrels: dict[str, dict[str, int]], ks=(1, 5, 10, 100)) -> dict[str, float]:
  run = {q: {doc_ids[r]: float(s) for r, s in zip(rows[i], scores[i])} for i, q in enumerate(claim_ids)}
  return metrics.evaluate_run(run, {q: qrels[q] for q in claim_ids}, ks=ks)


# Files stored beside an index and computed from its vectors (indexing.part_norms, indexing.hub_penalty): they go
# when the vectors are rebuilt.
DERIVED = ("dense_norms.npy", "lexical_norms.npy", "hub_penalty.npy", "hub_penalty.json", "hub_penalty_claims.npy",
           "hub_penalty_claims.json", "hub_penalty_train.npy", "hub_penalty_train.json")


class Index:
  """Stored document vectors of one student (`<stage>/index/`): written by mode=index, read by mode=search."""

  def __init__(self, root: Path):
    self.root = Path(root)

  def exists(self) -> bool:
    return (self.root / "meta.json").is_file()

  def write(self, doc_vecs: np.ndarray, doc_ids: list[str], meta: dict[str, Any]) -> None:
    self.root.mkdir(parents=True, exist_ok=True)
    # meta.json marks the index complete: an older one goes first, so a rebuild killed midway never pairs it with
    # new vectors (nor files derived from the old ones); each file is renamed into place whole, and meta.json last.
    for name in ("meta.json",) + DERIVED:
      (self.root / name).unlink(missing_ok=True)
    with atomic.open_for_write(self.root / "doc_vecs.npy", "wb") as f:
      np.save(f, doc_vecs.astype(np.float32))
    atomic.write_text(self.root / "doc_ids.json", json.dumps(doc_ids))
    atomic.write_text(self.root / "meta.json", json.dumps(meta, indent=2))

  def read(self) -> tuple[np.ndarray, list[str], dict[str, Any]]:
    """(float32 vectors [N, D], document ids, meta). The vectors are memory-mapped; a compact index (meta `dtype`,
    compact.py) is decoded row by row as search reads it (compact.Table), never whole."""
    if not self.exists():
      raise FileNotFoundError(f"No index in {self.root}: build it first with --config.mode=index.")
    meta = json.loads((self.root / "meta.json").read_text())
    dtype = meta.get("dtype", "float32")
    stored = np.load(self.root / "doc_vecs.npy", mmap_mode="r")
    scales = np.load(self.root / "doc_scales.npy", mmap_mode="r") if dtype == "int8" else None
    vecs = stored if dtype == "float32" else compact.Table(stored, scales, dtype)
    return vecs, json.loads((self.root / "doc_ids.json").read_text()), meta


def read_query_file(path: str | Path, flag: str = "search.query_file") -> list[str]:
  """The claims of `search.query_file` (or another `flag` naming such a file), one per non-blank line; a file with
  none is an error, not an empty run."""
  path = Path(path).expanduser()
  if not path.is_file():
    raise FileNotFoundError(f"{flag} {path} not found: pass --config.{flag}=/path/to/claims.txt (one claim per line).")
  texts = [line.strip() for _, line in read_lines(path) if line.strip()]
  if not texts:
    raise ValueError(f"{flag} {path} holds no claims (it is empty or blank): put one claim per line"
                     + (", or pass --config.search.query='...'." if flag == "search.query_file" else "."))
  return texts


def claim_word_ids(texts: list[str], vocab: list[str], max_len: int, oov_buckets: int = 0,
                   require_known: bool = True) -> np.ndarray:
  """Student ids for free-text claims; refuses empty claims and, with `require_known`, claims without one word of
  the student's vocabulary (hashed out-of-vocabulary rows alone carry too little to search with; without it the
  caller decides, with `without_known_words`)."""
  index = {w: i for i, w in enumerate(vocab)}
  ids = tokenize.word_ids(index, texts, max_len, oov_buckets)
  for text in texts:
    if not text.strip():
      raise ValueError("Empty claim: pass some text to search for (--config.search.query='...').")
  blind = without_known_words(ids, len(vocab))
  if require_known and blind.any():
    raise ValueError(f"No word of the claim {texts[int(np.argmax(blind))]!r} is in the student's vocabulary "
                     f"({len(vocab):,} words): nothing to search with.")
  return ids


def without_known_words(ids: np.ndarray, vocab_size: int) -> np.ndarray:
  """[n] bool: rows of claim ids holding no word of the student's vocabulary (padding, <unk> and hashed
  out-of-vocabulary ids only)."""
  return ~((ids > 1) & (ids < vocab_size)).any(axis=1)

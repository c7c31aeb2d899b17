"""Documents' dense norms pulled toward the searched collection's median: no labels, no retraining.

A dot-product student's document vector is longer the more of its words the student knows, so on a collection unlike
its training one (page titles for a student of abstracts) the documents with the most known words outscore the rest
for every claim: hubs. A norm belongs to the document alone, so it can be recalibrated for each collection at search
time: every document's dense part is rescaled so that its norm n moves a fraction `strength` of the way, in log
space, to the median m of the dense norms of the collection being searched,

  n' = n ** (1 - strength) * m ** strength.

strength 0 leaves the vectors as trained; 1 gives every document the median norm, so only the direction of its dense
part ranks it. The median is the collection's own, so the dense part keeps the scale the student gave that
collection against the lexical channel, which is left alone (an exact-match score, not a direction). Scoring that
already normalises documents (`doc_cosine`, `cosine`) is unchanged by it. The strength is chosen on dev, once for the
training collection and once for any other (experiments/calibration.py).
"""

from __future__ import annotations

import numpy as np


def check(strength: float, name: str = "strength") -> float:
  strength = float(strength)
  if not 0.0 <= strength <= 1.0:
    raise ValueError(f"{name} must lie in [0, 1] (0: vectors as trained, 1: every document at the collection's "
                     f"median dense norm), got {strength}")
  return strength


def strength_for(config, own: bool) -> float:
  """`search.doc_norms.own` (searching the stage's training collection) or `.other` (any other collection); 0 for
  configs saved before the setting existed."""
  settings = config.get("search", {}).get("doc_norms", None)
  key = "own" if own else "other"
  return check(settings.get(key, 0.0), f"search.doc_norms.{key}") if settings is not None else 0.0


def dense_norms(doc_vecs, dense_dim: int, chunk_rows: int = 1 << 16) -> np.ndarray:
  """L2 norms [N] of each row's first `dense_dim` values; `doc_vecs` may be memory-mapped or a compact.Table (read
  `chunk_rows` at a time)."""
  out = [np.linalg.norm(np.asarray(doc_vecs[s:s + chunk_rows], np.float32)[:, :dense_dim], axis=1)
         for s in range(0, len(doc_vecs), chunk_rows)]
  return np.concatenate(out) if out else np.zeros(0, np.float32)


def factors(norms: np.ndarray, strength: float) -> np.ndarray:
  """Per-document scale [N] of the dense part: (m / n) ** strength, m the median of the non-zero norms. A zero
  dense part (a document of padding only) keeps factor 1."""
  strength = check(strength)
  norms = np.asarray(norms, np.float64)
  live = norms > 0
  if strength == 0.0 or not live.any():
    return np.ones(len(norms), np.float32)
  median = np.median(norms[live])
  out = np.ones(len(norms))
  out[live] = (median / norms[live]) ** strength
  return out.astype(np.float32)


class Scaled:
  """A read-only view of an index whose rows' first `dense_dim` values are multiplied by `scale` [N]: rows read
  (slices or index arrays) come back as float32, so search, fusion pools and the hub correction read it as they
  read the stored vectors, and nothing [N, D] is copied."""

  def __init__(self, doc_vecs, scale: np.ndarray, dense_dim: int):
    if len(scale) != len(doc_vecs):
      raise ValueError(f"{len(scale)} scales for {len(doc_vecs)} documents")
    self.vecs, self.scale, self.dense_dim = doc_vecs, np.asarray(scale, np.float32), int(dense_dim)
    self.shape = tuple(doc_vecs.shape)
    self.dtype = np.dtype(np.float32)

  def __len__(self) -> int:
    return self.shape[0]

  def __getitem__(self, rows) -> np.ndarray:
    out = np.array(self.vecs[rows], np.float32)  # a copy: the stored rows are never written
    out[..., : self.dense_dim] *= self.scale[rows][..., None]
    return out

  def __array__(self, dtype=None, copy=None) -> np.ndarray:
    out = self[:]
    return out if dtype is None else out.astype(dtype)


def calibrated(doc_vecs, dense_dim: int, strength: float, norms: np.ndarray | None = None):
  """`doc_vecs` itself at strength 0, else the Scaled view at `strength`; `norms` [N] (dense_norms, e.g. stored
  beside a large index) spares a pass over the vectors."""
  if check(strength) == 0.0:
    return doc_vecs
  norms = dense_norms(doc_vecs, dense_dim) if norms is None else norms
  return Scaled(doc_vecs, factors(norms, strength), dense_dim)


def dense_dim(built) -> int:
  """How many leading values of a student's vectors are its dense part (the rest: the lexical channel)."""
  return int(built.module.config.out_dim)

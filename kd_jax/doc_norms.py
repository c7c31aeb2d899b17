"""Documents' dense norms pulled toward the searched collection's median: no labels, no retraining.

A dot-product student's document vector is longer the more of its words the student knows, so on a collection unlike
its training one (page titles for a student of abstracts) the documents with the most known words outscore the rest
for every claim: hubs. A norm belongs to the document alone, so it can be recalibrated for each collection at search
time: every document's dense part is rescaled so that its norm n moves a fraction `strength` of the way, in log
space, to the median m of the dense norms of the collection being searched,

  n' = n ** (1 - strength) * m ** strength.

strength 0 leaves the vectors as trained; 1 gives every document the median norm, so only the direction of its dense
part ranks it. The median is the collection's own, so the dense part keeps the scale the student gave that
collection against the lexical channel. Scoring that already normalises documents (`doc_cosine`, `cosine`) is
unchanged by it. The strength is chosen on dev, once for the training collection and once for any other
(experiments/calibration.py).

The lexical channel's part of each document can be pulled the same way, toward the median of the lexical norms, at a
strength of its own (`lex_strength`): its word weights were learned in the training collection's documents, and in a
few-word page title one word can weigh as much as a whole abstract's match ("Dr. Horrible's Sing-Along Blog" matched
every claim with a possessive "'s"). At 1 every document brings the same lexical mass, as BM25's full length
normalisation does. Chosen on dev on top of the calibration above (experiments/lexical_norms.py).
"""

from __future__ import annotations

import numpy as np


NORM_PULL = "0: vectors as trained, 1: every document at the collection's median norm"


def check(strength: float, name: str = "strength", meaning: str = NORM_PULL) -> float:
  strength = float(strength)
  if not 0.0 <= strength <= 1.0:
    raise ValueError(f"{name} must lie in [0, 1] ({meaning}), got {strength}")
  return strength


# What 0 and 1 mean for a search setting that is not a norm pull (calibration.py), for its error message.
_MEANING = {"unk_drop": "0: as trained, 1: out-of-vocabulary words add nothing to the towers' inputs"}


def strength_for(config, own: bool, setting: str = "doc_norms") -> float:
  """`search.<setting>.own` (searching the stage's training collection) or `.other` (any other collection), for the
  dense (`doc_norms`) or the lexical (`lex_norms`) part, or `unk_drop` (calibration.py); 0 for configs saved before
  the setting existed."""
  settings = config.get("search", {}).get(setting, None)
  key = "own" if own else "other"
  if settings is None:
    return 0.0
  return check(settings.get(key, 0.0), f"search.{setting}.{key}", _MEANING.get(setting, NORM_PULL))


def dense_norms(doc_vecs, dense_dim: int, chunk_rows: int = 1 << 16) -> np.ndarray:
  """L2 norms [N] of each row's first `dense_dim` values; `doc_vecs` may be memory-mapped or a compact.Table (read
  `chunk_rows` at a time)."""
  return _norms(doc_vecs, slice(0, dense_dim), chunk_rows)


def lexical_norms(doc_vecs, dense_dim: int, chunk_rows: int = 1 << 16) -> np.ndarray:
  """L2 norms [N] of each row's values after the first `dense_dim` (the lexical channel; 0 for a student without)."""
  return _norms(doc_vecs, slice(dense_dim, None), chunk_rows)


def _norms(doc_vecs, cols: slice, chunk_rows: int) -> np.ndarray:
  out = [np.linalg.norm(np.asarray(doc_vecs[s:s + chunk_rows], np.float32)[:, cols], axis=1)
         for s in range(0, len(doc_vecs), chunk_rows)]
  return np.concatenate(out) if out else np.zeros(0, np.float32)


def factors(norms: np.ndarray, strength: float) -> np.ndarray:
  """Per-document scale [N] of a part (dense or lexical) of norms `norms`: (m / n) ** strength, m the median of the
  non-zero norms. A zero part (a document of padding only) keeps factor 1."""
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
  """A read-only view of an index whose rows' first `dense_dim` values are multiplied by `scale` [N] and the rest (the
  lexical channel) by `lex_scale` [N] (all ones: left as stored): rows read (slices or index arrays) come back as
  float32, so search, fusion pools and the hub correction read it as they read the stored vectors, and nothing [N, D]
  is copied."""

  def __init__(self, doc_vecs, scale: np.ndarray, dense_dim: int, lex_scale: np.ndarray | None = None):
    lex_scale = np.ones(len(scale), np.float32) if lex_scale is None else lex_scale
    if not len(scale) == len(lex_scale) == len(doc_vecs):
      raise ValueError(f"{len(scale)} dense and {len(lex_scale)} lexical scales for {len(doc_vecs)} documents")
    self.vecs, self.scale, self.dense_dim = doc_vecs, np.asarray(scale, np.float32), int(dense_dim)
    self.lex_scale = np.asarray(lex_scale, np.float32)
    self.lexical = bool((self.lex_scale != 1).any())  # whether the lexical part is scaled at all
    self.shape = tuple(doc_vecs.shape)
    self.dtype = np.dtype(np.float32)

  def __len__(self) -> int:
    return self.shape[0]

  def __getitem__(self, rows) -> np.ndarray:
    out = np.array(self.vecs[rows], np.float32)  # a copy: the stored rows are never written
    out[..., : self.dense_dim] *= self.scale[rows][..., None]
    if self.lexical:
      out[..., self.dense_dim:] *= self.lex_scale[rows][..., None]
    return out

  def __array__(self, dtype=None, copy=None) -> np.ndarray:
    out = self[:]
    return out if dtype is None else out.astype(dtype)


def calibrated(doc_vecs, dense_dim: int, strength: float, norms: np.ndarray | None = None, lex_strength: float = 0.0,
               lex_norms: np.ndarray | None = None):
  """`doc_vecs` itself at strengths 0, else the Scaled view: the dense part at `strength`, the lexical part at
  `lex_strength`; `norms` / `lex_norms` [N] (dense_norms / lexical_norms, e.g. stored beside a large index) spare a
  pass over the vectors."""
  strength, lex_strength = check(strength), check(lex_strength, "lex_strength")
  if strength == 0.0 and lex_strength == 0.0:
    return doc_vecs
  ones = np.ones(len(doc_vecs), np.float32)
  scale = ones if strength == 0.0 else factors(dense_norms(doc_vecs, dense_dim) if norms is None else norms, strength)
  lex_scale = ones if lex_strength == 0.0 else factors(
      lexical_norms(doc_vecs, dense_dim) if lex_norms is None else lex_norms, lex_strength)
  return Scaled(doc_vecs, scale, dense_dim, lex_scale)


def dense_dim(built) -> int:
  """How many leading values of a student's vectors are its dense part (the rest: the lexical channel)."""
  return int(built.module.config.out_dim)

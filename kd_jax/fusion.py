"""Hybrid scores: a student's and BM25's scores for the same documents, fused per claim.

Both act on [Q, U] arrays of one claim's documents (its candidate list, or the union of both systems'
top lists) with a validity mask, and `weight` is the student's share: 1 gives the student's ranking, 0 BM25's.

- linear: `w * minmax(student) + (1 - w) * minmax(bm25)`, each min-max normalised over the claim's documents
  (scores of the two systems live on unrelated scales).
- zscore: `w * z(student) + (1 - w) * z(bm25)`, each standardised over the claim's documents (mean 0, std 1).
  Min-max rests on the two most extreme scores of the pool, so one outlier (a BM25 score far above the rest, a
  student's hub) squeezes every other document's normalised score; z-scores rest on the whole pool. The main
  command's CNN, 3 seeds, SciFact, whole collection: test nDCG@10 0.792 ± 0.004 against 0.781 ± 0.006 for min-max,
  dev preferring it on every seed (results/main_recipe.json).
- rrf: weighted reciprocal rank fusion, `w / (k + rank_student) + (1 - w) / (k + rank_bm25)`, k = 60 as in
  Cormack et al. (2009). Tied scores share the best rank, so ties stay ties, as in the single system.
- gated: linear, with the student's share scaled per claim by its agreement with BM25 (the share of the student's
  top 10 that BM25 matches and ranks in its top 100). A student that cannot read a collection returns the same few "hub"
  documents for every claim, which BM25 rarely ranks: the fusion then falls back to BM25 for that claim, without
  labels. A weight chosen on the training collection's dev set can then be carried to other collections.
- coverage: linear, with the student's share scaled per (claim, document) by `reach`, the share of the claim's words
  times the share of the document's words that are in the student's vocabulary (tokenize.coverage). A student
  speaks only for text it can read: on its own collection nearly every word is known and this is the linear fusion;
  on a collection of unknown names (page titles read by a SciFact student) BM25 keeps the say. Measured on the
  first two transfer rows before it was built: SciFact CNN on FEVER-titles 0.899 against BM25's 0.903 (linear 0.835,
  gated 0.858), with the in-domain gain of linear fusion kept.
- zcoverage: coverage on z-scores: `share = w * reach`, `share * z(student) + (1 - share) * z(bm25)`; the z-score
  fusion where the student reads the text, BM25 where it cannot.
"""

from __future__ import annotations

import numpy as np

METHODS = ("linear", "zscore", "rrf", "gated", "coverage", "zcoverage")


def minmax(scores: np.ndarray, mask: np.ndarray) -> np.ndarray:
  """Per row, valid scores mapped onto [0, 1] (a constant row maps to 0); invalid entries are 0."""
  s = np.where(mask, scores.astype(np.float64), np.nan)
  lo, hi = np.nanmin(s, axis=1, keepdims=True), np.nanmax(s, axis=1, keepdims=True)
  out = (s - lo) / np.where(hi > lo, hi - lo, 1.0)
  return np.where(mask, out, 0.0)


def standardise(scores: np.ndarray, mask: np.ndarray) -> np.ndarray:
  """Per row, valid scores minus their mean over their standard deviation (a constant row maps to 0); invalid
  entries are 0."""
  s = np.where(mask, scores.astype(np.float64), np.nan)
  mean, std = np.nanmean(s, axis=1, keepdims=True), np.nanstd(s, axis=1, keepdims=True)
  return np.where(mask, (s - mean) / np.where(std > 0, std, 1.0), 0.0)


def min_ranks(scores: np.ndarray, mask: np.ndarray) -> np.ndarray:
  """1-based rank of each valid entry in its row, best first; ties share the best rank ('competition')."""
  neg = np.where(mask, -scores.astype(np.float64), np.inf)  # ascending = best first; invalid entries last
  ranks = np.empty(neg.shape, np.int64)
  for i, row in enumerate(neg):  # per row: O(U log U) memory-light, unlike a [Q, U, U] comparison
    ranks[i] = 1 + np.searchsorted(np.sort(row), row, side="left")
  return ranks


def linear(student: np.ndarray, bm25: np.ndarray, weight: float, mask: np.ndarray) -> np.ndarray:
  fused = weight * minmax(student, mask) + (1.0 - weight) * minmax(bm25, mask)
  return np.where(mask, fused, -np.inf)


def zscore(student: np.ndarray, bm25: np.ndarray, weight: float, mask: np.ndarray) -> np.ndarray:
  fused = weight * standardise(student, mask) + (1.0 - weight) * standardise(bm25, mask)
  return np.where(mask, fused, -np.inf)


def rrf(student: np.ndarray, bm25: np.ndarray, weight: float, mask: np.ndarray, k: float = 60.0) -> np.ndarray:
  fused = weight / (k + min_ranks(student, mask)) + (1.0 - weight) / (k + min_ranks(bm25, mask))
  return np.where(mask, fused, -np.inf)


def agreement(student: np.ndarray, bm25: np.ndarray, mask: np.ndarray, top: int = 10, depth: int = 100) -> np.ndarray:
  """Per claim [Q], the share of the student's top `top` valid documents that BM25 matches (score > 0) and ranks in
  its top `depth`. Unmatched documents all tie at BM25's lowest score, which on a collection of short texts can be
  rank 5: matching, not rank alone, is the evidence."""
  mine = (min_ranks(student, mask) <= top) & mask
  shared = mine & (min_ranks(bm25, mask) <= depth) & (bm25 > 0)
  return shared.sum(1) / np.maximum(mine.sum(1), 1)


def gated(student: np.ndarray, bm25: np.ndarray, weight: float, mask: np.ndarray) -> np.ndarray:
  share = weight * agreement(student, bm25, mask)[:, None]
  fused = share * minmax(student, mask) + (1.0 - share) * minmax(bm25, mask)
  return np.where(mask, fused, -np.inf)


def covered(student: np.ndarray, bm25: np.ndarray, weight: float, mask: np.ndarray, reach: np.ndarray,
            normalise=minmax) -> np.ndarray:
  share = weight * reach
  fused = share * normalise(student, mask) + (1.0 - share) * normalise(bm25, mask)
  return np.where(mask, fused, -np.inf)


def fuse(method: str, student: np.ndarray, bm25: np.ndarray, weight: float, mask: np.ndarray,
         reach: np.ndarray | None = None) -> np.ndarray:
  """Fused scores [Q, U] (-inf where `mask` is False). `reach` [Q, U] in [0, 1]: what share of each pair's text
  the student reads (the coverage method needs it; the others ignore it)."""
  if not 0.0 <= weight <= 1.0:
    raise ValueError(f"Fusion weight must be in [0, 1] (the student's share), got {weight}.")
  if method in ("coverage", "zcoverage"):
    if reach is None:
      raise ValueError(f"{method} fusion needs the share of each claim's and document's words the student knows "
                       "(reach); its caller passes none.")
    return covered(student, bm25, weight, mask, reach, standardise if method == "zcoverage" else minmax)
  if method == "linear":
    return linear(student, bm25, weight, mask)
  if method == "zscore":
    return zscore(student, bm25, weight, mask)
  if method == "rrf":
    return rrf(student, bm25, weight, mask)
  if method == "gated":
    return gated(student, bm25, weight, mask)
  raise ValueError(f"Unknown fusion method {method!r}: use one of {METHODS}.")


def pair_reach(rows: np.ndarray, claim_cov: np.ndarray, doc_cov_of) -> np.ndarray:
  """[Q, U] reach of each pool entry: its claim's coverage [Q] times its document's; `doc_cov_of(unique rows)` gives
  document coverage only for the rows the pool holds (a large collection is never tokenised whole). Padding
  (rows < 0) has 0."""
  real = rows >= 0
  unique, inverse = np.unique(rows[real], return_inverse=True)
  doc = np.zeros(rows.shape)
  doc[real] = np.asarray(doc_cov_of(unique), np.float64)[inverse]
  return np.asarray(claim_cov, np.float64)[:, None] * doc


def union_rows(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Per row, the distinct document rows of two top lists [Q, ka], [Q, kb] -> rows [Q, ka + kb] (-1 padded), mask."""
  out = np.full((len(a), a.shape[1] + b.shape[1]), -1, np.int64)
  for i, (ra, rb) in enumerate(zip(a, b)):
    rows = list(dict.fromkeys([*ra.tolist(), *rb.tolist()]))
    out[i, : len(rows)] = rows
  return out, out >= 0

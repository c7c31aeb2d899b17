"""First-stage BM25 (bm25s, Lucene variant, English stopwords + Snowball stemming) over title + text."""

from __future__ import annotations

import dataclasses

import numpy as np
import Stemmer

from kd_jax.data.datasets import ClaimSet, Collection


@dataclasses.dataclass
class Candidates:
  """A claim set's candidate lists: rows align with `ClaimSet.ids`."""
  index: np.ndarray   # [num_claims, K] int32 rows of the collection
  scores: np.ndarray  # [num_claims, K] float32 BM25 scores (gold docs forced in get the row's minimum)
  labels: np.ndarray  # [num_claims, K] int32 relevance from qrels
  num_relevant: np.ndarray  # [num_claims] int32 relevant docs in qrels (present in the collection or not)


def _bm25s():
  """bm25s, imported on first use: its import runs a JAX op, which would start the JAX backend before a
  multi-host job has connected its processes (jax.distributed.initialize() must come first)."""
  import bm25s  # pylint: disable=import-outside-toplevel
  return bm25s


class BM25Index:
  """Claims left with no tokens (empty, or only stopwords) match nothing: every document scores 0 for them, and
  `search` returns an arbitrary k documents at score 0 rather than failing the whole split over one claim."""

  def __init__(self, collection: Collection, k1: float = 1.2, b: float = 0.75):
    # The Snowball stemmer matters: without it SciFact nDCG@10 drops well below BEIR's 0.665.
    self._stemmer = Stemmer.Stemmer("english")
    self.collection = collection
    tokens = _bm25s().tokenize([collection.document(i) for i in range(len(collection))], stopwords="en",
                            stemmer=self._stemmer, show_progress=False)
    if not tokens.vocab:  # bm25s would fail with "max() arg is an empty sequence"
      raise ValueError(f"BM25 has nothing to index: none of the collection's {len(collection)} documents holds a word "
                       "beyond stopwords; check the corpus file.")
    self._retriever = _bm25s().BM25(k1=k1, b=b)
    self._retriever.index(tokens, show_progress=False)

  def search(self, texts: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (rows [n, k] int32, scores [n, k] float32), best first; k is capped at the collection size."""
    k = min(k, len(self.collection))
    if not texts:  # an empty split (bm25s cannot retrieve for zero queries)
      return np.zeros((0, k), np.int32), np.zeros((0, k), np.float32)
    tokens = _bm25s().tokenize(texts, stopwords="en", stemmer=self._stemmer, return_ids=False, show_progress=False)
    # A claim of only stopwords has no tokens; bm25s then returns arbitrary zero-score docs (see the class).
    rows, scores = self._retriever.retrieve(tokens, k=k, show_progress=False, n_threads=0)
    return rows.astype(np.int32), scores.astype(np.float32)

  def score_rows(self, texts: list[str], rows: np.ndarray) -> np.ndarray:
    """BM25 scores [n, U] of given document rows [n, U] (entries < 0 are padding and score 0)."""
    tokens = _bm25s().tokenize(texts, stopwords="en", stemmer=self._stemmer, return_ids=False, show_progress=False)
    out = np.zeros(rows.shape, np.float32)
    for i, query in enumerate(tokens):
      if not query:
        continue  # no tokens: scores stay 0 (bm25s's get_scores would raise IndexError on an empty query)
      every = self._retriever.get_scores(query)  # [num_docs]; one pass over the claim's posting lists
      out[i] = np.where(rows[i] >= 0, every[np.maximum(rows[i], 0)], 0.0)
    return out


def candidates_for(index: BM25Index, claims: ClaimSet, k: int, force_gold: bool) -> Candidates:
  """BM25 top-k per claim; with `force_gold` (training) gold docs replace the lowest-ranked non-gold ones."""
  rows, scores = index.search(claims.texts, k)
  doc_index = index.collection.index
  labels = np.zeros_like(rows)
  num_relevant = np.zeros(len(claims), np.int32)
  for i, claim_id in enumerate(claims.ids):
    rels = {doc_index[d]: r for d, r in claims.qrels[claim_id].items() if r > 0 and d in doc_index}
    num_relevant[i] = sum(1 for r in claims.qrels[claim_id].values() if r > 0)
    if force_gold:
      missing = [d for d in rels if d not in set(rows[i].tolist())][: rows.shape[1]]
      if missing:
        slots = [j for j in range(rows.shape[1] - 1, -1, -1) if int(rows[i, j]) not in rels][: len(missing)]
        floor = scores[i].min()
        for slot, d in zip(slots, missing):
          rows[i, slot], scores[i, slot] = d, floor
    labels[i] = [rels.get(int(d), 0) for d in rows[i]]
  return Candidates(index=rows, scores=scores, labels=labels, num_relevant=num_relevant)


def recall_at_k(c: Candidates) -> float:
  """First-stage recall@K: the fraction of each claim's relevant docs in its list, averaged over claims."""
  found = (c.labels > 0).sum(axis=1)
  return float(np.mean(found / np.maximum(c.num_relevant, 1)))

"""Hybrid student + BM25 retrieval: the fusion weight is chosen on dev, then applied to test.

Two settings, as for the students alone:
- reranking: both systems score each claim's BM25 candidate list;
- full collection: the union of the student's and BM25's top-`depth` documents, each document scored exactly by
  both systems (no missing-score guesses), fused, and the best `depth` kept.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from kd_jax import fusion, metrics, search
from kd_jax.data.candidates import BM25Index
from kd_jax.models.build import Built

WEIGHTS = tuple(round(float(w), 2) for w in np.linspace(0.0, 1.0, 11))


@dataclasses.dataclass
class Pool:
  """One split's documents to fuse: [Q, U] scores of both systems over the same document rows."""
  student: np.ndarray
  bm25: np.ndarray
  rows: np.ndarray
  mask: np.ndarray
  claim_ids: list[str]
  qrels: dict[str, dict[str, int]]
  reach: np.ndarray | None = None  # [Q, U] share of each pair's words the student knows (coverage fusion)


def full_collection_pool(built: Built, params, claim_vecs: np.ndarray, doc_vecs: np.ndarray, texts: list[str],
                         claim_ids: list[str], qrels, bm25: BM25Index, mesh, depth: int = 100,
                         claim_cov: np.ndarray | None = None, doc_cov_of=None) -> Pool:
  """`claim_cov` [Q] and `doc_cov_of(rows) -> [n]` (tokenize.coverage of the claims and of chosen documents) give
  the pool its `reach`, which the coverage fusion needs."""
  _, s_rows = search.top_k(built, params, claim_vecs, doc_vecs, depth, mesh)
  b_rows, _ = bm25.search(texts, depth)
  rows, mask = fusion.union_rows(s_rows, b_rows)
  reach = None if claim_cov is None else fusion.pair_reach(rows, claim_cov, doc_cov_of)
  return Pool(student=search.score_rows(built, params, claim_vecs, doc_vecs, rows), bm25=bm25.score_rows(texts, rows),
              rows=rows, mask=mask, claim_ids=claim_ids, qrels={q: qrels[q] for q in claim_ids}, reach=reach)


def full_collection_metrics(pool: Pool, method: str, weight: float, doc_ids: list[str], depth: int = 100) -> dict:
  fused = fusion.fuse(method, pool.student, pool.bm25, weight, pool.mask, pool.reach)
  run = search.run_from_arrays(fused, pool.rows, pool.mask, pool.claim_ids, doc_ids, depth)
  return metrics.evaluate_run(run, pool.qrels, ks=(1, 5, 10, 100))


def rerank_metrics(pred: dict[str, np.ndarray], bm25_scores: np.ndarray, method: str, weight: float,
                   reach: np.ndarray | None = None) -> dict:
  fused = fusion.fuse(method, pred["scores"], bm25_scores, weight, pred["mask"].astype(bool), reach)
  return metrics.evaluate_candidates(fused, pred["labels"], pred["mask"], pred["num_relevant"])


def choose(evaluate_dev, evaluate_test, metric: str = "ndcg@10") -> dict:
  """The weight with the best dev `metric` (the smaller weight on ties), and test figures at that weight."""
  dev = {w: evaluate_dev(w)[metric] for w in WEIGHTS}
  best = max(WEIGHTS, key=lambda w: (dev[w], -w))
  # String keys: the result is written as JSON, and must read back equal to what was returned.
  curve = {f"{w:g}": v for w, v in dev.items()}
  return {"weight": best, f"dev_{metric}": dev[best], "dev_curve": curve, "test": evaluate_test(best)}

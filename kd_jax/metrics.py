"""Ranking metrics (MRR@k, MAP, MAP@k, nDCG@k, Recall@k, Precision@k) in pure NumPy.

Definitions follow trec_eval / pytrec_eval (`recip_rank`, `map`, `map_cut`, `ndcg_cut`, `recall`, `P`) so
numbers are comparable with published BEIR/MS MARCO tables:
- relevant means relevance > 0; gain is the relevance itself (linear, not 2**rel - 1), negatives count 0;
- discount is 1 / log2(rank + 1); nDCG's ideal ranks *all* judged relevant docs, not only retrieved ones;
- Recall, MAP and MAP@k divide by the number of relevant docs in the qrels; P@k always divides by k.
Two deliberate choices differ from pytrec_eval's output (the formulas do not):
- a query with no relevant document is excluded from the means and counted (pytrec_eval scores it 0,
  which drags the mean down with queries no system can answer);
- a query with relevant docs but absent from the run scores 0 (trec_eval -c; pytrec_eval drops it, which
  would reward a retriever for returning nothing).

Ties. Run dicts are ranked like trec_eval: scores cast to float32 (trec_eval stores `float sim`, so scores
equal in float32 tie), then score descending, then doc id descending as a string ('b' before 'a', '9'
before '10'); checked against pytrec_eval 0.5. Dense candidate arrays break ties by position, lower
index first, so callers control the order of equal scores. Each doc is counted once: run dicts cannot
repeat a doc, `run_from_ranked_lists` keeps the first occurrence, and `evaluate_candidates(doc_ids=...)`
keeps the best-ranked one.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np

Run = Mapping[Hashable, Mapping[Hashable, float]]
Qrels = Mapping[Hashable, Mapping[Hashable, int]]
DEFAULT_KS = (1, 5, 10, 100)


def _ranked_metrics(gains: np.ndarray, num_relevant: np.ndarray, ideal_gains: np.ndarray,
                    ks: Sequence[int]) -> dict[str, np.ndarray]:
  """Per-query metrics from gains in rank order [Q, L] (0 = not relevant or padding).

  `num_relevant` [Q] must be > 0; `ideal_gains` [Q, M] holds every relevant doc's gain, sorted descending.
  """
  relevant = gains > 0
  ranks = np.arange(1, gains.shape[1] + 1)
  discount = 1.0 / np.log2(np.arange(2, max(gains.shape[1], ideal_gains.shape[1]) + 2))
  precision_at_rank = np.cumsum(relevant, axis=1) / ranks
  ap_terms = np.where(relevant, precision_at_rank, 0.0)
  out = {"map": ap_terms.sum(1) / num_relevant}
  for k in ks:
    top = relevant[:, :k]
    hits = top.sum(1)
    out[f"mrr@{k}"] = (top / ranks[:k]).max(1, initial=0.0)  # 1 / first relevant rank, 0 if none.
    out[f"map@{k}"] = ap_terms[:, :k].sum(1) / num_relevant
    dcg = (gains[:, :k] * discount[:gains[:, :k].shape[1]]).sum(1)
    idcg = (ideal_gains[:, :k] * discount[:ideal_gains[:, :k].shape[1]]).sum(1)
    out[f"ndcg@{k}"] = dcg / idcg
    out[f"recall@{k}"] = hits / num_relevant
    out[f"precision@{k}"] = hits / k
  return out


def _summarise(per_query: dict[str, np.ndarray], num_skipped: int) -> dict[str, float]:
  """Means over evaluated queries plus the two counts; means are NaN when nothing was evaluated."""
  n = len(next(iter(per_query.values())))
  out = {name: float(v.mean()) if n else float("nan") for name, v in per_query.items()}
  return out | {"num_queries": n, "num_skipped_no_relevant": num_skipped}


# ----------------------------------------------------------------------------- run dicts


def rank_run_query(doc_scores: Mapping[Hashable, float]) -> list[Hashable]:
  """Doc ids of one query in trec_eval order: float32 score descending, then str(doc id) descending."""
  docs = list(doc_scores)
  if not docs:
    return []
  scores = np.fromiter(doc_scores.values(), dtype=np.float64, count=len(docs)).astype(np.float32)
  if np.isnan(scores).any():
    raise ValueError("NaN score in run")
  # lexsort is ascending with the last key primary; reversing makes both keys descending, and doc ids
  # are unique within a query so no tie is left.
  order = np.lexsort((np.array([str(d) for d in docs]), scores))[::-1]
  return [docs[i] for i in order]


def run_from_ranked_lists(ranked: Mapping[Hashable, Sequence[Hashable]]) -> dict[Hashable, dict[Hashable, float]]:
  """Run dict from ranked doc-id lists; a repeated doc keeps its first (best) rank and counts once.

  Scores are n - rank, exact in float32 below 2**24 docs per query, so the ranking survives unchanged.
  """
  run = {}
  for qid, docs in ranked.items():
    unique = list(dict.fromkeys(docs))  # Dicts keep insertion order: first occurrence wins.
    run[qid] = {d: float(len(unique) - i) for i, d in enumerate(unique)}
  return run


def _pad(rows: list[list[float]]) -> np.ndarray:
  """Ragged rows -> [len(rows), longest] zero-padded; a zero gain is exactly what padding should mean."""
  out = np.zeros((len(rows), max((len(r) for r in rows), default=0)), dtype=np.float64)
  for i, r in enumerate(rows):
    out[i, :len(r)] = r
  return out


def _run_metrics(run: Run, qrels: Qrels, ks: Sequence[int]
                 ) -> tuple[list[Hashable], dict[str, np.ndarray], int]:
  """Evaluated query ids, their metrics [Q] and the number of queries skipped for lack of relevant docs."""
  qids, gains, ideal = [], [], []
  num_skipped = 0
  for qid in dict.fromkeys([*run, *qrels]):
    judged = qrels.get(qid, {})
    relevant_gains = sorted((float(r) for r in judged.values() if r > 0), reverse=True)
    if not relevant_gains:
      num_skipped += 1
      continue
    qids.append(qid)
    ideal.append(relevant_gains)
    gains.append([max(float(judged.get(d, 0)), 0.0) for d in rank_run_query(run.get(qid, {}))])
  num_relevant = np.array([len(g) for g in ideal], dtype=np.float64)
  return qids, _ranked_metrics(_pad(gains), num_relevant, _pad(ideal), ks), num_skipped


def per_query_run(run: Run, qrels: Qrels, ks: Sequence[int] = DEFAULT_KS
                  ) -> tuple[dict[Hashable, dict[str, float]], int]:
  """Metrics of each evaluated query, and the number of queries skipped.

  Evaluated: qrels queries with >= 1 relevant doc; those missing from the run score 0. Skipped: queries
  of the run or the qrels without any relevant doc.
  """
  qids, metrics, num_skipped = _run_metrics(run, qrels, ks)
  return {qid: {name: float(v[i]) for name, v in metrics.items()} for i, qid in enumerate(qids)}, num_skipped


def evaluate_run(run: Run, qrels: Qrels, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
  """Mean metrics over evaluated queries, plus `num_queries` and `num_skipped_no_relevant`."""
  _, metrics, num_skipped = _run_metrics(run, qrels, ks)
  return _summarise(metrics, num_skipped)


# ----------------------------------------------------------------------------- dense candidates


def rank_candidates(scores: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
  """Candidate indices [Q, K] by score descending, ties by lower index, masked-out candidates last."""
  scores = np.asarray(scores)
  valid = np.ones(scores.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
  return np.lexsort((-scores, ~valid), axis=-1)  # lexsort is stable: equal keys keep index order.


def _first_occurrences(ids: np.ndarray) -> np.ndarray:
  """[Q, K] True where a row's id has not appeared earlier in that row."""
  positions = np.broadcast_to(np.arange(ids.shape[1]), ids.shape)
  by_id = np.lexsort((positions, ids), axis=-1)  # Grouped by id, each group in position order.
  ids_by_id = np.take_along_axis(ids, by_id, axis=1)
  first_by_id = np.ones(ids.shape, dtype=bool)
  first_by_id[:, 1:] = ids_by_id[:, 1:] != ids_by_id[:, :-1]
  first = np.empty(ids.shape, dtype=bool)
  np.put_along_axis(first, by_id, first_by_id, axis=1)
  return first


def per_query_candidates(scores: np.ndarray, labels: np.ndarray, mask: np.ndarray | None = None,
                         num_relevant: np.ndarray | None = None, doc_ids: np.ndarray | None = None,
                         ks: Sequence[int] = DEFAULT_KS) -> dict[str, np.ndarray]:
  """Per-query metrics [Q] for candidate lists; NaN marks queries without relevant docs.

  Args:
    scores: [Q, K] float; labels: [Q, K] graded relevance, 0 = not relevant.
    mask: [Q, K] bool, False for padded candidates.
    num_relevant: [Q] relevant docs per query in the whole collection; defaults to those among the
      candidates. Gold docs missing from the candidates enter nDCG's ideal with gain 1 (exact for
      binary qrels, a lower bound on the ideal for graded ones).
    doc_ids: [Q, K] optional ids; a doc repeated in a row counts once, at its best rank.
  """
  scores, labels = np.asarray(scores), np.asarray(labels)
  valid = np.ones(scores.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
  order = rank_candidates(scores, valid)
  valid = np.take_along_axis(valid, order, axis=1)
  if doc_ids is not None:
    valid &= _first_occurrences(np.take_along_axis(np.asarray(doc_ids), order, axis=1))
    # Drop later copies from the ranking itself, not just their gain, so the docs below them move up.
    compact = np.argsort(~valid, axis=1, kind="stable")
    order, valid = np.take_along_axis(order, compact, axis=1), np.take_along_axis(valid, compact, axis=1)
  gains = np.where(valid, np.maximum(np.take_along_axis(labels, order, axis=1), 0), 0).astype(np.float64)
  found = (gains > 0).sum(1)
  total = found if num_relevant is None else np.asarray(num_relevant)
  if np.any(total < found):
    raise ValueError("num_relevant is smaller than the relevant docs among the candidates")
  missing = total - found
  missing_gains = (np.arange(missing.max(initial=0)) < missing[:, None]).astype(np.float64)
  ideal = -np.sort(-np.concatenate([gains, missing_gains], axis=1), axis=1)
  keep = total > 0
  metrics = _ranked_metrics(gains[keep], total[keep].astype(np.float64), ideal[keep], ks)
  out = {}
  for name, v in metrics.items():
    out[name] = np.full(len(keep), np.nan)
    out[name][keep] = v
  return out


def evaluate_candidates(scores: np.ndarray, labels: np.ndarray, mask: np.ndarray | None = None,
                        num_relevant: np.ndarray | None = None, doc_ids: np.ndarray | None = None,
                        ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
  """Mean metrics over queries with >= 1 relevant doc, plus `num_queries` and `num_skipped_no_relevant`."""
  per_query = per_query_candidates(scores, labels, mask, num_relevant, doc_ids, ks)
  keep = ~np.isnan(per_query["map"])
  return _summarise({name: v[keep] for name, v in per_query.items()}, int((~keep).sum()))

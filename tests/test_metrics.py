"""Ranking metrics: hand-computed cases, agreement with pytrec_eval (random runs and SciFact), dense API."""

from __future__ import annotations

import collections
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import pytrec_eval

from kd_jax import metrics

KS = (1, 2, 3, 5, 10, 100)
_PYTREC_NAMES = {"ndcg": "ndcg_cut", "recall": "recall", "precision": "P", "map": "map_cut"}


# ----------------------------------------------------------------------------- pytrec_eval reference


def _trec_top_k(doc_scores: dict[str, float], k: int) -> dict[str, float]:
  """Top k in trec_eval order, written independently of metrics.rank_run_query."""
  ranked = sorted(doc_scores.items(), key=lambda kv: (np.float32(kv[1]), kv[0]), reverse=True)
  return dict(ranked[:k])


def _pytrec_per_query(run: dict, qrels: dict, ks: tuple[int, ...]) -> dict[str, dict[str, float]]:
  """pytrec_eval's numbers under metrics' names; MRR@k comes from recip_rank on the run cut to top k."""
  cut = ",".join(map(str, ks))
  measures = {"map", *(f"{m}.{cut}" for m in _PYTREC_NAMES.values())}
  raw = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
  out = {}
  for qid, r in raw.items():
    out[qid] = {"map": r["map"]}
    for k in ks:
      out[qid] |= {f"{ours}@{k}": r[f"{theirs}_{k}"] for ours, theirs in _PYTREC_NAMES.items()}
  for k in ks:
    truncated = {qid: _trec_top_k(docs, k) for qid, docs in run.items()}
    for qid, r in pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(truncated).items():
      out[qid][f"mrr@{k}"] = r["recip_rank"]
  return out


def _assert_matches_pytrec(run: dict, qrels: dict, ks: tuple[int, ...] = KS) -> int:
  """Compares per-query and mean metrics on queries in both run and qrels with a relevant doc."""
  common = {q for q in run if any(r > 0 for r in qrels.get(q, {}).values())}
  ours, _ = metrics.per_query_run(run, qrels, ks)
  theirs = _pytrec_per_query(run, qrels, ks)
  for qid in common:
    assert ours[qid].keys() == theirs[qid].keys()
    for name, value in theirs[qid].items():
      assert ours[qid][name] == pytest.approx(value, abs=1e-6), (qid, name)
  means = metrics.evaluate_run({q: run[q] for q in common}, {q: qrels[q] for q in common}, ks)
  assert means["num_queries"] == len(common) and means["num_skipped_no_relevant"] == 0
  for name in theirs[next(iter(common))]:
    assert means[name] == pytest.approx(np.mean([theirs[q][name] for q in common]), abs=1e-6), name
  return len(common)


def _random_run_and_qrels(seed: int, graded: bool = True) -> tuple[dict, dict]:
  """Runs with score ties, ids whose string order differs from numeric, and awkward queries."""
  rng = np.random.default_rng(seed)
  pool = [f"d{i}" for i in range(60)]
  run, qrels = {}, {}
  for q in range(40):
    docs = rng.choice(pool, size=rng.integers(1, 45), replace=False)
    # Coarse scores force ties; a 1e-12 jitter ties in float32 (trec_eval's precision) but not in float64.
    scores = rng.integers(0, 6, size=len(docs)) / 2 + rng.choice([0.0, 1e-12], size=len(docs))
    run[f"q{q}"] = {str(d): float(s) for d, s in zip(docs, scores)}
    judged = rng.choice(pool, size=rng.integers(1, 20), replace=False)
    levels = [-1, 0, 1, 2] if graded else [-1, 0, 1]
    qrels[f"q{q}"] = {str(d): int(rng.choice(levels)) for d in judged}
  for q in range(0, 40, 7):  # No relevant doc: must be skipped.
    qrels[f"q{q}"] = {d: 0 for d in qrels[f"q{q}"]}
  del qrels["q3"]  # In the run only.
  qrels["q_missing"] = {"d1": 1, "d2": 2}  # In the qrels only.
  return run, qrels


# ----------------------------------------------------------------------------- hand-computed


def test_hand_computed_binary():
  # Ranking: n1 (not relevant), r1, n2, r2; r3 is relevant but never retrieved, so 3 relevant in all.
  run = {"q": {"n1": 4.0, "r1": 3.0, "n2": 2.0, "r2": 1.0}}
  qrels = {"q": {"r1": 1, "r2": 1, "r3": 1, "n1": 0}}
  m = metrics.evaluate_run(run, qrels, ks=(1, 2, 4, 10))
  assert m["mrr@1"] == 0.0 and m["mrr@2"] == 0.5 and m["mrr@10"] == 0.5  # First relevant at rank 2.
  assert m["map"] == pytest.approx((1 / 2 + 2 / 4) / 3)  # Precision at ranks 2 and 4, over 3 relevant.
  assert m["map@2"] == pytest.approx((1 / 2) / 3)
  # DCG@4 = 1/log2(3) + 1/log2(5); ideal puts the 3 relevant first: 1 + 1/log2(3) + 1/log2(4).
  assert m["ndcg@4"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3) + 0.5))
  assert m["ndcg@2"] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))
  assert m["ndcg@1"] == 0.0
  assert m["recall@1"] == 0.0 and m["recall@2"] == pytest.approx(1 / 3) and m["recall@4"] == pytest.approx(2 / 3)
  assert m["precision@2"] == 0.5 and m["precision@4"] == 0.5
  assert m["precision@10"] == pytest.approx(2 / 10)  # Always over k, even with 4 retrieved.
  assert m["num_queries"] == 1 and m["num_skipped_no_relevant"] == 0


def test_hand_computed_graded_with_negative_relevance():
  # Ranking: a (rel 1), x (rel -1: not relevant, gain 0), b (rel 2); c (rel 2) is not retrieved.
  run = {"q": {"a": 3.0, "x": 2.0, "b": 1.0}}
  qrels = {"q": {"a": 1, "x": -1, "b": 2, "c": 2}}
  m = metrics.evaluate_run(run, qrels, ks=(3,))
  # Linear gain: DCG@3 = 1/log2(2) + 0 + 2/log2(4) = 2; ideal gains 2, 2, 1: 2 + 2/log2(3) + 1/log2(4).
  assert m["ndcg@3"] == pytest.approx(2 / (2 + 2 / math.log2(3) + 0.5))
  assert m["map"] == pytest.approx((1 / 1 + 2 / 3) / 3)
  assert m["recall@3"] == pytest.approx(2 / 3) and m["precision@3"] == pytest.approx(2 / 3)
  assert m["mrr@3"] == 1.0
  _assert_matches_pytrec(run, qrels, ks=(3,))


def test_tie_rule_matches_pytrec_eval():
  # Equal scores: doc id descending as strings, so "b" before "a" and "9" before "10".
  assert metrics.rank_run_query({"a": 1.0, "b": 1.0, "c": 2.0}) == ["c", "b", "a"]
  assert metrics.rank_run_query({"10": 1.0, "9": 1.0}) == ["9", "10"]
  # trec_eval keeps float32 scores: 1 + 1e-12 ties with 1, and "b" wins; 1 + 1e-6 does not tie.
  assert metrics.rank_run_query({"a": 1.0 + 1e-12, "b": 1.0}) == ["b", "a"]
  assert metrics.rank_run_query({"a": 1.0 + 1e-6, "b": 1.0}) == ["a", "b"]
  for run, qrels in [({"q": {"a": 1.0, "b": 1.0}}, {"q": {"a": 1}}),
                     ({"q": {"10": 1.0, "9": 1.0}}, {"q": {"10": 1}}),
                     ({"q": {"a": 1.0 + 1e-12, "b": 1.0}}, {"q": {"a": 1}})]:
    assert metrics.evaluate_run(run, qrels)["mrr@10"] == 0.5
    assert pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(run)["q"]["recip_rank"] == 0.5


def test_dense_ties_by_position():
  m = metrics.evaluate_candidates(np.array([[1.0, 1.0, 1.0]]), np.array([[0, 1, 0]]), ks=(1, 3))
  assert m["mrr@3"] == 0.5 and m["precision@1"] == 0.0  # Index 0 ranks first among equals.


# ----------------------------------------------------------------------------- counting rules


def test_queries_without_relevant_docs_are_excluded_and_counted():
  run = {"good": {"a": 2.0, "b": 1.0}, "no_rel": {"a": 1.0}, "unjudged": {"a": 1.0}}
  qrels = {"good": {"a": 1}, "no_rel": {"a": 0, "b": 0}}
  m = metrics.evaluate_run(run, qrels)
  assert m["num_queries"] == 1 and m["num_skipped_no_relevant"] == 2
  assert m["mrr@10"] == 1.0 and m["map"] == 1.0  # Averaging in the skipped queries would give 1/3.
  per_query, skipped = metrics.per_query_run(run, qrels)
  assert list(per_query) == ["good"] and skipped == 2

  dense = metrics.evaluate_candidates(np.array([[2.0, 1.0], [1.0, 0.0]]), np.array([[1, 0], [0, 0]]))
  assert dense["num_queries"] == 1 and dense["num_skipped_no_relevant"] == 1 and dense["map"] == 1.0
  rows = metrics.per_query_candidates(np.array([[2.0, 1.0], [1.0, 0.0]]), np.array([[1, 0], [0, 0]]))
  assert rows["map"][0] == 1.0 and np.isnan(rows["map"][1])


def test_query_missing_from_run_scores_zero():
  m = metrics.evaluate_run({"q1": {"a": 1.0}}, {"q1": {"a": 1}, "q2": {"b": 1}})
  assert m["num_queries"] == 2 and m["map"] == 0.5 and m["ndcg@10"] == 0.5 and m["recall@100"] == 0.5


def test_all_skipped_gives_nan_means():
  m = metrics.evaluate_run({"q": {"a": 1.0}}, {"q": {"a": 0}})
  assert m["num_queries"] == 0 and m["num_skipped_no_relevant"] == 1 and math.isnan(m["map"])


def test_duplicates_count_once():
  # "a" is relevant and listed three times; a double count would give P@3 = 1 and recall > 1.
  run = metrics.run_from_ranked_lists({"q": ["a", "x", "a", "b", "a"]})
  assert metrics.rank_run_query(run["q"]) == ["a", "x", "b"]
  m = metrics.evaluate_run(run, {"q": {"a": 1, "b": 1}}, ks=(3,))
  assert m["precision@3"] == pytest.approx(2 / 3) and m["recall@3"] == 1.0
  assert m["map"] == pytest.approx((1 / 1 + 2 / 3) / 2)

  dense = metrics.evaluate_candidates(
      scores=np.array([[5.0, 4.0, 3.0, 2.0, 1.0]]), labels=np.array([[1, 0, 1, 1, 1]]),
      doc_ids=np.array([[7, 3, 7, 8, 7]]), ks=(3,))
  assert dense["precision@3"] == pytest.approx(2 / 3) and dense["recall@3"] == 1.0
  assert dense["map"] == pytest.approx((1 / 1 + 2 / 3) / 2)


# ----------------------------------------------------------------------------- pytrec_eval agreement


@pytest.mark.parametrize("seed", range(5))
def test_matches_pytrec_eval_on_random_runs(seed: int):
  run, qrels = _random_run_and_qrels(seed)
  assert _assert_matches_pytrec(run, qrels) > 20
  m = metrics.evaluate_run(run, qrels)
  no_relevant = {q for q in {*run, *qrels} if not any(r > 0 for r in qrels.get(q, {}).values())}
  assert m["num_skipped_no_relevant"] == len(no_relevant)
  assert m["num_queries"] == len({*run, *qrels}) - len(no_relevant)  # q_missing is evaluated, scoring 0.


def _tokens(text: str) -> list[str]:
  return re.findall(r"[a-z0-9]+", text.lower())


@pytest.fixture(scope="module")
def scifact(data_dir: Path) -> tuple[dict, dict, dict]:
  """SciFact test qrels and two real top-100 runs over the 5,183 docs: TF-IDF cosine and term overlap."""
  root = data_dir / "scifact"
  with open(root / "corpus.jsonl") as f:
    corpus = [json.loads(line) for line in f]
  with open(root / "queries.jsonl") as f:
    queries = {q["_id"]: q["text"] for q in map(json.loads, f)}
  qrels = collections.defaultdict(dict)
  with open(root / "qrels" / "test.tsv") as f:
    next(f)  # Header: query-id corpus-id score.
    for line in f:
      qid, did, rel = line.split("\t")
      qrels[qid][did] = int(rel)

  doc_ids = [d["_id"] for d in corpus]
  doc_tokens = [_tokens(d["title"] + " " + d["text"]) for d in corpus]
  df = collections.Counter(t for toks in doc_tokens for t in set(toks))
  idf = {t: math.log(len(corpus) / n) for t, n in df.items()}
  postings = collections.defaultdict(lambda: ([], [], []))  # term -> doc index, tf-idf weight, 1.
  for i, toks in enumerate(doc_tokens):
    tf = collections.Counter(toks)
    norm = math.sqrt(sum((c * idf[t]) ** 2 for t, c in tf.items())) or 1.0
    for t, c in tf.items():
      postings[t][0].append(i)
      postings[t][1].append(c * idf[t] / norm)
  postings = {t: (np.array(p[0]), np.array(p[1])) for t, p in postings.items()}

  tfidf, overlap = {}, {}
  for qid in qrels:
    tfidf_scores, overlap_scores = np.zeros(len(corpus)), np.zeros(len(corpus))
    for t in set(_tokens(queries[qid])) & postings.keys():
      idx, w = postings[t]
      tfidf_scores[idx] += w * idf[t]
      overlap_scores[idx] += 1.0  # Integer scores: many ties, including across the top-100 cut.
    for run, s in ((tfidf, tfidf_scores), (overlap, overlap_scores)):
      top = np.argsort(-s, kind="stable")[:100]
      run[qid] = {doc_ids[i]: float(s[i]) for i in top}
  return dict(qrels), tfidf, overlap


def test_matches_pytrec_eval_on_scifact(scifact):
  qrels, tfidf, overlap = scifact
  assert len(qrels) == 300
  for run in (tfidf, overlap):
    assert _assert_matches_pytrec(run, qrels) == 300
  m = metrics.evaluate_run(tfidf, qrels)
  assert m["num_queries"] == 300 and 0.3 < m["ndcg@10"] < 0.9  # A sane lexical baseline, not a broken one.


# ----------------------------------------------------------------------------- dense candidates


@pytest.mark.parametrize("graded", [False, True])
@pytest.mark.parametrize("seed", range(3))
def test_dense_candidates_agree_with_run(seed: int, graded: bool):
  run, qrels = _random_run_and_qrels(seed, graded=graded)
  if graded:  # Gold docs outside the candidates enter the dense ideal with gain 1, so keep them all in.
    qrels = {q: {d: r for d, r in rel.items() if d in run.get(q, {})} for q, rel in qrels.items()}
  qids = list(dict.fromkeys([*run, *qrels]))
  rng = np.random.default_rng(seed)
  width = max(len(docs) for docs in run.values()) + 5
  # Padding gets the best score and a relevant label, so only the mask keeps it out.
  scores = np.full((len(qids), width), 99.0)
  labels = np.ones((len(qids), width), dtype=int)
  mask = np.zeros((len(qids), width), dtype=bool)
  num_relevant = np.zeros(len(qids), dtype=int)
  for i, q in enumerate(qids):
    judged = qrels.get(q, {})
    num_relevant[i] = sum(r > 0 for r in judged.values())
    # Doc ids descending in position, so the dense tie rule (lower index) reproduces trec_eval's.
    docs = sorted(run.get(q, {}), reverse=True)
    slots = np.sort(rng.choice(width, size=len(docs), replace=False))
    scores[i, slots] = [np.float32(run[q][d]) for d in docs]
    labels[i, slots] = [judged.get(d, 0) for d in docs]
    mask[i, slots] = True
  dense = metrics.evaluate_candidates(scores, labels, mask, num_relevant, ks=KS)
  expected = metrics.evaluate_run(run, qrels, ks=KS)
  assert dense.keys() == expected.keys()
  for name, value in expected.items():
    assert dense[name] == pytest.approx(value, abs=1e-9), name


def test_dense_with_duplicates_and_mask_agrees_with_ranked_lists():
  rng = np.random.default_rng(0)
  num_queries, width = 20, 30
  scores = rng.integers(0, 4, size=(num_queries, width)).astype(float)  # Heavy ties.
  doc_ids = rng.integers(0, 25, size=(num_queries, width))  # Repeats within rows.
  mask = rng.random((num_queries, width)) < 0.8
  doc_relevance = rng.integers(0, 2, size=(num_queries, 40))  # Binary; ids 25..39 never retrieved.
  labels = np.take_along_axis(doc_relevance, doc_ids, axis=1)
  num_relevant = doc_relevance.sum(1)

  order = metrics.rank_candidates(scores, mask)
  ranked = {str(q): [str(doc_ids[q, j]) for j in order[q] if mask[q, j]] for q in range(num_queries)}
  qrels = {str(q): {str(d): int(r) for d, r in enumerate(doc_relevance[q])} for q in range(num_queries)}
  expected = metrics.evaluate_run(metrics.run_from_ranked_lists(ranked), qrels, ks=KS)
  dense = metrics.evaluate_candidates(scores, labels, mask, num_relevant, doc_ids, ks=KS)
  for name, value in expected.items():
    assert dense[name] == pytest.approx(value, abs=1e-9), name


def test_num_relevant_beyond_candidates_lowers_recall():
  scores, labels = np.array([[3.0, 2.0, 1.0]]), np.array([[1, 0, 1]])
  found = metrics.evaluate_candidates(scores, labels, ks=(3,))
  assert found["recall@3"] == 1.0 and found["map"] == pytest.approx((1 + 2 / 3) / 2)
  # Two more gold docs exist in the collection but were not retrieved.
  full = metrics.evaluate_candidates(scores, labels, num_relevant=np.array([4]), ks=(3,))
  assert full["recall@3"] == 0.5 and full["map"] == pytest.approx((1 + 2 / 3) / 4)
  # Ideal ranks 4 relevant docs; the top 3 of them give 1 + 1/log2(3) + 1/log2(4).
  assert full["ndcg@3"] == pytest.approx((1 + 0.5) / (1 + 1 / math.log2(3) + 0.5))
  assert full["precision@3"] == found["precision@3"] == pytest.approx(2 / 3)
  with pytest.raises(ValueError):
    metrics.evaluate_candidates(scores, labels, num_relevant=np.array([1]))

"""Student + BM25 fusion: against a plain-Python reference, and weight 0 / 1 giving each single system's ranking."""

import json
import statistics

import numpy as np
import pytest

from kd_jax import fusion, hybrid, metrics


def _agreement_reference(student, bm25, mask, top, depth):
  """Per claim: of the documents the student ranks in its top `top` (ties share a rank), the share BM25 ranks in
  its top `depth`."""
  out = []
  for i in range(len(student)):
    idx = [j for j in range(student.shape[1]) if mask[i, j]]
    rank = lambda v, x: 1 + sum(v[y] > v[x] for y in idx)  # noqa: E731
    mine = [j for j in idx if rank(student[i], j) <= top]
    out.append(sum(rank(bm25[i], j) <= depth and bm25[i, j] > 0 for j in mine) / max(len(mine), 1))
  return np.array(out)


def _reference(method, student, bm25, weight, mask, reach, k=60.0):
  """Per claim, loops over its valid documents: min-max linear interpolation (gated: the weight scaled by the
  claim's agreement; coverage: by the pair's reach), z-score interpolation (statistics' population mean and std), or
  weighted RRF (ties share a rank); zcoverage: z-scores with the pair's reach scaling the weight."""
  out = np.full(student.shape, -np.inf)
  if method == "gated":
    gate = _agreement_reference(student, bm25, mask, 10, 100)
  for i in range(len(student)):
    idx = [j for j in range(student.shape[1]) if mask[i, j]]
    s, b = [float(student[i, j]) for j in idx], [float(bm25[i, j]) for j in idx]
    w = weight * gate[i] if method == "gated" else weight
    for n, j in enumerate(idx):
      if method in ("linear", "gated", "coverage"):
        norm = lambda v, x: (x - min(v)) / (max(v) - min(v)) if max(v) > min(v) else 0.0  # noqa: E731
        wj = weight * reach[i, j] if method == "coverage" else w
        out[i, j] = wj * norm(s, s[n]) + (1 - wj) * norm(b, b[n])
      elif method in ("zscore", "zcoverage"):
        sd = lambda v: statistics.pstdev(v)  # noqa: E731
        z = lambda v, x: (x - statistics.fmean(v)) / sd(v) if sd(v) > 0 else 0.0  # noqa: E731
        wj = weight * reach[i, j] if method == "zcoverage" else weight
        out[i, j] = wj * z(s, s[n]) + (1 - wj) * z(b, b[n])
      else:
        rank = lambda v, x: 1 + sum(y > x for y in v)  # noqa: E731
        out[i, j] = weight / (k + rank(s, s[n])) + (1 - weight) / (k + rank(b, b[n]))
  return out


def _arrays(q=6, u=20, seed=0, ties=False):
  rng = np.random.default_rng(seed)
  student, bm25 = rng.normal(size=(q, u)), rng.gamma(2.0, 3.0, size=(q, u))
  if ties:
    student, bm25 = np.round(student, 1), np.round(bm25)
  mask = rng.random((q, u)) < 0.8
  mask[:, 0] = True
  return student.astype(np.float32), bm25.astype(np.float32), mask


@pytest.mark.parametrize("method", fusion.METHODS)
@pytest.mark.parametrize("weight", [0.0, 0.3, 0.7, 1.0])
@pytest.mark.parametrize("ties", [False, True])
def test_fuse_matches_reference(method, weight, ties):
  student, bm25, mask = _arrays(ties=ties)
  reach = np.random.default_rng(9).random(student.shape)
  np.testing.assert_allclose(fusion.fuse(method, student, bm25, weight, mask, reach),
                             _reference(method, student, bm25, weight, mask, reach), rtol=1e-6)


def _order(scores, mask):
  """Valid entries best first; equal scores as one group (a set), so orders compare up to ties."""
  out = []
  for row, m in zip(scores, mask):
    groups: dict[float, set] = {}
    for j in np.flatnonzero(m):
      groups.setdefault(float(row[j]), set()).add(int(j))
    out.append([groups[v] for v in sorted(groups, reverse=True)])
  return out


@pytest.mark.parametrize("method", fusion.METHODS)
@pytest.mark.parametrize("ties", [False, True])
def test_weight_one_is_the_student_and_zero_is_bm25(method, ties):
  student, bm25, mask = _arrays(ties=ties, seed=1)
  bm25 = np.maximum(bm25, 1.0)  # gated: every document matched by BM25 (weight 1 is the student only then)
  reach = np.ones(student.shape)  # coverage: every word known (weight 1 is the student only then)
  assert _order(fusion.fuse(method, student, bm25, 1.0, mask, reach), mask) == _order(student, mask)
  assert _order(fusion.fuse(method, student, bm25, 0.0, mask, reach), mask) == _order(bm25, mask)
  assert _order(student, mask) != _order(bm25, mask)  # the two systems do disagree


def test_fuse_rejects_bad_weight_and_method():
  student, bm25, mask = _arrays()
  with pytest.raises(ValueError, match="in \\[0, 1\\]"):
    fusion.fuse("linear", student, bm25, 1.5, mask)
  with pytest.raises(ValueError, match="Unknown fusion method"):
    fusion.fuse("max", student, bm25, 0.5, mask)


def test_union_rows_keeps_each_document_once():
  rows, mask = fusion.union_rows(np.array([[3, 1, 2], [5, 6, 7]]), np.array([[2, 9, 3], [8, 9, 10]]))
  assert rows[0][mask[0]].tolist() == [3, 1, 2, 9] and rows[1][mask[1]].tolist() == [5, 6, 7, 8, 9, 10]
  assert not mask[0, 4:].any()


def _candidates(q=30, k=16, seed=2):
  rng = np.random.default_rng(seed)
  labels = (rng.random((q, k)) < 0.15).astype(np.int32)
  labels[:, rng.integers(0, k)] = 1
  mask = np.ones((q, k), bool)
  mask[:5, -3:] = False
  pred = {"scores": rng.normal(size=(q, k)).astype(np.float32), "labels": labels, "mask": mask,
          "num_relevant": labels.sum(axis=1)}
  return pred, (np.abs(rng.normal(size=(q, k))) + 2 * labels + 0.01).astype(np.float32)  # BM25 scores are > 0


@pytest.mark.parametrize("method", fusion.METHODS)
def test_rerank_hybrid_at_the_ends_equals_each_system(method):
  pred, bm25 = _candidates()
  student_alone = metrics.evaluate_candidates(pred["scores"], pred["labels"], pred["mask"], pred["num_relevant"])
  bm25_alone = metrics.evaluate_candidates(bm25, pred["labels"], pred["mask"], pred["num_relevant"])
  reach = np.ones(bm25.shape)
  assert hybrid.rerank_metrics(pred, bm25, method, 1.0, reach) == student_alone
  assert hybrid.rerank_metrics(pred, bm25, method, 0.0, reach) == bm25_alone
  assert student_alone != bm25_alone


def _pool(q=12, n_docs=300, depth=20, seed=3):
  """A full-collection pool built as hybrid.full_collection_pool does, from exact scores over every document."""
  rng = np.random.default_rng(seed)
  doc_ids = [f"d{i}" for i in range(n_docs)]
  claim_ids = [f"q{i}" for i in range(q)]
  qrels = {c: {doc_ids[j]: 1 for j in rng.choice(n_docs, 3, replace=False)} for c in claim_ids}
  s_all, b_all = rng.normal(size=(q, n_docs)), rng.gamma(2.0, 3.0, size=(q, n_docs))
  for i, c in enumerate(claim_ids):  # both systems find some relevant documents
    for d in qrels[c]:
      j = doc_ids.index(d)
      s_all[i, j] += rng.uniform(0, 3)
      b_all[i, j] += rng.uniform(0, 8)
  s_rows, b_rows = np.argsort(-s_all, axis=1)[:, :depth], np.argsort(-b_all, axis=1)[:, :depth]
  rows, mask = fusion.union_rows(s_rows, b_rows)
  safe = np.where(mask, rows, 0)
  pool = hybrid.Pool(student=np.take_along_axis(s_all, safe, 1), bm25=np.take_along_axis(b_all, safe, 1), rows=rows,
                     mask=mask, claim_ids=claim_ids, qrels=qrels, reach=np.where(mask, 1.0, 0.0))
  # Each system searching alone: its own top `depth` over every document, as a pytrec-style run.
  alone = {name: metrics.evaluate_run({c: {doc_ids[j]: float(full[i, j]) for j in np.argsort(-full[i])[:depth]}
                                       for i, c in enumerate(claim_ids)}, qrels, ks=(1, 5, 10, 100))
           for name, full in (("student", s_all), ("bm25", b_all))}
  return pool, doc_ids, alone


@pytest.mark.parametrize("method", fusion.METHODS)
def test_full_collection_hybrid_at_the_ends_equals_each_system_searching_alone(method):
  pool, doc_ids, alone = _pool()
  assert hybrid.full_collection_metrics(pool, method, 1.0, doc_ids, depth=20) == alone["student"]
  assert hybrid.full_collection_metrics(pool, method, 0.0, doc_ids, depth=20) == alone["bm25"]
  assert alone["student"] != alone["bm25"]
  middle = hybrid.full_collection_metrics(pool, method, 0.5, doc_ids, depth=20)
  assert middle not in (alone["student"], alone["bm25"])


def test_choose_picks_the_best_dev_weight_and_reads_back_from_json():
  dev = {0.0: 0.50, 0.1: 0.55, 0.2: 0.61, 0.3: 0.61, 0.4: 0.58}
  seen = []
  out = hybrid.choose(lambda w: {"ndcg@10": dev.get(w, 0.1)}, lambda w: seen.append(w) or {"ndcg@10": 0.7})
  assert out["weight"] == 0.2 and out["dev_ndcg@10"] == 0.61 and seen == [0.2]  # ties go to the smaller weight
  assert json.loads(json.dumps(out)) == out
  assert out["dev_curve"]["0.3"] == 0.61 and len(out["dev_curve"]) == len(hybrid.WEIGHTS)


@pytest.mark.parametrize("ties", [False, True])
def test_agreement_matches_reference_and_gates_the_student(ties):
  student, bm25, mask = _arrays(q=8, u=30, seed=3, ties=ties)
  got = fusion.agreement(student, bm25, mask, top=4, depth=6)
  np.testing.assert_allclose(got, _agreement_reference(student, bm25, mask, 4, 6))
  assert got.min() < got.max()  # claims differ in agreement
  bm25[:, :5] = 0.0  # unmatched documents (BM25 score 0) never agree, whatever their (tied) rank
  got = fusion.agreement(student, bm25, mask, top=4, depth=30)
  np.testing.assert_allclose(got, _agreement_reference(student, bm25, mask, 4, 30))
  # A student whose top 10 BM25 never ranks in its top 100 (a hub) is ignored: BM25's order, whatever the weight.
  u = 130
  bm25 = np.arange(u, 0, -1, dtype=np.float32)[None]  # documents 0..99 are BM25's top 100
  student = np.zeros((1, u), np.float32)
  student[0, 100:110] = 10.0  # the student's top 10: outside BM25's top 100
  full = np.ones((1, u), bool)
  np.testing.assert_array_equal(fusion.fuse("gated", student, bm25, 1.0, full), fusion.fuse("linear", student, bm25,
                                                                                          0.0, full))
  student[0, 100:110], student[0, :10] = 0.0, 10.0  # now its top 10 are BM25's too: the plain linear fusion
  np.testing.assert_allclose(fusion.fuse("gated", student, bm25, 0.6, full), fusion.fuse("linear", student, bm25,
                                                                                       0.6, full))


def test_coverage_gives_the_student_a_say_only_where_it_reads():
  student, bm25, mask = _arrays(q=4, u=25, seed=5)
  reach = np.ones(student.shape)
  reach[1] = 0.0  # claim 1: none of its words known -> BM25's order, whatever the weight
  reach[2, :] = 0.5  # claim 2: half -> linear at half the weight
  fused = fusion.fuse("coverage", student, bm25, 0.8, mask, reach)
  np.testing.assert_allclose(fused[0], fusion.fuse("linear", student, bm25, 0.8, mask)[0])
  assert _order(fused[1:2], mask[1:2]) == _order(bm25[1:2], mask[1:2])
  np.testing.assert_allclose(fused[2], fusion.fuse("linear", student, bm25, 0.4, mask)[2])
  with pytest.raises(ValueError, match="coverage fusion needs"):
    fusion.fuse("coverage", student, bm25, 0.5, mask)


def test_pair_reach_multiplies_claim_and_document_coverage():
  rows = np.array([[4, 3, 7, -1], [7, 7, 2, -1]])
  doc_cov = {3: 0.5, 2: 1.0, 4: 0.25, 7: 0.0}
  asked = []
  got = fusion.pair_reach(rows, np.array([1.0, 0.5]), lambda r: asked.append(r.tolist()) or [doc_cov[x] for x in r])
  expected = [[0.25, 0.5, 0.0, 0.0], [0.0, 0.0, 0.5, 0.0]]
  np.testing.assert_allclose(got, expected)
  assert asked == [[2, 3, 4, 7]]  # each document once, padding never asked about

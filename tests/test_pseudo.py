"""Pseudo-claims: sampling that never leaks evaluation claims, the real/pseudo mix, and their loss (KL only)."""

import json
from pathlib import Path

import numpy as np
import pytest

from kd_jax import losses, pseudo_claims
from kd_jax.data import datasets, pipeline, pseudo


def _words(text):
  return set(pseudo.words(text))


# ---------- the evaluation-claim guard ----------

def test_guard_blocks_a_claim_and_a_sentence_holding_it():
  claim = "Vitamin D deficiency increases the risk of multiple sclerosis."
  guard = pseudo.ClaimGuard([claim], max_overlap=0.8)
  assert guard.overlaps(claim)
  assert guard.overlaps("VITAMIN D deficiency increases the risk of multiple sclerosis")  # case, punctuation
  assert guard.overlaps("Results: " + claim + " in adults over the age of 40 in two cohorts.")
  # 7 of the claim's 9 distinct words (78%) is under 80%: a sentence on the same topic is allowed.
  assert not guard.overlaps("Vitamin D deficiency and the risk of sclerosis.")
  assert not guard.overlaps("Insulin resistance predicts type 2 diabetes.")


def test_sample_never_returns_a_planted_evaluation_claim():
  eval_claims = ["Aspirin lowers the risk of colorectal cancer.", "Smoking causes lung fibrosis in mice."]
  texts = [
      "Aspirin lowers the risk of colorectal cancer. A second sentence about cohorts and follow up.",
      "We show that smoking causes lung fibrosis in mice after twelve weeks. Controls were healthy animals.",
      "Statins reduce cardiovascular events in older adults. They are widely prescribed today.",
  ]
  coll = datasets.Collection(ids=["a", "b", "c"], titles=["Aspirin trial", "Smoke study", "Statin review"],
                             texts=texts)
  got = pseudo.sample(coll, 1000, seed=0, eval_claims=eval_claims, min_words=2, max_words=40)
  got_texts = {c.text for c in got}
  # Every other sentence (titles included) is drawn; the two holding an evaluation claim are not.
  assert got_texts == {"A second sentence about cohorts and follow up.", "Controls were healthy animals.",
                       "Statins reduce cardiovascular events in older adults.", "They are widely prescribed today.",
                       "Aspirin trial", "Smoke study", "Statin review"}
  assert all(coll.document(c.doc_row).find(c.text) >= 0 for c in got)  # the source row is recorded


@pytest.fixture(scope="module")
def scifact(data_dir):
  return datasets.load_beir(data_dir / "scifact")


@pytest.mark.slow  # trains, prepares real data or compiles large steps: seconds each
def test_real_scifact_pseudo_claims_exclude_dev_and_test_claims(scifact):
  banned = scifact.splits["dev"].texts + scifact.splits["test"].texts
  got = pseudo.sample(scifact.collection, 3000, seed=0, eval_claims=banned, min_words=5, max_words=40)
  assert len(got) == 3000 and len({c.text for c in got}) == 3000
  normalised = {" ".join(pseudo.words(t)) for t in banned}
  claim_sets = [_words(t) for t in banned]
  for c in got:
    w = _words(c.text)
    assert " ".join(pseudo.words(c.text)) not in normalised
    # Independent of ClaimGuard's postings: no banned claim has >= 80% of its words in the pseudo-claim.
    assert all(len(s & w) < 0.8 * len(s) for s in claim_sets), c.text
    assert 5 <= len(pseudo.words(c.text)) <= 40
  # The collection does hold sentences that the guard removes (so the check above can fail).
  pool = pseudo.candidate_sentences(scifact.collection, 5, 40)
  guard = pseudo.ClaimGuard(banned)
  assert any(guard.overlaps(text) for text, _ in pool)


@pytest.mark.slow  # trains, prepares real data or compiles large steps: seconds each
def test_sample_order_is_a_prefix_and_seeded(scifact):
  big = pseudo.sample(scifact.collection, 200, seed=3, eval_claims=[])
  small = pseudo.sample(scifact.collection, 50, seed=3, eval_claims=[])
  assert small == big[:50]
  assert pseudo.sample(scifact.collection, 50, seed=4, eval_claims=[]) != small


# ---------- the real/pseudo mix ----------

@pytest.mark.parametrize("n_real,n_pseudo,fraction", [(10, 100, 0.5), (100, 10, 0.5), (30, 30, 0.25), (7, 5, 0.8)])
def test_mixed_source_covers_both_sides_at_the_fraction(n_real, n_pseudo, fraction):
  real = [("real", i) for i in range(n_real)]
  fake = [("pseudo", i) for i in range(n_pseudo)]
  mixed = pipeline.MixedSource(real, fake, fraction)
  items = [mixed[i] for i in range(len(mixed))]
  assert {x for x in items if x[0] == "real"} == set(real)
  assert {x for x in items if x[0] == "pseudo"} == set(fake)
  share = sum(x[0] == "pseudo" for x in items) / len(items)
  assert abs(share - fraction) <= 1.0 / min(n_real, n_pseudo)
  with pytest.raises(IndexError):
    mixed[len(mixed)]  # pylint: disable=pointless-statement


def test_mixed_source_rejects_bad_input():
  with pytest.raises(ValueError, match="pseudo_fraction"):
    pipeline.MixedSource([1], [2], 1.0)
  with pytest.raises(ValueError, match="at least one"):
    pipeline.MixedSource([], [2], 0.5)
  with pytest.raises(ValueError, match="holding 3"):
    pipeline.Prefix([1, 2, 3], 4)
  assert [pipeline.Prefix([1, 2, 3], 2)[i] for i in range(2)] == [1, 2]


# ---------- the loss: a pseudo example carries no hard-label term ----------

def _np_kl_rows(student, teacher, temperature):
  """T^2 * KL(softmax(teacher/T) || softmax(student/T)) per row, in float64 NumPy."""
  def log_softmax(x):
    x = x / temperature
    x = x - x.max(axis=1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=1, keepdims=True))
  lt, ls = log_softmax(teacher.astype(np.float64)), log_softmax(student.astype(np.float64))
  return temperature ** 2 * (np.exp(lt) * (lt - ls)).sum(axis=1)


def _np_listwise_rows(student, labels):
  x = student.astype(np.float64)
  logp = x - x.max(axis=1, keepdims=True)
  logp = logp - np.log(np.exp(logp).sum(axis=1, keepdims=True))
  target = (labels > 0) / np.maximum((labels > 0).sum(axis=1, keepdims=True), 1)
  return -(target * logp).sum(axis=1)


def _batch(num_real, num_pseudo, k=8, seed=0):
  rng = np.random.default_rng(seed)
  n = num_real + num_pseudo
  ids = [f"pseudo-0-{i}" for i in range(num_pseudo)]
  fake = pseudo_claims.examples(ids, np.zeros((num_pseudo, 4), np.int32), np.zeros((num_pseudo, 4), np.int32),
                                rng.integers(0, 100, (num_pseudo, k)), rng.normal(size=(num_pseudo, k)),
                                rng.normal(size=(num_pseudo, k)).astype(np.float32))
  labels = np.zeros((n, k), np.int32)
  labels[np.arange(num_real), rng.integers(0, k, num_real)] = 1
  batch = {"teacher_scores": np.concatenate([rng.normal(size=(num_real, k)).astype(np.float32)]
                                            + [[f["teacher_scores"] for f in fake]]),
           "cand_labels": np.concatenate([labels[:num_real]] + [[f["cand_labels"] for f in fake]]),
           "cand_mask": np.ones((n, k), bool),
           "is_pseudo": np.array([False] * num_real + [f["is_pseudo"] for f in fake])}
  return batch, rng.normal(size=(n, k)).astype(np.float32)


@pytest.mark.parametrize("alpha", [0.0, 0.5])
def test_pseudo_rows_contribute_only_the_distillation_term(alpha):
  temperature = 2.0
  batch, student = _batch(num_real=5, num_pseudo=3)
  assert not batch["cand_labels"][5:].any()  # stored pseudo examples carry no labels
  loss_fn = losses.distill_loss_fn(temperature, alpha, "listwise")
  total, parts = loss_fn(student, batch)
  kl = _np_kl_rows(student, batch["teacher_scores"], temperature)
  hard = _np_listwise_rows(student, batch["cand_labels"])
  expected = np.concatenate([alpha * kl[:5] + (1 - alpha) * hard[:5], kl[5:]]).mean()
  np.testing.assert_allclose(float(total), expected, rtol=1e-5)
  np.testing.assert_allclose(float(parts["hard"]), hard[:5].mean(), rtol=1e-5)  # pseudo rows not in 'hard'
  # Giving a pseudo row a gold label (e.g. its source document) changes nothing: its labels are never read.
  labelled = dict(batch, cand_labels=batch["cand_labels"].copy())
  labelled["cand_labels"][5:, 0] = 1
  np.testing.assert_allclose(float(loss_fn(student, labelled)[0]), expected, rtol=1e-5)
  # ...whereas the same rows marked real would get a hard term (with alpha < 1 the loss moves).
  if alpha < 1:
    as_real = dict(labelled, is_pseudo=np.zeros_like(batch["is_pseudo"]))
    assert abs(float(loss_fn(student, as_real)[0]) - expected) > 1e-3


def test_all_pseudo_batch_is_pure_kl():
  batch, student = _batch(num_real=0, num_pseudo=6, seed=1)
  total, _ = losses.distill_loss_fn(3.0, 0.0, "pointwise")(student, batch)
  np.testing.assert_allclose(float(total), _np_kl_rows(student, batch["teacher_scores"], 3.0).mean(), rtol=1e-5)


# ---------- real and pseudo rows in one batch ----------

def test_gather_keeps_pseudo_scores_and_looks_up_real_ones_only():
  class Prepared:  # what gather_transform reads: the documents' word ids
    docs_words = np.arange(40).reshape(20, 2)
  looked_up = []
  def lookup(ids):
    looked_up.append(list(ids))
    return np.stack([np.full(3, float(i[-1])) for i in ids]).astype(np.float32)
  stored = np.array([[9.0, 8.0, 7.0], [6.0, 5.0, 4.0]], np.float32)
  batch = {"claim_id": np.array(["real-1", "pseudo-0-7", "real-2", "pseudo-0-3"]),
           "cand_index": np.array([[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11]]),
           "teacher_scores": np.stack([np.zeros(3), stored[0], np.zeros(3), stored[1]]).astype(np.float32),
           "is_pseudo": np.array([False, True, False, True])}
  out = pipeline.gather_transform(Prepared, "words", teacher_scores=lookup)(batch)
  assert looked_up == [["real-1", "real-2"]]  # pseudo ids are never looked up (they have no stored entry)
  np.testing.assert_array_equal(out["teacher_scores"], [[1, 1, 1], stored[0], [2, 2, 2], stored[1]])
  np.testing.assert_array_equal(out["doc_words"][1], Prepared.docs_words[[3, 4, 5]])
  assert not batch["teacher_scores"][0].any()  # the source's arrays are not modified in place


# ---------- stored pseudo-claims: prefix reuse, growth, resumption ----------

class _FakeTeacher:
  """Stands in for the restored teacher: logits -row/1000 of each candidate, and counts what it scored."""

  def __init__(self, fail_after_chunks=None):
    self.scored, self.fail_after_chunks = 0, fail_after_chunks
    self.loaded = []  # (config, stage folder) of each restore

  def predict_source(self, chunk):
    if self.fail_after_chunks is not None and self.scored >= self.fail_after_chunks * pseudo_claims.CHUNK:
      raise KeyboardInterrupt("killed")
    self.scored += len(chunk)
    return {"scores": -np.stack([c["cand_index"] for c in chunk]).astype(np.float32) / 1000}


@pytest.fixture
def teacher_run(data_dir, tmp_path, monkeypatch):
  from configs import teacher as teacher_config
  from ml_collections import ConfigDict
  tcfg = teacher_config.get_config("smoke")
  tcfg.data.dir, tcfg.data.cache_dir = str(data_dir), str(tmp_path / "cache")
  tdir = tmp_path / "teacher"
  tdir.mkdir()
  (tdir / "complete.json").write_text("{}")
  monkeypatch.setattr(pseudo_claims, "CHUNK", 8)
  p = ConfigDict(dict(count=0, fraction=0.5, seed=0, min_words=5, max_words=40, max_overlap=0.8))
  return tcfg, tdir, p, monkeypatch


def _fake(monkeypatch, **kw):
  fake = _FakeTeacher(**kw)

  def load(config, stage, prepared, mesh=None):  # the teacher, restored
    fake.loaded.append((config, Path(stage)))
    return fake
  monkeypatch.setattr(pseudo_claims.restored.Restored, "load", load)
  return fake


@pytest.mark.slow  # trains, prepares real data or compiles large steps: seconds each
def test_stored_pseudo_claims_are_reused_as_prefixes_and_grown(teacher_run, scifact):
  tcfg, tdir, p, mp = teacher_run
  fake = _fake(mp)
  got = pseudo_claims.ensure(tcfg, tdir, p, 20)
  assert fake.loaded == [(tcfg, tdir)]  # the teacher asked for, restored once
  drawn = pseudo.sample(scifact.collection, 30, 0, scifact.splits["dev"].texts + scifact.splits["test"].texts)
  assert fake.scored == 20 and len(got) == 20
  # On disk in sampling order, teacher logits for their own candidates, no labels.
  assert [got[i]["claim_id"].decode() for i in range(20)] == [c.id for c in drawn[:20]]
  for i in range(20):
    np.testing.assert_allclose(got[i]["teacher_scores"], -got[i]["cand_index"] / 1000, rtol=1e-6)
    assert got[i]["is_pseudo"] and not got[i]["cand_labels"].any()
  fewer = pseudo_claims.ensure(tcfg, tdir, p, 10)  # a prefix of the stored set: nothing scored
  assert fake.scored == 20 and len(fewer) == 10 and fewer[9]["claim_id"] == got[9]["claim_id"]
  more = pseudo_claims.ensure(tcfg, tdir, p, 30)  # only the 10 new ones are scored
  assert fake.scored == 30 and [more[i]["claim_id"].decode() for i in range(30)] == [c.id for c in drawn]


@pytest.mark.slow  # trains, prepares real data or compiles large steps: seconds each
def test_killed_scoring_resumes_from_progress(teacher_run):
  tcfg, tdir, p, mp = teacher_run
  _fake(mp, fail_after_chunks=2)
  with pytest.raises(KeyboardInterrupt):
    pseudo_claims.ensure(tcfg, tdir, p, 20)  # killed after two chunks of 8: 16 scored and saved
  fake = _fake(mp)
  assert len(pseudo_claims.ensure(tcfg, tdir, p, 20)) == 20 and fake.scored == 4


@pytest.mark.slow  # trains, prepares real data or compiles large steps: seconds each
def test_an_exhausted_pool_is_stored_once(teacher_run):
  tcfg, tdir, p, mp = teacher_run
  p.min_words = p.max_words = 40  # a few hundred sentences
  fake = _fake(mp)
  got = pseudo_claims.ensure(tcfg, tdir, p, 10**6)
  meta = json.loads(next(tdir.glob("pseudo/*/*/meta.json")).read_text())
  assert meta["exhausted"] and meta["count"] == len(got) == fake.scored < meta["pool"] + 1
  assert len(pseudo_claims.ensure(tcfg, tdir, p, 10**6)) == len(got) and fake.scored == len(got)  # not redone

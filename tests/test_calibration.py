"""Search calibrated for a collection, against NumPy: documents' dense and lexical norms pulled toward the
collection's medians (kd_jax/doc_norms.py: the factors, the view search reads, search over it) and the training
collection's common words kept out of lexical matches (kd_jax/stopwords.py, kd_jax/calibration.py), the <unk>
embedding row taken out of the towers' inputs (unk_drop); the experiment's choice of the lexical strength and the hub
correction on top (experiments/search_grid.py, as experiments/lexical_norms.py uses it)."""

import collections
import dataclasses
import json
import types

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from experiments import claim_bank, lexical_layout, search_grid
from kd_jax import calibration, compact, doc_norms, hubness, search, sharding, stage_inputs, stopwords
from kd_jax.models import students

DENSE, LEX = 6, 8


def _vecs(n=50, seed=0):
  rng = np.random.default_rng(seed)
  dense = rng.normal(size=(n, DENSE)) * rng.uniform(0.2, 5.0, size=(n, 1))  # norms spread over a factor of 25
  lex = np.maximum(rng.normal(size=(n, LEX)), 0)
  return np.concatenate([dense, lex], 1).astype(np.float32)


@pytest.mark.parametrize("strength", [0.0, 0.25, 0.5, 1.0])
def test_factors_move_log_norms_toward_the_median(strength):
  norms = np.array([0.5, 1.0, 2.0, 4.0, 0.0, 8.0])
  got = doc_norms.factors(norms, strength)
  median = np.median([0.5, 1.0, 2.0, 4.0, 8.0])  # of the non-zero norms
  want = np.where(norms > 0, np.exp((1 - strength) * np.log(np.maximum(norms, 1e-30)) + strength * np.log(median))
                  / np.maximum(norms, 1e-30), 1.0)
  np.testing.assert_allclose(got, want, rtol=1e-6)
  if strength == 1.0:
    np.testing.assert_allclose((norms * got)[norms > 0], median, rtol=1e-6)  # every document at the median
  assert got[4] == 1.0  # a zero dense part stays zero


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_a_strength_outside_0_1_is_refused_in_one_line(bad):
  with pytest.raises(ValueError, match=r"strength must lie in \[0, 1\]") as e:
    doc_norms.factors(np.ones(3), bad)
  assert "\n" not in str(e.value)
  config = ml_collections.ConfigDict({"search": {"doc_norms": {"own": 0.25, "other": bad}}})
  assert doc_norms.strength_for(config, own=True) == 0.25
  with pytest.raises(ValueError, match=r"^search\.doc_norms\.other must lie in \[0, 1\]"):
    doc_norms.strength_for(config, own=False)
  assert doc_norms.strength_for(ml_collections.ConfigDict({"search": {}}), own=False) == 0.0  # saved before it


def test_the_view_scales_only_the_dense_part_and_never_writes_the_index(tmp_path):
  vecs = _vecs()
  table = np.lib.format.open_memmap(tmp_path / "v.npy", mode="w+", dtype=np.float32, shape=vecs.shape)
  table[:] = vecs
  view = doc_norms.calibrated(table, DENSE, 1.0)
  norms = np.linalg.norm(vecs[:, :DENSE], axis=1)
  want = vecs.copy()
  want[:, :DENSE] *= (np.median(norms) / norms)[:, None]
  np.testing.assert_allclose(view[3:17], want[3:17], rtol=1e-5)
  rows = np.array([[4, 0, 9], [49, 4, 4]])  # fusion pools index with [Q, U] row arrays
  np.testing.assert_allclose(view[rows], want[rows], rtol=1e-5)
  np.testing.assert_allclose(np.asarray(view), want, rtol=1e-5)
  np.testing.assert_array_equal(view[:][:, DENSE:], vecs[:, DENSE:])  # the lexical channel as stored
  np.testing.assert_array_equal(np.asarray(table), vecs)
  assert view.shape == vecs.shape and len(view) == len(vecs)
  assert doc_norms.calibrated(table, DENSE, 0.0) is table  # strength 0: the index itself
  # A compact index is read through its decoded rows.
  stored, scales = compact.encode(vecs, "int8")
  np.testing.assert_allclose(doc_norms.dense_norms(compact.Table(stored, scales, "int8"), DENSE, chunk_rows=7),
                             np.linalg.norm(compact.decode(stored, scales, "int8")[:, :DENSE], axis=1), rtol=1e-6)


def test_the_view_scales_the_lexical_part_by_its_own_factors(tmp_path):
  vecs = _vecs()
  vecs[7, DENSE:] = 0.0  # a document without lexical matches keeps factor 1
  view = doc_norms.calibrated(vecs, DENSE, 0.0, lex_strength=0.5)
  lex = np.linalg.norm(vecs[:, DENSE:], axis=1)
  np.testing.assert_allclose(doc_norms.lexical_norms(vecs, DENSE, chunk_rows=9), lex, rtol=1e-6)
  live = lex > 0
  want = vecs.copy()
  want[live, DENSE:] *= np.sqrt(np.median(lex[live]) / lex[live])[:, None]
  np.testing.assert_allclose(np.asarray(view), want, rtol=1e-5)
  np.testing.assert_array_equal(view[:][:, :DENSE], vecs[:, :DENSE])  # the dense part as stored at strength 0
  both = np.asarray(doc_norms.calibrated(vecs, DENSE, 1.0, lex_strength=1.0))
  np.testing.assert_allclose(np.linalg.norm(both[:, :DENSE], axis=1),
                             np.median(np.linalg.norm(vecs[:, :DENSE], axis=1)), rtol=1e-5)
  np.testing.assert_allclose(np.linalg.norm(both[live, DENSE:], axis=1), np.median(lex[live]), rtol=1e-5)
  with pytest.raises(ValueError, match=r"^lex_strength must lie in \[0, 1\]"):
    doc_norms.calibrated(vecs, DENSE, 0.0, lex_strength=2.0)


@pytest.mark.parametrize("dense_strength", [0.0, 0.5])
def test_search_over_a_view_of_both_parts_equals_numpy(dense_strength):
  built, params = _student("dot")
  vecs, claims = _vecs(), _vecs(5, seed=1)
  mesh = sharding.make_mesh(1, 1)
  view = doc_norms.calibrated(vecs, DENSE, dense_strength, lex_strength=0.75)
  scores, rows = search.top_k(built, params, claims, view, 10, mesh, chunk_rows=16)
  f = doc_norms.factors(np.linalg.norm(vecs[:, :DENSE], axis=1), dense_strength)
  g = doc_norms.factors(np.linalg.norm(vecs[:, DENSE:], axis=1), 0.75)
  brute = claims[:, :DENSE] @ (vecs[:, :DENSE] * f[:, None]).T + claims[:, DENSE:] @ (vecs[:, DENSE:] * g[:, None]).T
  np.testing.assert_array_equal(rows, np.argsort(-brute, axis=1, kind="stable")[:, :10])
  np.testing.assert_allclose(scores, np.sort(brute, axis=1)[:, ::-1][:, :10], rtol=1e-5, atol=1e-5)
  # A model with a score of its own reads the same scaled documents.
  own = types.SimpleNamespace(module=_OwnScorer())
  scores, rows = search.top_k(own, {}, claims, view, 10, mesh, chunk_rows=16)
  scaled = np.asarray(view)
  brute = claims @ scaled.T + 0.5 * scaled.sum(-1)[None]
  np.testing.assert_array_equal(rows, np.argsort(-brute, axis=1, kind="stable")[:, :10])
  np.testing.assert_allclose(scores, np.sort(brute, axis=1)[:, ::-1][:, :10], rtol=1e-5, atol=1e-5)


def _student(scoring):
  cfg = students.CNNConfig(vocab_size=10, out_dim=DENSE, lexical_dim=LEX, scoring=scoring, cosine_scale_init=3.0)
  params = {"cosine_scale": np.float32(3.0)} if scoring != "dot" else {}
  return types.SimpleNamespace(module=students.CNNStudent(cfg)), params


def test_search_over_the_view_equals_numpy_over_scaled_vectors():
  built, params = _student("dot")
  vecs, claims = _vecs(), _vecs(5, seed=1)
  mesh = sharding.make_mesh(1, 1)
  scores, rows = search.top_k(built, params, claims, doc_norms.calibrated(vecs, DENSE, 0.5), 10, mesh,
                              chunk_rows=16)
  f = doc_norms.factors(np.linalg.norm(vecs[:, :DENSE], axis=1), 0.5)
  brute = claims[:, :DENSE] @ (vecs[:, :DENSE] * f[:, None]).T + claims[:, DENSE:] @ vecs[:, DENSE:].T
  np.testing.assert_array_equal(rows, np.argsort(-brute, axis=1, kind="stable")[:, :10])
  np.testing.assert_allclose(scores, np.sort(brute, axis=1)[:, ::-1][:, :10], rtol=1e-5, atol=1e-5)
  # A compact index is decoded and scaled on the device, in the same step.
  table = compact.Table(*compact.encode(vecs, "int8"), "int8")
  decoded = np.asarray(table)
  g = doc_norms.factors(np.linalg.norm(decoded[:, :DENSE], axis=1), 0.5)
  brute = claims[:, :DENSE] @ (decoded[:, :DENSE] * g[:, None]).T + claims[:, DENSE:] @ decoded[:, DENSE:].T
  scores, rows = search.top_k(built, params, claims, doc_norms.calibrated(table, DENSE, 0.5), 10, mesh, chunk_rows=16)
  np.testing.assert_array_equal(rows, np.argsort(-brute, axis=1, kind="stable")[:, :10])
  np.testing.assert_allclose(scores, np.sort(brute, axis=1)[:, ::-1][:, :10], rtol=1e-5, atol=1e-5)


class _OwnScorer(nn.Module):
  """A model with a `score` of its own (not DualEncoder's): search scales its documents before scoring."""

  def score(self, claims, docs):
    return jnp.einsum("bd,nd->bn", claims, docs) + 0.5 * jnp.sum(docs, -1)[None]


def test_search_scales_the_documents_of_a_model_with_its_own_score():
  built, vecs, claims = types.SimpleNamespace(module=_OwnScorer()), _vecs(), _vecs(5, seed=1)
  scores, rows = search.top_k(built, {}, claims, doc_norms.calibrated(vecs, DENSE, 1.0), 10, sharding.make_mesh(1, 1),
                              chunk_rows=16)
  scaled = np.asarray(doc_norms.calibrated(vecs, DENSE, 1.0))
  brute = claims @ scaled.T + 0.5 * scaled.sum(-1)[None]
  np.testing.assert_array_equal(rows, np.argsort(-brute, axis=1, kind="stable")[:, :10])
  np.testing.assert_allclose(scores, np.sort(brute, axis=1)[:, ::-1][:, :10], rtol=1e-5, atol=1e-5)


def test_scoring_that_normalises_documents_is_unchanged():
  built, params = _student("doc_cosine")
  vecs, claims = _vecs(), _vecs(5, seed=1)
  mesh = sharding.make_mesh(1, 1)
  plain = search.top_k(built, params, claims, vecs, 10, mesh)
  calibrated = search.top_k(built, params, claims, doc_norms.calibrated(vecs, DENSE, 1.0), 10, mesh)
  np.testing.assert_array_equal(plain[1], calibrated[1])
  np.testing.assert_allclose(plain[0], calibrated[0], rtol=1e-5, atol=1e-5)


def test_document_frequencies_equal_a_count_of_documents_holding_each_word():
  rng = np.random.default_rng(3)
  words = rng.integers(0, 40, size=(57, 12))
  words[:, 9:] = 0  # trailing padding
  words[5] = 0  # a document of padding only
  words[:, 0] = 7  # in every document
  got = stopwords.doc_freq(words, vocab_size=30, chunk_rows=10)  # ids 30.. are hashed rare words: not counted
  holding = collections.Counter(w for row in words for w in set(row.tolist()))
  want = np.array([0.0, 0.0] + [holding[w] / 57 for w in range(2, 30)])
  np.testing.assert_allclose(got, want, rtol=1e-6)
  assert got[7] == 1.0
  np.testing.assert_array_equal(stopwords.stop_ids(got, 0.5), np.flatnonzero(want > 0.5))
  assert len(stopwords.stop_ids(got, 1.0)) == 0


def test_common_words_lose_only_their_lexical_buckets_in_claims():
  """Common in the training documents or in the training claims: word 3 (90% of documents) and word 4 (80% of claims,
  rare in documents, as "a" is in page titles) lose their buckets at stop_df 0.7; word 5 (60%) keeps its."""
  built, _ = _student("dot")
  freq, claim_freq = np.zeros(10, np.float32), np.zeros(10, np.float32)
  freq[[3, 5]] = [0.9, 0.6]
  claim_freq[[4, 5]] = [0.8, 0.3]
  inputs = stage_inputs.StageInputs(vocab=[str(i) for i in range(10)], settings={}, doc_freq=freq,
                                    claim_freq=claim_freq)
  claims = _vecs(4, seed=2) + 1.0  # no zeros, so every zeroed value shows
  cut = calibration.Calibration(stop_df=0.7).claims(built, inputs, claims)
  bucket = lambda w: (w * 0x9E3779B1 % 2**32) >> (32 - 3)  # noqa: E731  the top log2(8) bits of id x golden (mod 2^32)
  want = claims.copy()
  want[:, DENSE + bucket(3)] = 0.0
  want[:, DENSE + bucket(4)] = 0.0
  np.testing.assert_array_equal(cut, want)
  # A stage saved before claim frequencies were stored: the documents' alone, as then.
  old = stage_inputs.StageInputs(vocab=inputs.vocab, settings={}, doc_freq=freq)
  want = claims.copy()
  want[:, DENSE + bucket(3)] = 0.0
  np.testing.assert_array_equal(calibration.Calibration(stop_df=0.7).claims(built, old, claims), want)
  assert calibration.Calibration(stop_df=1.0).claims(built, inputs, claims) is claims  # off
  with pytest.raises(ValueError, match="no word frequencies"):
    calibration.Calibration(stop_df=0.5).claims(built, stage_inputs.StageInputs(vocab=[], settings={}), claims)
  with pytest.raises(ValueError, match=r"^search\.stop_df must lie in \(0, 1\]"):
    stopwords.check(0.0)


def test_the_config_names_the_calibration_for_own_and_other_collections():
  config = ml_collections.ConfigDict({"search": {"doc_norms": {"own": 0.25, "other": 1.0}, "stop_df": 0.5}})
  assert calibration.of(config, own=True) == calibration.Calibration(doc_norms=0.25, stop_df=0.5)
  assert calibration.of(config, own=False) == calibration.Calibration(doc_norms=1.0, stop_df=0.5)  # no lex_norms yet
  assert not calibration.of(ml_collections.ConfigDict({"search": {}}), own=False).active  # saved before it
  config.search.lex_norms = {"own": 0.0, "other": 0.75}
  other = calibration.of(config, own=False)
  assert other == calibration.Calibration(doc_norms=1.0, stop_df=0.5, lex_norms=0.75) and other.scales_docs
  assert calibration.describe(other.settings()) == "doc_norms 1, stop_df 0.5, lex_norms 0.75"
  assert calibration.describe(calibration.of(config, own=True).settings()) == "doc_norms 0.25, stop_df 0.5"
  lexical_only = calibration.Calibration(lex_norms=0.5)
  assert lexical_only.active and lexical_only.scales_docs
  config.search.lex_norms.other = 1.5
  with pytest.raises(ValueError, match=r"^search\.lex_norms\.other must lie in \[0, 1\]"):
    calibration.of(config, own=False)
  config.search.lex_norms.other = 0.75
  config.search.unk_drop = {"own": 0.0, "other": 1.0}
  other = calibration.of(config, own=False)
  assert other.unk_drop == 1.0 and other.encodes and not calibration.of(config, own=True).encodes
  assert calibration.describe(other.settings()) == "doc_norms 1, stop_df 0.5, lex_norms 0.75, unk_drop 1"
  assert calibration.Calibration(unk_drop=0.5).active
  config.search.unk_drop.other = 2.0
  with pytest.raises(ValueError, match=r"^search\.unk_drop\.other must lie in \[0, 1\] \(0: as trained, 1: out-of-v"):
    calibration.of(config, own=False)


def test_the_lexical_strength_is_chosen_by_the_mean_dev_figure_ties_to_the_milder():
  def stage(own, other):  # dev nDCG@10 by strength, for one student
    return {"rows": {f"{s:g}": {"own": {"dev": {"ndcg@10": o}}, "other": {"dev": {"ndcg@10": x}}}
                     for s, o, x in zip((0.0, 0.5, 1.0), own, other)}}
  stages = {"a": stage((0.80, 0.81, 0.79), (0.60, 0.70, 0.72)), "b": stage((0.70, 0.69, 0.70), (0.50, 0.60, 0.58))}
  chosen = search_grid.choose(stages, (0.0, 0.5, 1.0), "lex_norms")
  # own: means 0.75, 0.75, 0.745 -> the tie goes to 0; other: 0.55, 0.65, 0.65 -> the tie goes to 0.5.
  assert chosen["lex_norms"] == {"own": 0.0, "other": 0.5}
  np.testing.assert_allclose(chosen["dev_ndcg@10"]["other"]["1"], 0.65)
  assert "hub_beta_other" not in chosen  # rows without the hub correction's grid


def test_the_hub_correction_on_top_is_chosen_per_stage_at_home_and_per_recipe_elsewhere():
  betas = [f"{b:g}" for b in hubness.BETAS]  # 0, 0.25, 0.5, 0.75, 1

  def stage(own_dev, other_dev, other_hub=(0.01,) * 5):  # dev nDCG@10 (and hub) by beta at lexical strength 0
    grid = {where: {"dev": {b: {"ndcg@10": v, "hub": h} for b, v, h in zip(betas, devs, hubs)}}
            for where, devs, hubs in (("own", own_dev, (0.01,) * 5), ("other", other_dev, other_hub))}
    return {"rows": {"0": {w: {"dev": {"ndcg@10": g["dev"]["0"]["ndcg@10"]}} for w, g in grid.items()}},
            "hub_norm": {"0": grid}}
  stages = {"w/cnn_s0": stage((0.80, 0.81, 0.7, 0.6, 0.5), (0.70, 0.72, 0.7, 0.6, 0.5)),
            "w/cnn_s1": stage((0.80, 0.79, 0.7, 0.6, 0.5), (0.70, 0.69, 0.7, 0.6, 0.5)),
            "w/lstm_s0": stage((0.70, 0.70, 0.7, 0.6, 0.5), (0.50, 0.40, 0.3, 0.2, 0.1))}
  chosen = search_grid.choose(stages, (0.0,), "lex_norms")
  # At home each stage's own dev decides (a tie keeps the milder beta); elsewhere the recipe's mean over its seeds:
  # cnn 0.70 at 0 against 0.705 at 0.25; lstm 0.
  assert chosen["hub_beta_own"] == {"w/cnn_s0": 0.25, "w/cnn_s1": 0.0, "w/lstm_s0": 0.0}
  assert chosen["hub_beta_other"] == {"cnn": 0.25, "lstm": 0.0}
  # Elsewhere the hub ceiling counts too (hubness.choose_beta): within a point of the best mean dev nDCG@10, a beta
  # whose mean dev hub passes 5% is not taken for its nDCG@10 (cnn: 0.25 at 7% is passed over for 0 at 4%); where
  # none of them is under 5%, the smallest hub of them (lstm: 0.25, not 0.5, which costs 10 points).
  stages["w/cnn_s0"] = stage((0.80, 0.81, 0.7, 0.6, 0.5), (0.70, 0.72, 0.7, 0.6, 0.5), (0.04, 0.07, 0.3, 0.3, 0.3))
  stages["w/cnn_s1"] = stage((0.80, 0.79, 0.7, 0.6, 0.5), (0.70, 0.69, 0.7, 0.6, 0.5), (0.04, 0.07, 0.3, 0.3, 0.3))
  stages["w/lstm_s0"] = stage((0.70, 0.70, 0.7, 0.6, 0.5), (0.50, 0.495, 0.4, 0.2, 0.1), (0.2, 0.15, 0.1, 0.12, 0.3))
  assert search_grid.choose(stages, (0.0,), "lex_norms")["hub_beta_other"] == {"cnn": 0.0, "lstm": 0.25}


def test_the_claim_banks_k_and_beta_are_chosen_per_kind_over_the_mean_dev_of_its_stages():
  betas, ks = (0.0, 0.5), (10, 50)

  def stage(kind, dev):  # dev {(k, beta): (nDCG@10, hub)}
    return {"kind": kind, "rows": {str(k): {f"{b:g}": {"dev": dict(zip(("ndcg@10", "hub"), dev[(k, b)]))}
                                            for b in betas} for k in ks}}
  plain = (0.70, 0.08)  # beta 0: no correction, whatever k
  cnn = [stage("cnn", {(10, 0): plain, (50, 0): plain, (10, 0.5): (0.70, 0.06), (50, 0.5): (0.695, h)})
         for h in (0.04, 0.05)]
  lstm = [stage("lstm", {(10, 0): plain, (50, 0): plain, (10, 0.5): (0.72, 0.04), (50, 0.5): (0.60, 0.01)})]
  chosen = claim_bank.choose({f"s{i}": st for i, st in enumerate(cnn + lstm)}, betas, ks)
  # cnn: the mean hub at (50, 0.5) is 4.5%, under the ceiling and within a point of the best; lstm: (50, 0.5) has the
  # smallest hub but costs 12 points, (10, 0.5) is the best and under the ceiling.
  assert (chosen["cnn"]["k"], chosen["cnn"]["beta"], chosen["cnn"]["stages"]) == (50, 0.5, 2)
  assert (chosen["lstm"]["k"], chosen["lstm"]["beta"]) == (10, 0.5)
  assert chosen["cnn"]["dev"]["50"]["0.5"] == {"ndcg@10": 0.695, "hub": pytest.approx(0.045)}


def test_the_lexical_layout_is_chosen_per_kind_by_the_mean_over_its_groups_of_dev_quality_and_hub():
  layouts = (0, 1024, 2048)

  def stage(kind, home, other):  # {layout: (nDCG@10, hub)} at home and elsewhere
    return {str(p): {"home": {"kind": kind, "searched": "a", "dev": dict(zip(("ndcg@10", "hub"), home[p]))},
                     "other": {"kind": kind, "searched": "b", "dev": dict(zip(("ndcg@10", "hub"), other[p]))}}
            for p in layouts}
  # CNN: elsewhere the hub sits at 6% whatever the layout (a small dev); at home 1024 lowers it at no cost, so the mean
  # over the two groups falls from 6% to 5%, at the ceiling; 2048 lowers it as much but costs 3 points elsewhere.
  other = {0: (0.30, 0.06), 1024: (0.30, 0.06), 2048: (0.24, 0.06)}
  cnn = {"x/cnn_s0": stage("cnn", {0: (0.90, 0.05), 1024: (0.90, 0.035), 2048: (0.90, 0.035)}, other),
         "x/cnn_s1": stage("cnn", {0: (0.90, 0.07), 1024: (0.90, 0.045), 2048: (0.90, 0.045)}, other)}
  # BiLSTM: under the ceiling at every layout, 0 the best: the plain hash stays.
  lstm = {"x/lstm_s0": stage("lstm", {0: (0.91, 0.04), 1024: (0.905, 0.03), 2048: (0.90, 0.02)},
                             {0: (0.85, 0.03), 1024: (0.85, 0.03), 2048: (0.85, 0.03)})}
  chosen = lexical_layout.choose({**cnn, **lstm}, layouts)
  assert chosen["cnn"]["private"] == 1024 and chosen["lstm"]["private"] == 0
  assert chosen["cnn"]["dev"]["0"] == {"ndcg@10": pytest.approx(0.60), "hub": pytest.approx(0.06)}
  assert chosen["cnn"]["dev"]["1024"]["hub"] == pytest.approx(0.05)  # seeds averaged within a group, then groups
  assert "_s" not in lexical_layout.group("x/cnn_s1", {"searched": "a"})  # seeds of one recipe in one group


def test_a_stored_result_is_matched_to_the_calibration_it_was_made_at():
  cal = calibration.Calibration(doc_norms=1.0, stop_df=0.25, lex_norms=1.0)
  assert cal.made({**cal.settings(), "hub_norm": {}, "full_collection": {}})  # other keys do not count
  assert not cal.made({"doc_norms": 1.0, "stop_df": 0.25})  # saved before lex_norms existed: 0 then
  made_now = {"stop_from": calibration.STOP_FROM}  # stop words counted over training documents and claims
  assert calibration.Calibration(doc_norms=1.0, stop_df=0.25).made({"doc_norms": 1.0, "stop_df": 0.25, **made_now})
  assert not cal.made({**cal.settings(), "stop_df": 0.5})
  assert cal.made({"doc_norms": 1.0, "stop_df": 0.25, "lex_norms": 1.0, **made_now})  # saved before unk_drop: 0 then
  assert not dataclasses.replace(cal, unk_drop=1.0).made({"doc_norms": 1.0, "stop_df": 0.25, "lex_norms": 1.0,
                                                          **made_now})
  # Saved before the claims counted for stop words: the words cut may differ, so it was made at other settings; with
  # no stop words at all (stop_df 1) that does not matter.
  assert not calibration.Calibration(doc_norms=1.0, stop_df=0.25).made({"doc_norms": 1.0, "stop_df": 0.25})
  assert calibration.Calibration(doc_norms=1.0).made({"doc_norms": 1.0, "stop_df": 1.0})


@pytest.mark.parametrize("kind", ["cnn", "lstm"])
def test_unk_drop_takes_the_shared_unknown_row_out_of_what_the_towers_read(kind):
  """Only the <unk> row changes (scaled by 1 - unk_drop, checked against the table edited by hand), so a text without
  unknown words encodes as before, and one whose hashed out-of-vocabulary words read that row does not."""
  common = dict(vocab_size=30, embed_dim=8, out_dim=6, dropout_rate=0.0, lexical_dim=64, embed_oov=False)
  model = (students.CNNStudent(students.CNNConfig(widths=(1, 3), num_filters=5, **common)) if kind == "cnn"
           else students.BiLSTMStudent(students.BiLSTMConfig(hidden=4, **common)))
  known = np.array([[2, 3, 4, 5, 0, 0]], np.int32)
  unknown = np.array([[2, 30 + 777_777, 4, 1, 0, 0]], np.int32)  # a hashed rare word and a plain <unk>
  variables = model.init(jax.random.key(0), known, known[:, None])
  table = np.asarray(variables["params"]["encoder"]["tokens"]["embed"]["embedding"])
  encode = lambda p, ids: np.asarray(model.apply({"params": p}, ids, method=model.encode_docs))  # noqa: E731
  assert calibration.Calibration(unk_drop=0.0).params(variables["params"]) is variables["params"]
  for share in (0.5, 1.0):
    dropped = calibration.Calibration(unk_drop=share).params(variables["params"])
    by_hand = table.copy()
    by_hand[students.OOV_ID] *= 1.0 - share
    np.testing.assert_array_equal(np.asarray(dropped["encoder"]["tokens"]["embed"]["embedding"]), by_hand)
    np.testing.assert_allclose(encode(dropped, known), encode(variables["params"], known), rtol=1e-6)
    assert np.abs(encode(dropped, unknown) - encode(variables["params"], unknown)).max() > 1e-4
  assert np.abs(table[students.OOV_ID]).max() > 0  # the test would show nothing with a zero row


def test_experiment_stages_are_listed_once_and_filtered_by_kind(tmp_path):
  """A stage pattern without a seed (one seed trained) is listed once, not once per seed; run(kind=...) keeps the
  stages of one student kind by their saved configs."""
  from experiments import calibration as calibration_experiment
  for name, kind in (("a_s0", "cnn"), ("a_s1", "cnn"), ("b", "lstm")):
    (tmp_path / name).mkdir()
    (tmp_path / name / "complete.json").write_text("{}")
    (tmp_path / name / "config.json").write_text(json.dumps({"model": {"kind": kind}}))
  stages = calibration_experiment.finished_stages(str(tmp_path), [], ("a_s{seed}", "b"), ["0", "1"])
  assert stages == ["a_s0", "a_s1", "b"]
  assert [search_grid.stage_kind(tmp_path / st) for st in stages] == ["cnn", "cnn", "lstm"]


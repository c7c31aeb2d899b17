"""Negatives beyond the candidate list (kd_jax/negatives.py): targets against a NumPy loop, the loss on the wide
list against NumPy, the draw's determinism, and a sharded step with them (8 devices == 1)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import cnn_student
from kd_jax import losses, negatives, sharding, train
from kd_jax.data import pipeline, prepare
from kd_jax.models import build as build_lib


def _reference_targets(cand_index, cand_labels, cand_mask, extra_index, extra_valid):
  """The rule written as loops: own columns as given; an extra column counts for row b when it is a real document,
  not in b's own (valid) list, and not a repeat of an earlier real extra column."""
  b, k = cand_index.shape
  c = len(extra_index)
  labels = np.zeros((b, k + c), cand_labels.dtype)
  mask = np.zeros((b, k + c), bool)
  labels[:, :k], mask[:, :k] = cand_labels, cand_mask
  for row in range(b):
    own = {int(d) for d, m in zip(cand_index[row], cand_mask[row]) if m}
    seen = set()
    for j in range(c):
      doc = int(extra_index[j])
      if not extra_valid[j]:
        continue
      mask[row, k + j] = doc not in own and doc not in seen
      seen.add(doc)
  return labels, mask


@pytest.mark.parametrize("seed", range(5))
def test_wide_targets_match_loops(seed):
  rng = np.random.default_rng(seed)
  b, k, r = 4, 5, 3
  cand_index = rng.integers(0, 12, (b, k)).astype(np.int32)  # few documents: many repeats across rows
  cand_labels = (rng.random((b, k)) < 0.3).astype(np.int32)
  cand_mask = rng.random((b, k)) < 0.85
  neg_index = rng.integers(0, 12, (b, r)).astype(np.int32)
  for in_batch, neg in ((True, neg_index), (True, None), (False, neg_index)):
    extra = np.asarray(negatives.extra_doc_index(jnp.asarray(cand_index), neg, in_batch))
    valid = np.asarray(negatives.extra_is_real(jnp.asarray(cand_mask), neg, in_batch))
    expected_extra = np.concatenate(([cand_index.ravel()] if in_batch else []) + ([neg.ravel()] if neg is not None
                                                                                   else []))
    np.testing.assert_array_equal(extra, expected_extra)
    labels, mask = negatives.wide_targets(cand_index, cand_labels, cand_mask, extra, valid)
    ref_labels, ref_mask = _reference_targets(cand_index, cand_labels, cand_mask, extra, valid)
    np.testing.assert_array_equal(np.asarray(labels), ref_labels)
    np.testing.assert_array_equal(np.asarray(mask), ref_mask)


def test_wide_hard_term_is_softmax_over_the_wide_list():
  rng = np.random.default_rng(0)
  own = rng.normal(size=(3, 4)).astype(np.float32)
  wide = np.concatenate([own, rng.normal(size=(3, 6)).astype(np.float32)], axis=1)
  labels = np.zeros((3, 4), np.int32)
  labels[:, 1] = 1
  mask = np.ones((3, 4), bool)
  wide_labels = np.concatenate([labels, np.zeros((3, 6), np.int32)], axis=1)
  wide_mask = np.ones((3, 10), bool)
  wide_mask[0, 7] = False
  teacher = rng.normal(size=(3, 4)).astype(np.float32)
  total, parts = losses.combined_loss(own, teacher, labels, mask, temperature=2.0, alpha=0.0, hard_logits=wide,
                                      hard_labels=wide_labels, hard_mask=wide_mask)
  expected = []
  for row in range(3):
    z = wide[row][wide_mask[row]]
    expected.append(np.log(np.exp(z).sum()) - wide[row, 1])
  np.testing.assert_allclose(float(parts["hard"]), np.mean(expected), rtol=1e-5)
  np.testing.assert_allclose(float(total), np.mean(expected), rtol=1e-5)
  # The distillation term stays on the K columns the teacher scored.
  _, narrow = losses.combined_loss(own, teacher, labels, mask, temperature=2.0, alpha=0.0)
  np.testing.assert_allclose(float(parts["distill"]), float(narrow["distill"]), rtol=1e-6)


def test_random_rows_depend_on_claim_seed_and_epoch_only():
  ids = np.array([b"a", b"b", b"c", b"d"])
  full = negatives.random_rows(0, ids, np.zeros(4), 5, 1000)
  halves = np.concatenate([negatives.random_rows(0, ids[:2], np.zeros(2), 5, 1000),
                           negatives.random_rows(0, ids[2:], np.zeros(2), 5, 1000)])
  np.testing.assert_array_equal(full, halves)  # however the batch is split over processes
  assert not np.array_equal(full, negatives.random_rows(0, ids, np.ones(4), 5, 1000))
  assert not np.array_equal(full, negatives.random_rows(1, ids, np.zeros(4), 5, 1000))
  assert full.min() >= 0 and full.max() < 1000


@pytest.mark.slow  # trains, prepares real data or compiles large steps: seconds each
def test_scores_with_negatives_match_the_plain_scores(data_dir, tmp_path):
  c = cnn_student.get_config("smoke")
  c.data.dir, c.data.cache_dir = str(data_dir), str(tmp_path)
  c.model.scoring = "cosine"
  prepared = prepare.prepare(c.data)
  built = build_lib.build(c.model, prepared)
  params = built.init(jax.random.key(0))
  batch = pipeline.TrainBatches(prepared.source("train"), 8, 0, pipeline.gather_transform(
      prepared, "words", random_negatives=3))[0]
  module = built.module
  own, wide = module.apply({"params": params}, batch["claim_words"], batch["doc_words"], batch["neg_words"], True,
                           method=module.scores_with_negatives)
  np.testing.assert_allclose(own, built.logits(params, batch), atol=1e-5)
  claims = module.apply({"params": params}, batch["claim_words"], method=module.encode_claims)
  docs = np.concatenate([batch["doc_words"].reshape(-1, batch["doc_words"].shape[-1]),
                         batch["neg_words"].reshape(-1, batch["neg_words"].shape[-1])])
  vecs = module.apply({"params": params}, docs, method=module.encode_docs)
  expected = module.apply({"params": params}, claims, vecs, method=module.score)
  np.testing.assert_allclose(wide[:, own.shape[1]:], expected, atol=1e-5)
  np.testing.assert_array_equal(batch["neg_words"], prepared.docs_words[batch["neg_index"]])


def _one_step(config, prepared, mesh, crop=(0.0, 0)):
  built = build_lib.build(config.model, prepared)
  tx = train.make_optimizer(config.train)
  state, state_sh = train.init_state(built, tx, jax.random.key(0), mesh)
  step = train.jit_step(train.make_train_step(built, tx, losses.distill_loss_fn(2.0, 0.5, "listwise"),
                                              in_batch=True, doc_crop_at=crop), mesh, state_sh)
  batch = pipeline.TrainBatches(prepared.source("train"), 8, 0, pipeline.gather_transform(
      prepared, "words", random_negatives=4))[0]
  batch["teacher_scores"] = batch["bm25_scores"]
  state, metrics = step(state, sharding.put_batch(batch, mesh), jax.random.key(1))
  return jax.device_get(state["params"]), {k: float(v) for k, v in metrics.items()}


@pytest.mark.slow  # trains, prepares real data or compiles large steps: seconds each
def test_sharded_step_with_negatives_equals_single_device(data_dir, tmp_path):
  c = cnn_student.get_config("smoke")
  c.data.dir, c.data.cache_dir = str(data_dir), str(tmp_path)
  prepared = prepare.prepare(c.data)
  ref_params, ref = _one_step(c, prepared, sharding.make_mesh(1, 1))
  params, got = _one_step(c, prepared, sharding.make_mesh(8, 1))
  for name in ("loss", "hard", "distill"):
    np.testing.assert_allclose(got[name], ref[name], rtol=1e-5, atol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5), params, ref_params)
  # Documents cropped inside the step (doc_crop) change the update.
  assert abs(_one_step(c, prepared, sharding.make_mesh(1, 1), crop=(1.0, 4))[1]["loss"] - ref["loss"]) > 1e-4

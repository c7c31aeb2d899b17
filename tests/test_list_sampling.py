"""Training-list sampling: every gold kept, negatives drawn without repeats from valid candidates, padding
last, the same lists for the same rng (resume), and every negative reachable."""

import jax
import jax.numpy as jnp
import numpy as np

from kd_jax import list_sampling


def _batch():
  labels = np.array([[0, 1, 0, 0, 0, 0, 0, 0],
                     [1, 0, 2, 0, 0, 0, 0, 0],
                     [0, 0, 0, 0, 0, 0, 0, 0],
                     [0, 0, 0, 1, 0, 0, 0, 0]], np.int32)
  mask = np.ones_like(labels, bool)
  mask[3, 5:] = False  # row 3: only 5 real candidates
  return {"cand_labels": labels, "cand_mask": mask, "cand_index": np.arange(32).reshape(4, 8) + 100,
          "pair_ids": np.arange(4 * 8 * 3).reshape(4, 8, 3), "claim_wp": np.ones((4, 5), np.int32)}


def test_golds_first_then_distinct_valid_negatives():
  b = _batch()
  for seed in range(20):
    pos = np.asarray(list_sampling.sample_positions(jax.random.key(seed), b["cand_labels"], b["cand_mask"], 4))
    for row in range(4):
      p = pos[row].tolist()
      assert len(set(p)) == 4
      golds = set(np.flatnonzero(b["cand_labels"][row]).tolist())
      assert set(p[:len(golds)]) == golds
      assert all(b["cand_mask"][row, j] for j in p)  # row 3 has 5 valid >= 4: never padding


def test_padding_drawn_only_when_too_few_valid_candidates():
  b = _batch()
  pos = np.asarray(list_sampling.sample_positions(jax.random.key(0), b["cand_labels"], b["cand_mask"], 7))
  assert set(pos[3, :5].tolist()) == {0, 1, 2, 3, 4} and pos[3, 0] == 3
  out = list_sampling.subsample({k: jnp.asarray(v) for k, v in b.items()}, jax.random.key(0), 7)
  assert np.asarray(out["cand_mask"])[3].sum() == 5


def test_subsample_gathers_every_per_candidate_field_consistently():
  b = {k: jnp.asarray(v) for k, v in _batch().items()}
  out = list_sampling.subsample(b, jax.random.key(5), 3)
  pos = np.asarray(list_sampling.sample_positions(jax.random.key(5), b["cand_labels"], b["cand_mask"], 3))
  for name in ("cand_labels", "cand_mask", "cand_index", "pair_ids"):
    np.testing.assert_array_equal(out[name], np.take_along_axis(np.asarray(b[name]), pos.reshape(
        pos.shape + (1,) * (b[name].ndim - 2)), axis=1))
  np.testing.assert_array_equal(out["claim_wp"], b["claim_wp"])  # per-claim fields untouched
  assert list_sampling.subsample(b, jax.random.key(5), 0) is b and list_sampling.subsample(b, jax.random.key(5), 8) is b


def test_same_rng_same_lists_and_every_negative_reachable():
  b = _batch()
  a = list_sampling.sample_positions(jax.random.key(7), b["cand_labels"], b["cand_mask"], 3)
  np.testing.assert_array_equal(a, list_sampling.sample_positions(jax.random.key(7), b["cand_labels"],
                                                                  b["cand_mask"], 3))
  seen = set()
  for seed in range(200):
    seen |= set(np.asarray(list_sampling.sample_positions(jax.random.key(seed), b["cand_labels"], b["cand_mask"],
                                                          3))[0].tolist())
  assert seen == set(range(8))

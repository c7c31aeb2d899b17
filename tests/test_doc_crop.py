"""doc_crop: random windows of training documents, checked against a NumPy reading of the same draws."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kd_jax import doc_crop


def _docs(rng, rows=400, cap=20):
  n = rng.integers(0, cap + 1, rows)
  n[:3] = (0, 1, cap)  # empty, one word, full
  ids = np.zeros((rows, cap), np.int32)
  for r, k in enumerate(n):
    ids[r, :k] = rng.integers(1, 1000, k)
  return ids, n


def _find_window(row, words):
  """Where `words` (the kept prefix of a cropped row) sits in the original row, or -1."""
  k = len(words)
  for s in range(len(row) - k + 1):
    if np.array_equal(row[s:s + k], words):
      return s
  return -1


@pytest.mark.parametrize("min_words", [1, 5])
def test_every_cropped_row_is_a_window_of_its_document(min_words):
  ids, n = _docs(np.random.default_rng(0))
  out = np.asarray(doc_crop.crop(jnp.asarray(ids), jax.random.key(1), 0.5, min_words))
  lengths = (out > 0).sum(1)
  changed = 0
  for r in range(len(ids)):
    k = lengths[r]
    assert (out[r, k:] == 0).all()  # words first, then padding
    assert min(min_words, n[r]) <= k <= n[r]
    assert _find_window(ids[r, :n[r]], out[r, :k]) >= 0
    changed += not np.array_equal(out[r], ids[r])
  # About half the rows drawn; some drawn rows keep their whole length by chance.
  assert 0.3 * len(ids) < changed < 0.55 * len(ids)


def test_lengths_and_starts_are_uniform():
  ids = np.tile(np.arange(1, 11, dtype=np.int32), (20000, 1))  # 10 words each, every word distinct
  out = np.asarray(doc_crop.crop(jnp.asarray(ids), jax.random.key(2), 1.0, 1))
  lengths = (out > 0).sum(1)
  np.testing.assert_allclose(np.bincount(lengths, minlength=11)[1:] / len(ids), 0.1, atol=0.01)
  # Given length 5, the first kept word (= start + 1) is uniform over the 6 possible starts.
  starts = out[lengths == 5, 0] - 1
  np.testing.assert_allclose(np.bincount(starts, minlength=6) / len(starts), 1 / 6, atol=0.03)


def test_zero_probability_is_the_identity_and_keys_decide():
  ids, _ = _docs(np.random.default_rng(3))
  x = jnp.asarray(ids)
  assert doc_crop.crop(x, jax.random.key(0), 0.0, 4) is x
  a, b = (np.asarray(doc_crop.crop(x, jax.random.key(k), 0.5, 4)) for k in (0, 0))
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, np.asarray(doc_crop.crop(x, jax.random.key(1), 0.5, 4)))


def test_crop_batch_crops_candidates_and_negatives_and_keeps_the_rest():
  ids, _ = _docs(np.random.default_rng(4), rows=48)
  batch = {"doc_words": jnp.asarray(ids.reshape(4, 12, -1)), "neg_words": jnp.asarray(ids[:16].reshape(4, 4, -1)),
           "claim_words": jnp.ones((4, 7), jnp.int32)}
  out = doc_crop.crop_batch(batch, jax.random.key(5), 1.0, 2)
  assert out["claim_words"] is batch["claim_words"]
  assert out["doc_words"].shape == batch["doc_words"].shape and out["neg_words"].shape == batch["neg_words"].shape
  assert not np.array_equal(out["doc_words"], batch["doc_words"])
  assert not np.array_equal(out["neg_words"], batch["neg_words"])

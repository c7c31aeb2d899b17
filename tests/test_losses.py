"""kd_jax.losses against an independent float64 NumPy reference, plus masking and stability checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from kd_jax import losses

# ---------------------------------------------------------------------------------------------------
# NumPy reference: loops over rows, touches only valid candidates, float64 throughout.


def _np_log_softmax(x: np.ndarray) -> np.ndarray:
  x = np.asarray(x, np.float64)
  m = x.max()
  return x - m - np.log(np.sum(np.exp(x - m)))


def _np_weighted_mean(values, rows, weights):
  weights = np.ones(len(values)) if weights is None else np.asarray(weights, np.float64)
  den = sum(w for w, r in zip(weights, rows) if r)
  return sum(w * v for w, v, r in zip(weights, values, rows) if r) / den if den > 0 else 0.0


def _np_distill_rows(s, t, mask, temperature):
  out = []
  for sr, tr, mr in zip(s, t, mask):
    if not mr.any():
      out.append(0.0)
      continue
    ls, lt = _np_log_softmax(sr[mr] / temperature), _np_log_softmax(tr[mr] / temperature)
    out.append(temperature**2 * np.sum(np.exp(lt) * (lt - ls)))
  return np.array(out), mask.any(-1)


def _np_listwise_rows(s, labels, mask):
  out, rows = [], []
  for sr, yr, mr in zip(s, labels, mask):
    gold = (yr[mr] > 0).astype(np.float64)
    rows.append(gold.sum() > 0)
    out.append(-np.sum(gold / max(gold.sum(), 1) * _np_log_softmax(sr[mr])) if mr.any() else 0.0)
  return np.array(out), np.array(rows)


def _np_pointwise_rows(s, labels, mask):
  out = []
  for sr, yr, mr in zip(s, labels, mask):
    x, y = np.asarray(sr[mr], np.float64), (yr[mr] > 0).astype(np.float64)
    bce = y * np.logaddexp(0, -x) + (1 - y) * np.logaddexp(0, x)
    out.append(bce.mean() if mr.any() else 0.0)
  return np.array(out), mask.any(-1)


def np_distill(s, t, mask, temperature, row_weights=None):
  return _np_weighted_mean(*_np_distill_rows(s, t, mask, temperature), row_weights)


def np_listwise(s, labels, mask, row_weights=None):
  return _np_weighted_mean(*_np_listwise_rows(s, labels, mask), row_weights)


def np_pointwise(s, labels, mask, row_weights=None):
  return _np_weighted_mean(*_np_pointwise_rows(s, labels, mask), row_weights)


def np_combined(s, t, labels, mask, temperature, alpha, hard="listwise", hard_row_mask=None):
  d, valid = _np_distill_rows(s, t, mask, temperature)
  h, has_target = (_np_listwise_rows if hard == "listwise" else _np_pointwise_rows)(s, labels, mask)
  hard_rows = valid & has_target & (True if hard_row_mask is None else np.asarray(hard_row_mask))
  per_row = np.where(hard_rows, alpha * d + (1 - alpha) * h, d)
  return _np_weighted_mean(per_row, valid, None)


# ---------------------------------------------------------------------------------------------------


def _batch(seed=0, batch=4, k=6, scale=3.0):
  """Student/teacher logits, labels with 1-2 gold docs per row, and a mask with padded tails."""
  rng = np.random.default_rng(seed)
  s = (scale * rng.normal(size=(batch, k))).astype(np.float32)
  t = (scale * rng.normal(size=(batch, k))).astype(np.float32)
  mask = np.ones((batch, k), bool)
  mask[1, 4:] = False
  mask[2, 2:] = False
  labels = np.zeros((batch, k), np.int32)
  labels[:, 0] = 1
  labels[0, 3] = 1  # two gold docs in row 0
  labels[3, 5] = 2  # graded relevance still counts as gold
  return s, t, labels, mask


def test_kl_of_identical_distributions_is_zero():
  s, _, _, mask = _batch()
  assert abs(float(losses.distillation_loss(s, s, mask, 2.0))) < 1e-6


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
def test_distillation_matches_reference_including_t_squared(temperature):
  s, t, _, mask = _batch()
  got = float(losses.distillation_loss(s, t, mask, temperature))
  np.testing.assert_allclose(got, np_distill(s, t, mask, temperature), rtol=1e-5, atol=1e-6)
  # The T**2 factor is there: dividing it out gives the plain KL of the softened distributions.
  d, rows = _np_distill_rows(s, t, mask, temperature)
  np.testing.assert_allclose(got / temperature**2, np.mean((d / temperature**2)[rows]), rtol=1e-5)


def test_invariant_to_a_constant_added_to_logits():
  s, t, labels, mask = _batch()
  shift = np.array([[5.0], [-30.0], [100.0], [0.5]], np.float32)  # a different constant per row
  base, _ = losses.combined_loss(s, t, labels, mask, 2.0, 0.5)
  for s2, t2 in [(s + shift, t), (s, t + shift), (s + 7.0, t - 3.0)]:
    got, _ = losses.combined_loss(s2, t2, labels, mask, 2.0, 0.5)
    np.testing.assert_allclose(float(got), float(base), rtol=1e-5)


@pytest.mark.slow  # trains, prepares real data or compiles large steps: seconds each
@pytest.mark.parametrize("hard", ["listwise", "pointwise"])
def test_masked_candidates_have_zero_gradient_and_no_effect(hard):
  s, t, labels, mask = _batch()

  def f(s, t):
    return losses.combined_loss(s, t, labels, mask, 3.0, 0.4, hard=hard)[0]

  gs, gt = jax.grad(f, argnums=(0, 1))(s, t)
  assert np.all(np.asarray(gs)[~mask] == 0.0) and np.all(np.asarray(gt)[~mask] == 0.0)
  assert np.abs(np.asarray(gs)[mask]).sum() > 0
  # Anything at all in the padded slots, NaN and inf included, changes neither loss nor gradient.
  for fill in [1e6, -1e6, np.inf, np.nan]:
    s2, t2 = np.where(mask, s, fill).astype(np.float32), np.where(mask, t, -fill).astype(np.float32)
    assert float(f(s2, t2)) == float(f(s, t))
    gs2, gt2 = jax.grad(f, argnums=(0, 1))(s2, t2)
    np.testing.assert_array_equal(gs2, gs)
    np.testing.assert_array_equal(gt2, gt)


def test_each_loss_ignores_masked_candidates():
  s, t, labels, mask = _batch()
  s2 = np.where(mask, s, 50.0).astype(np.float32)
  labels2 = np.where(mask, labels, 1)  # gold labels on padded slots must not count either
  for fn, args, args2 in [
      (losses.listwise_hard_loss, (s, labels, mask), (s2, labels2, mask)),
      (losses.pointwise_hard_loss, (s, labels, mask), (s2, labels2, mask)),
      (lambda a, b, m: losses.distillation_loss(a, b, m, 2.0), (s, t, mask), (s2, t, mask)),
  ]:
    assert float(fn(*args)) == float(fn(*args2))
    g = jax.grad(fn)(*args2)
    assert np.all(np.asarray(g)[~mask] == 0.0)


@pytest.mark.parametrize("hard", ["listwise", "pointwise"])
def test_alpha_zero_and_one_give_the_parts(hard):
  s, t, labels, mask = _batch()
  hard_fn = losses.listwise_hard_loss if hard == "listwise" else losses.pointwise_hard_loss
  for alpha in [0.0, 0.3, 1.0]:
    total, parts = losses.combined_loss(s, t, labels, mask, 2.0, alpha, hard=hard)
    np.testing.assert_allclose(float(parts["distill"]), float(losses.distillation_loss(s, t, mask, 2.0)), rtol=1e-6)
    np.testing.assert_allclose(float(parts["hard"]), float(hard_fn(s, labels, mask)), rtol=1e-6)
    np.testing.assert_allclose(float(total), alpha * float(parts["distill"]) + (1 - alpha) * float(parts["hard"]),
                               rtol=1e-5)
    np.testing.assert_allclose(float(total), np_combined(s, t, labels, mask, 2.0, alpha, hard), rtol=1e-5)
  np.testing.assert_allclose(float(losses.combined_loss(s, t, labels, mask, 2.0, 0.0, hard=hard)[0]),
                             float(hard_fn(s, labels, mask)), rtol=1e-6)
  np.testing.assert_allclose(float(losses.combined_loss(s, t, labels, mask, 2.0, 1.0, hard=hard)[0]),
                             float(losses.distillation_loss(s, t, mask, 2.0)), rtol=1e-6)


@pytest.mark.slow  # trains, prepares real data or compiles large steps: seconds each
@pytest.mark.parametrize("hard", ["listwise", "pointwise"])
def test_gradients_match_finite_differences_in_float64(hard):
  with jax.enable_x64(True):
    s, t, labels, mask = _batch(seed=1)
    s, t = s.astype(np.float64), t.astype(np.float64)
    hard_rows = np.array([True, False, True, True])

    def f(s, t):
      return losses.combined_loss(s, t, labels, mask, 2.5, 0.6, hard=hard, hard_row_mask=hard_rows)[0]

    assert f(s, t).dtype == jnp.float64
    # Second order once (listwise); first order suffices to cover the pointwise branch.
    check_grads(f, (s, t), order=2 if hard == "listwise" else 1, modes=["rev"], atol=1e-5, rtol=1e-5)


def test_no_nan_for_a_logit_spread_of_1e4():
  s, t, labels, mask = _batch()
  s = (s / np.abs(s).max() * 1e4).astype(np.float32)
  t = (-t / np.abs(t).max() * 1e4).astype(np.float32)  # teacher disagrees with the student
  for hard in ["listwise", "pointwise"]:
    def f(s, t, hard=hard):
      return losses.combined_loss(s, t, labels, mask, 1.0, 0.5, hard=hard)[0]

    value = float(f(s, t))
    grads = jax.grad(f, argnums=(0, 1))(s, t)
    assert np.isfinite(value) and all(np.isfinite(np.asarray(g)).all() for g in grads)
    np.testing.assert_allclose(value, np_combined(s, t, labels, mask, 1.0, 0.5, hard), rtol=1e-5)


def test_multiple_gold_documents_share_the_target_mass():
  s = np.array([[1.0, 2.0, -1.0, 0.5]], np.float32)
  labels = np.array([[1, 0, 1, 0]])
  mask = np.ones((1, 4), bool)
  log_p = _np_log_softmax(s[0])
  expected = -0.5 * (log_p[0] + log_p[2])
  np.testing.assert_allclose(float(losses.listwise_hard_loss(s, labels, mask)), expected, rtol=1e-6)
  # At the optimum the student splits its mass equally between the two gold docs: zero gradient there.
  s_opt = np.array([[3.0, -20.0, 3.0, -20.0]], np.float32)
  g = jax.grad(losses.listwise_hard_loss)(s_opt, labels, mask)
  np.testing.assert_allclose(g, 0.0, atol=1e-6)
  s, _, labels, mask = _batch()
  np.testing.assert_allclose(float(losses.listwise_hard_loss(s, labels, mask)), np_listwise(s, labels, mask),
                             rtol=1e-5)


def test_rows_without_gold_or_candidates_are_left_out_of_the_mean():
  s, t, labels, mask = _batch()
  labels = labels.copy()
  labels[2] = 0  # no gold at all
  labels[1, :] = 0
  labels[1, 5] = 1  # gold only on a padded candidate
  got = float(losses.listwise_hard_loss(s, labels, mask))
  expected = np.mean([float(losses.listwise_hard_loss(s[i:i + 1], labels[i:i + 1], mask[i:i + 1])) for i in (0, 3)])
  np.testing.assert_allclose(got, expected, rtol=1e-6)
  np.testing.assert_allclose(got, np_listwise(s, labels, mask), rtol=1e-5)
  # A row with no valid candidate is dropped from the distillation mean; an all-empty batch gives 0.
  mask2 = mask.copy()
  mask2[3] = False
  np.testing.assert_allclose(float(losses.distillation_loss(s, t, mask2, 2.0)),
                             float(losses.distillation_loss(s[:3], t[:3], mask2[:3], 2.0)), rtol=1e-6)
  empty = np.zeros_like(mask)
  total, parts = losses.combined_loss(s, t, np.zeros_like(labels), empty, 2.0, 0.5)
  assert float(total) == 0.0 and float(parts["hard"]) == 0.0
  assert np.all(np.asarray(jax.grad(lambda x: losses.combined_loss(x, t, labels, empty, 2.0, 0.5)[0])(s)) == 0.0)


def test_pointwise_matches_reference():
  s, _, labels, mask = _batch(scale=5.0)
  np.testing.assert_allclose(float(losses.pointwise_hard_loss(s, labels, mask)), np_pointwise(s, labels, mask),
                             rtol=1e-5)
  # With equally many valid candidates per row this is the plain mean over candidates.
  full = np.ones_like(mask)
  x, y = s.astype(np.float64), (labels > 0).astype(np.float64)
  plain = np.mean(y * np.logaddexp(0, -x) + (1 - y) * np.logaddexp(0, x))
  np.testing.assert_allclose(float(losses.pointwise_hard_loss(s, labels, full)), plain, rtol=1e-5)


@pytest.mark.parametrize("hard", ["listwise", "pointwise"])
def test_hard_row_mask_rows_get_distillation_only(hard):
  s, t, labels, mask = _batch()
  hard_rows = np.array([True, False, True, False])
  alpha, temp = 0.3, 2.0
  total, parts = losses.combined_loss(s, t, labels, mask, temp, alpha, hard=hard, hard_row_mask=hard_rows)
  # Each pseudo row counts exactly as it would with alpha=1; each labelled row with the given alpha.
  per_row = [float(losses.combined_loss(s[i:i + 1], t[i:i + 1], labels[i:i + 1], mask[i:i + 1], temp,
                                        alpha if hard_rows[i] else 1.0, hard=hard)[0]) for i in range(4)]
  np.testing.assert_allclose(float(total), np.mean(per_row), rtol=1e-5)
  np.testing.assert_allclose(float(total), np_combined(s, t, labels, mask, temp, alpha, hard, hard_rows), rtol=1e-5)
  # The pseudo rows' labels are never read.
  labels2 = labels.copy()
  labels2[~hard_rows] = 1 - labels2[~hard_rows]
  total2, _ = losses.combined_loss(s, t, labels2, mask, temp, alpha, hard=hard, hard_row_mask=hard_rows)
  assert float(total2) == float(total)
  hard_fn = losses.listwise_hard_loss if hard == "listwise" else losses.pointwise_hard_loss
  np.testing.assert_allclose(float(parts["hard"]), float(hard_fn(s[hard_rows], labels[hard_rows], mask[hard_rows])),
                             rtol=1e-6)
  # All rows pseudo: the total is the distillation loss alone, whatever alpha.
  total3, _ = losses.combined_loss(s, t, labels, mask, temp, alpha, hard=hard, hard_row_mask=np.zeros(4, bool))
  np.testing.assert_allclose(float(total3), float(losses.distillation_loss(s, t, mask, temp)), rtol=1e-6)


def test_row_weights_and_jit():
  s, t, labels, mask = _batch()
  w = np.array([1.0, 0.0, 2.0, 0.5], np.float32)
  np.testing.assert_allclose(float(losses.distillation_loss(s, t, mask, 2.0, row_weights=w)),
                             np_distill(s, t, mask, 2.0, w), rtol=1e-5)
  np.testing.assert_allclose(float(losses.listwise_hard_loss(s, labels, mask, row_weights=w)),
                             np_listwise(s, labels, mask, w), rtol=1e-5)
  jitted = jax.jit(losses.combined_loss, static_argnames=("hard",))
  for hard in ["listwise", "pointwise"]:
    # Temperature and alpha may be traced (e.g. scheduled) values.
    got, parts = jitted(s, t, labels, mask, jnp.float32(2.0), jnp.float32(0.3), hard=hard,
                        hard_row_mask=np.array([True, True, False, True]))
    want, want_parts = losses.combined_loss(s, t, labels, mask, 2.0, 0.3, hard=hard,
                                            hard_row_mask=np.array([True, True, False, True]))
    np.testing.assert_allclose(float(got), float(want), rtol=1e-6)
    np.testing.assert_allclose(float(parts["hard"]), float(want_parts["hard"]), rtol=1e-6)
  with pytest.raises(ValueError):
    losses.combined_loss(s, t, labels, mask, 2.0, 0.3, hard="pairwise")

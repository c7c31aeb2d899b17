"""kd_jax/models/bilstm.py against Flax's Bidirectional OptimizedLSTMCells: same parameters, outputs and gradients."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from kd_jax.models import bilstm, students

B, T, D, H = 6, 9, 5, 8
LENGTHS = [9, 1, 4, 9, 0, 7]  # a padded batch, an empty sequence and a one-word one among them


def _data():
  x = jnp.asarray(np.random.default_rng(0).normal(size=(B, T, D)) * 2, jnp.float32)  # reaches the gates' saturation
  return x, jnp.asarray(LENGTHS, jnp.int32)


class FlaxBiLSTM(nn.Module):
  """The student's recurrence before bilstm.py: Flax cells named as the student names them."""

  @nn.compact
  def __call__(self, x, lengths):
    cells = [nn.OptimizedLSTMCell(H, name=f"OptimizedLSTMCell_{i}") for i in range(2)]
    return nn.Bidirectional(nn.RNN(cells[0]), nn.RNN(cells[1]), name="bilstm")(x, seq_lengths=lengths)


class OurBiLSTM(nn.Module):
  @nn.compact
  def __call__(self, x, lengths):
    weights = [bilstm.LSTMWeights(H, name=f"OptimizedLSTMCell_{i}")(x.shape[-1]) for i in range(2)]
    return bilstm.batch_major(*bilstm.bilstm(x, lengths, *weights))


def _valid(lengths):
  return (jnp.arange(T)[None, :] < lengths[:, None])[..., None]


def test_same_parameters_as_flax():
  x, lengths = _data()
  ours, ref = OurBiLSTM().init(jax.random.key(3), x, lengths), FlaxBiLSTM().init(jax.random.key(3), x, lengths)
  assert jax.tree.structure(ours) == jax.tree.structure(ref)
  for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(ref)):
    np.testing.assert_array_equal(a, b)  # names, shapes and initial values: checkpoints load either way


def test_outputs_and_gradients_equal_flax():
  x, lengths = _data()
  params = FlaxBiLSTM().init(jax.random.key(3), x, lengths)
  params = jax.tree.map(lambda p: p + 0.3 * jax.random.normal(jax.random.key(4), p.shape), params)  # biases too
  valid = _valid(lengths)
  out_ours, out_ref = OurBiLSTM().apply(params, x, lengths), FlaxBiLSTM().apply(params, x, lengths)
  assert out_ours.shape == out_ref.shape == (B, T, 2 * H)
  np.testing.assert_allclose(jnp.where(valid, out_ours, 0), jnp.where(valid, out_ref, 0), rtol=1e-5, atol=1e-6)
  weights = jax.random.normal(jax.random.key(5), (B, T, 2 * H))

  def grad(model):  # every valid output position, through a nonlinearity, and both arguments in play
    return jax.grad(lambda p, x: jnp.sum(jnp.where(valid, jnp.sin(model.apply(p, x, lengths) * weights), 0)),
                    argnums=(0, 1))

  g_ours, g_ref = grad(OurBiLSTM())(params, x), grad(FlaxBiLSTM())(params, x)
  assert jax.tree.structure(g_ours) == jax.tree.structure(g_ref)
  for a, b in zip(jax.tree.leaves(g_ours), jax.tree.leaves(g_ref)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_gradient_matches_finite_differences():
  x, lengths = _data()
  rng = np.random.default_rng(1)
  weights = [tuple(jnp.asarray(rng.normal(size=s) * 0.5, jnp.float32) for s in ((D, 4 * H), (H, 4 * H), (4 * H,)))
             for _ in range(2)]

  def f(x, forward, backward):
    hf, hb = bilstm.bilstm(x, lengths, forward, backward)
    return jnp.tanh(hf) * 0.5, hb ** 2  # outputs past each length included: the gradient must be exact there too

  check_grads(f, (x, *weights), order=1, modes=("rev",), atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize("pooling", ["max", "mean"])
def test_the_student_computes_what_it_did_with_flax_cells(pooling):
  """The student's tower before bilstm.py (Flax's Bidirectional over its padded [N, L, 2H] outputs, pooled with the
  token mask) and now: same parameter tree, same vectors."""
  cfg = students.BiLSTMConfig(vocab_size=50, embed_dim=D, hidden=H, out_dim=6, lexical_dim=0, pooling=pooling)
  ids = np.random.default_rng(2).integers(2, 50, size=(B, T))
  ids = jnp.asarray(np.where(np.arange(T)[None, :] < np.asarray(LENGTHS)[:, None], ids, 0), jnp.int32)

  class Before(nn.Module):
    @nn.compact
    def __call__(self, ids):
      x, mask = students.Embed(cfg, name="tokens")(ids)
      cells = [nn.OptimizedLSTMCell(H, name=f"OptimizedLSTMCell_{i}") for i in range(2)]
      h = nn.Bidirectional(nn.RNN(cells[0]), nn.RNN(cells[1]), name="bilstm")(x, seq_lengths=mask.sum(-1))
      pool = students.masked_max if pooling == "max" else students.masked_mean
      return nn.Dense(cfg.out_dim, name="proj")(pool(h, mask))

  ours = students.BiLSTMEncoder(cfg)
  params = ours.init(jax.random.key(0), ids)
  before = Before().init(jax.random.key(0), ids)
  assert jax.tree.structure(params) == jax.tree.structure(before)
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(before)):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_allclose(ours.apply(params, ids), Before().apply(params, ids), rtol=1e-5, atol=1e-6)

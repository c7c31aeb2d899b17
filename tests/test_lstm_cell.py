"""kd_jax/models/lstm_cell.py against Flax's OptimizedLSTMCell itself: same parameters, outputs and gradients."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from kd_jax.models import lstm_cell, students

B, T, D, H = 6, 9, 5, 8


def _data():
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(B, T, D)) * 2, jnp.float32)  # large enough to reach the gates' saturation
  lengths = jnp.asarray([9, 1, 4, 9, 0, 7], jnp.int32)  # a padded batch, an empty sequence among them
  return x, lengths


def _rnns():
  return nn.RNN(nn.OptimizedLSTMCell(H)), nn.RNN(lstm_cell.FusedLSTMCell(H))


def test_same_parameters_as_flax():
  x, lengths = _data()
  ref, fused = _rnns()
  p_ref = ref.init(jax.random.key(3), x, seq_lengths=lengths)
  p_fused = fused.init(jax.random.key(3), x, seq_lengths=lengths)
  assert jax.tree.structure(p_ref) == jax.tree.structure(p_fused)
  for a, b in zip(jax.tree.leaves(p_ref), jax.tree.leaves(p_fused)):
    np.testing.assert_array_equal(a, b)  # names, shapes and initial values: checkpoints load either way


def test_outputs_and_gradients_equal_flax():
  x, lengths = _data()
  ref, fused = _rnns()
  params = ref.init(jax.random.key(3), x, seq_lengths=lengths)
  params = jax.tree.map(lambda p: p + 0.3 * jax.random.normal(jax.random.key(4), p.shape), params)  # biases too
  np.testing.assert_allclose(fused.apply(params, x, seq_lengths=lengths), ref.apply(params, x, seq_lengths=lengths),
                             rtol=1e-5, atol=1e-6)
  weights = jax.random.normal(jax.random.key(5), (B, T, H))

  def loss(rnn):  # every output position, the final carry and both arguments in play
    def f(p, x):
      carry, out = rnn.apply(p, x, seq_lengths=lengths, return_carry=True)
      return jnp.sum(out * weights) + jnp.sum(carry[0] ** 2) + jnp.sum(jnp.sin(carry[1]))
    return jax.grad(f, argnums=(0, 1))

  g_ref, g_fused = loss(ref)(params, x), loss(fused)(params, x)
  for a, b in zip(jax.tree.leaves(g_ref), jax.tree.leaves(g_fused)):
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)


def test_update_gradient_matches_finite_differences():
  rng = np.random.default_rng(1)
  pre = jnp.asarray(rng.normal(size=(3, 4 * H)), jnp.float64 if jax.config.x64_enabled else jnp.float32)
  c = jnp.asarray(rng.normal(size=(3, H)), pre.dtype)
  check_grads(lstm_cell.lstm_update, (pre, c), order=1, modes=("rev",), atol=2e-2, rtol=2e-2)


def test_other_gate_functions_are_refused():
  cell = lstm_cell.FusedLSTMCell(H, gate_fn=nn.hard_sigmoid)
  x = jnp.zeros((2, D))
  with pytest.raises(ValueError, match="sigmoid gates and tanh activations only"):
    cell.init(jax.random.key(0), cell.initialize_carry(jax.random.key(1), x.shape), x)


def test_the_student_holds_the_parameters_flax_cells_would(monkeypatch):
  """Stages trained with nn.OptimizedLSTMCell load into today's student: same paths (module names), shapes, values."""
  cfg = students.BiLSTMConfig(vocab_size=50, embed_dim=D, hidden=H, out_dim=6, lexical_dim=0)
  ids = jnp.asarray(np.random.default_rng(2).integers(0, 50, size=(3, T)), jnp.int32)
  ours = students.BiLSTMEncoder(cfg).init(jax.random.key(0), ids)
  monkeypatch.setattr(lstm_cell, "FusedLSTMCell", nn.OptimizedLSTMCell)
  flax_cells = students.BiLSTMEncoder(cfg).init(jax.random.key(0), ids)
  assert jax.tree_util.tree_structure(ours) == jax.tree_util.tree_structure(flax_cells)
  assert "OptimizedLSTMCell_1" in ours["params"]
  for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(flax_cells)):
    np.testing.assert_array_equal(a, b)

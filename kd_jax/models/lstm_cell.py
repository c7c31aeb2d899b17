"""Flax's OptimizedLSTMCell with a hand-written VJP for its elementwise part: same parameters, same function.

The BiLSTM student's recurrence runs a small elementwise kernel 128 times per direction, forward and backward; on
CPU that kernel, not the matrix product, is where the step loses to PyTorch's fused LSTM (results/LSTM_CORE.md).
Autodiff of the cell saves each intermediate of the gate arithmetic and runs several passes over them in the backward
loop; here the forward saves the activated gates, the previous cell state and tanh of the new one, and the backward
computes every gradient from them in one pass (sigmoid' = a (1 - a), tanh' = 1 - a^2).

Measured on one direction of 512 sequences x 128 steps, 128 units (`python -m benchmarks.lstm_core`, AMD EPYC,
2 cores): forward + backward about 11% faster than Flax's cell, the forward level. Outputs equal Flax's to float32
rounding; tests/test_lstm_cell.py checks outputs and gradients against OptimizedLSTMCell itself.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen.recurrent import DenseParams

GATES = ("i", "f", "g", "o")


@jax.custom_vjp
def lstm_update(pre: jax.Array, c: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(new h, new c) from the gates' pre-activations [..., 4H] (i, f, g, o) and the cell state [..., H]."""
  return _update_fwd(pre, c)[0]


def _update_fwd(pre, c):
  i, f, g, o = jnp.split(pre, 4, axis=-1)
  i, f, g, o = jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)
  new_c = f * c + i * g
  tanh_c = jnp.tanh(new_c)
  return (o * tanh_c, new_c), (jnp.concatenate([i, f, g, o], axis=-1), c, tanh_c)


def _update_bwd(res, cts):
  a, c, tanh_c = res  # the activated gates, the previous cell state, tanh of the new one
  d_h, d_new_c = cts
  i, f, g, o = jnp.split(a, 4, axis=-1)
  d_c = d_new_c + d_h * o * (1 - tanh_c * tanh_c)
  d_a = jnp.concatenate([d_c * g, d_c * c, d_c * i, d_h * tanh_c], axis=-1)
  is_g = jnp.arange(a.shape[-1]) // (a.shape[-1] // 4) == GATES.index("g")
  # sigmoid' = a (1 - a), tanh' = 1 - a^2, both from the activations themselves
  return d_a * jnp.where(is_g, 1 - a * a, a * (1 - a)), d_c * f


lstm_update.defvjp(_update_fwd, _update_bwd)


class FusedLSTMCell(nn.OptimizedLSTMCell):
  """nn.OptimizedLSTMCell (parameter names, shapes and initialisers unchanged) with the default gate functions only:
  sigmoid gates, tanh activation. Flax names unnamed submodules after their class, so a model's checkpoints match
  either cell only when the instance keeps the name Flax gave OptimizedLSTMCell's (students.py passes it)."""

  @nn.compact
  def __call__(self, carry, inputs):
    if self.gate_fn is not nn.sigmoid or self.activation_fn is not nn.tanh:
      raise ValueError("FusedLSTMCell computes sigmoid gates and tanh activations only; use nn.OptimizedLSTMCell.")
    c, h = carry
    hidden = h.shape[-1]
    dense_i = [DenseParams(features=hidden, use_bias=False, param_dtype=self.param_dtype, kernel_init=self.kernel_init,
                           bias_init=self.bias_init, name=f"i{g}")(inputs) for g in GATES]
    dense_h = [DenseParams(features=hidden, use_bias=True, param_dtype=self.param_dtype,
                           kernel_init=self.recurrent_kernel_init, bias_init=self.bias_init, name=f"h{g}")(h)
               for g in GATES]
    kernel_i = jnp.concatenate([k for k, _ in dense_i], axis=-1)
    kernel_h = jnp.concatenate([k for k, _ in dense_h], axis=-1)
    bias = jnp.concatenate([b for _, b in dense_h], axis=-1)
    inputs, h, c, kernel_i, kernel_h, bias = nn.dtypes.promote_dtype(inputs, h, c, kernel_i, kernel_h, bias,
                                                                     dtype=self.dtype)
    pre = jnp.dot(inputs, kernel_i) + jnp.dot(h, kernel_h) + bias
    new_h, new_c = lstm_update(pre, c)
    return (new_c, new_h), new_h

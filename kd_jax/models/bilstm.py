"""The BiLSTM student's recurrence: both directions batched in one scan, with a hand-written VJP for the sequence.

Same function and parameters as Flax's `nn.Bidirectional(nn.RNN(OptimizedLSTMCell), nn.RNN(OptimizedLSTMCell))`
with sequence lengths (tests/test_bilstm.py checks outputs at valid positions and gradients against it), but laid
out for XLA:CPU, where the student's train step over Flax's cells ran at 0.62-0.68x PyTorch's fused LSTM:
- One `lax.scan` steps both directions: 128 loop iterations instead of 256, and no per-sequence flips. The reverse
  direction reads the sequence from its end and holds its zero state over the trailing padding, so it starts at
  each sequence's last word as Flax's reversal within the length does; its outputs stay in reversed time, which
  pooling over time does not mind (the student pools each direction on its own, with no [N, L, 2H] concatenation).
- The backward pass is one reverse loop written by hand. It saves only the outputs, the cell states and the four
  gates, recomputes tanh of the cell state, keeps each gate in an array of its own (XLA:CPU leaves a loop fusion
  unvectorised when it slices one dynamically indexed array several times: 0.45 against 0.12 ms a step, measured)
  and multiplies by transposed weights made once, outside the loop.
- Each step's products are merged: [x, h, 1] against the input and recurrent kernels and the bias stacked into one
  [D + H + 1, 4H] matrix (made once, outside the loop), so a direction does one product a step forward and two
  backward (the gradients of [x, h_prev] and of the stacked kernel) instead of two and four. The bias's gradient is
  the stacked kernel's last row, so no step sums its [N, 4H] gradient over the batch: that reduction alone took a
  tenth of the layer's forward and backward on an Intel Xeon (perf; YNNPACK's sum over the outer axis; the layer
  alone 1,083 -> 1,028 ms in a probe not committed, the whole train step within its noise,
  results/probes/bilstm_step_bias.json).
- The two directions are a leading axis of size 2 throughout: each step is one batched product forward and two
  backward, and its gate arithmetic one set of fusions over [2, N, 4H], half as many kernels a step. The whole train
  step, 30 paired rounds in one process on an Intel Xeon: 2% faster (median paired ratio 0.98, faster in 22 rounds;
  results/probes/bilstm_layouts.json, which also records the backward's input and kernel products moved out of the
  loop into one large product each, as PyTorch's autograd makes them: 13% slower, and 12% with the forward's input
  projection moved out too).
Measured (AMD EPYC, 2 cores): the benchmark's BiLSTM train step went from 0.68x to 0.80x the PyTorch peer
(results/BENCHMARKS.md), and the layer alone, forward and backward, runs 1.55x as fast as Flax's Bidirectional
(results/LSTM_CORE.md). The merged products, with the step compiled for 512-bit vectors (configs/lstm_student.py's
train.xla_cpu_options): 0.70x -> 0.75x on an Intel Xeon (results/probes/bilstm_step_ab.json).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen.recurrent import DenseParams

Array = jax.Array
GATES = ("i", "f", "g", "o")  # Flax's OptimizedLSTMCell's order and names: input, forget, cell, output
Weights = tuple[Array, Array, Array]  # input kernel [D, 4H], recurrent kernel [H, 4H], bias [4H]


class LSTMWeights(nn.Module):
  """The parameters `nn.OptimizedLSTMCell(hidden)` would create (names, shapes, initialisers), concatenated over the
  gates. Flax names parameters by module path, so an instance named as Flax named the cell holds the same values,
  and checkpoints load either way."""
  hidden: int

  @nn.compact
  def __call__(self, in_features: int) -> Weights:
    cell = nn.OptimizedLSTMCell  # its default initialisers (class attributes of the dataclass), not copies
    x, h = jnp.zeros((1, in_features)), jnp.zeros((1, self.hidden))
    dense_i = [DenseParams(features=self.hidden, use_bias=False, kernel_init=cell.kernel_init,
                           bias_init=cell.bias_init, name=f"i{g}")(x) for g in GATES]
    dense_h = [DenseParams(features=self.hidden, use_bias=True, kernel_init=cell.recurrent_kernel_init,
                           bias_init=cell.bias_init, name=f"h{g}")(h) for g in GATES]
    return (jnp.concatenate([k for k, _ in dense_i], axis=-1), jnp.concatenate([k for k, _ in dense_h], axis=-1),
            jnp.concatenate([b for _, b in dense_h], axis=-1))


def bilstm(x: Array, lengths: Array, forward: Weights, backward: Weights) -> tuple[Array, Array]:
  """x [N, L, D] (right-padded; `lengths` [N] valid steps each) -> (forward outputs [L, N, H], reverse outputs in
  reversed time [L, N, H]), time-major as the scan makes them; `batch_major` gives Flax's [N, L, 2H]. Outputs past
  each length are not Flax's: mask them."""
  xt = jnp.swapaxes(x, 0, 1)
  valid_rev = (jnp.arange(x.shape[1])[:, None] < lengths[None, :])[::-1]
  return _core((xt, xt[::-1]), valid_rev, (tuple(forward), tuple(backward)))


def pooled(hf: Array, hb: Array, mask: Array, pool) -> Array:
  """`bilstm`'s outputs pooled over time [N, 2H] (forward, then reverse), each direction on its own with no
  [N, L, 2H] concatenation: `pool(h [N, L, H], mask [N, L])` is the student's masked_max or masked_mean, and `mask`
  the words' [N, L], reversed for the outputs that lie in reversed time."""
  return jnp.concatenate([pool(jnp.swapaxes(h, 0, 1), m) for h, m in ((hf, mask), (hb, mask[:, ::-1]))], axis=-1)


def batch_major(hf: Array, hb: Array) -> Array:
  """`bilstm`'s outputs as Flax's Bidirectional gives them: [N, L, 2H], both directions at each word's position."""
  return jnp.swapaxes(jnp.concatenate([hf, hb[::-1]], axis=-1), 0, 1)


def _gates(pre: Array) -> tuple[Array, Array, Array, Array]:
  i, f, g, o = jnp.split(pre, 4, axis=-1)
  return jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)


@jax.custom_vjp
def _core(xs: tuple[Array, Array], valid_rev: Array, weights: tuple[Weights, Weights]) -> tuple[Array, Array]:
  """xs: the inputs time-major [L, N, D], forward and reversed; valid_rev [L, N]: which reversed steps are words."""
  return _core_fwd(xs, valid_rev, weights)[0]


def _stacked(weights: tuple[Weights, Weights]) -> Array:
  """Both directions' input and recurrent kernels and biases as one [2, D + H + 1, 4H] array, so that a step's
  products and biases, both directions, are one batched product: [x, h, 1] @ [w_in; w_rec; bias]."""
  return jnp.stack([jnp.concatenate([w_in, w_rec, bias[None]], axis=0) for w_in, w_rec, bias in weights])


def _bmm(a: Array, b: Array) -> Array:
  """[2, N, K] @ [2, K, G] -> [2, N, G]: one product per direction, in one op."""
  return jax.lax.dot_general(a, b, (((2,), (1,)), ((0,), (0,))))


def _core_fwd(xs, valid_rev, weights):
  n, hidden = xs[0].shape[1], weights[0][1].shape[0]
  stacked = _stacked(weights)
  x2 = jnp.stack(xs, axis=1)  # [L, 2, N, D]
  # The forward direction never holds its state; the reverse one holds it over each sequence's trailing padding.
  valid = jnp.stack([jnp.ones_like(valid_rev), valid_rev], axis=1)[..., None]  # [L, 2, N, 1]
  ones = jnp.ones((2, n, 1), x2.dtype)

  def step(carry, inputs):
    h, c = carry
    x, v = inputs
    i, f, g, o = _gates(_bmm(jnp.concatenate([x, h, ones], axis=-1), stacked))
    new_c = f * c + i * g
    new_h = o * jnp.tanh(new_c)
    new_h, new_c = jnp.where(v, new_h, h), jnp.where(v, new_c, c)
    return (new_h, new_c), (new_h, new_c, i, f, g, o)

  zeros = jnp.zeros((2, n, hidden), x2.dtype)
  _, saved = jax.lax.scan(step, (zeros, zeros), (x2, valid))
  return (saved[0][:, 0], saved[0][:, 1]), (x2, valid, weights, saved)


def _core_bwd(res, d_out):
  x2, valid, weights, saved = res
  length, _, n, d_in = x2.shape
  zeros = jnp.zeros((2, n, weights[0][1].shape[0]), x2.dtype)
  ones = jnp.ones((2, n, 1), x2.dtype)
  stacked = _stacked(weights)
  transposed = jnp.swapaxes(stacked[:, :-1], 1, 2)  # [2, 4H, D + H]: d [x, h_prev] in one product
  d_out = jnp.stack(d_out, axis=1)  # [L, 2, N, H]
  hs, cs, gi, gf, gg, go = saved
  at = lambda a, t: jax.lax.dynamic_index_in_dim(a, t, keepdims=False)  # noqa: E731

  def body(s, carry):
    d_h, d_c_next, d_w, d_xs = carry
    t = length - 1 - s
    prev = jnp.maximum(t - 1, 0)
    h_prev = jnp.where(t == 0, zeros, at(hs, prev))
    c_prev = jnp.where(t == 0, zeros, at(cs, prev))
    i, f, g, o = at(gi, t), at(gf, t), at(gg, t), at(go, t)
    d_h = d_h + at(d_out, t)
    tanh_c = jnp.tanh(f * c_prev + i * g)
    d_c = d_c_next + d_h * o * (1 - tanh_c * tanh_c)
    # d pre-activation: sigmoid' = a (1 - a), tanh' = 1 - a^2, from the saved activations; a held step passed its
    # state through unchanged
    v = at(valid, t)
    d_pre = jnp.where(v, jnp.concatenate([d_c * g * i * (1 - i), d_c * c_prev * f * (1 - f), d_c * i * (1 - g * g),
                                          d_h * tanh_c * o * (1 - o)], axis=-1), 0)
    d_xh = _bmm(d_pre, transposed)
    d_x, d_h_prev = d_xh[..., :d_in], d_xh[..., d_in:]
    d_h_prev, d_c_prev = jnp.where(v, d_h_prev, d_h), jnp.where(v, d_c * f, d_c_next)
    xh = jnp.concatenate([at(x2, t), h_prev, ones], axis=-1)
    d_w = d_w + jax.lax.dot_general(xh, d_pre, (((1,), (1,)), ((0,), (0,))))  # [2, D + H + 1, 4H]
    return d_h_prev, d_c_prev, d_w, jax.lax.dynamic_update_index_in_dim(d_xs, d_x, t, 0)

  _, _, d_w, d_xs = jax.lax.fori_loop(0, length, body, (zeros, zeros, jnp.zeros_like(stacked), jnp.zeros_like(x2)))
  # The stacked kernels' gradients, split back: input kernel, recurrent kernel, bias (the last row).
  return ((d_xs[:, 0], d_xs[:, 1]), None,
          tuple((d_w[k, :d_in], d_w[k, d_in:-1], d_w[k, -1]) for k in range(2)))


_core.defvjp(_core_fwd, _core_bwd)

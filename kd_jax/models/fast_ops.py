"""Cheaper teacher arithmetic on CPUs: bf16-input multiplies that accumulate in f32, and packed dropout bits.

bf16 products: on CPUs whose XLA dot kernels run bf16 x bf16 -> f32 fast (measured ~2x f32 on AMD Zen 5), this
halves the multiply cost, while bf16 -> bf16 output runs no faster than f32 (so `dtype=bfloat16` alone gains
nothing). On other CPUs it can be slower: results/TEACHER_SPEED.md measures this one. Autodiff of a mixed
multiply would run the backward products in f32; the custom VJP below makes them bf16 x bf16 -> f32 as well.
Params, gradients and the optimizer stay f32; with `dtype=float32` so do activations: only the inputs of each
product are rounded.

Dropout: `jax.random.bernoulli` spends one threefry call (two 32-bit words) per decision; `dropout` here can take
16 bits per decision, so one call serves two, or (rng='hash') draw only two threefry words per call and make each
decision from a cheap integer hash of (those words, the element's index). The hash costs ~10 integer ops per element
and fuses into the elementwise pass that applies the mask, so masks cost almost nothing and never touch memory.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

_F32 = jnp.float32


def _grad_specs(spec: str) -> tuple[str, str]:
  """`'a,b->o'` -> the einsum specs of the two input gradients, `'o,b->a'` and `'o,a->b'`.

  Valid when every index of an input also appears in the other input or the output (true of matmuls,
  batched matmuls and attention), so each gradient is again one einsum.
  """
  lhs, out = spec.replace(" ", "").split("->")
  a, b = lhs.split(",")
  for x, other in ((a, b), (b, a)):
    if any(ch not in other + out for ch in x.replace("...", "")):
      raise ValueError(f"mixed_einsum cannot differentiate {spec!r}: an input index is summed on its own.")
  return f"{out},{b}->{a}", f"{out},{a}->{b}"


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def mixed_einsum(spec: str, a: jax.Array, b: jax.Array) -> jax.Array:
  """`jnp.einsum(spec, a, b)` with bf16 inputs and f32 accumulation/output, forward and backward."""
  return jnp.einsum(spec, a.astype(jnp.bfloat16), b.astype(jnp.bfloat16), preferred_element_type=_F32)


def _fwd(spec, a, b):
  a16, b16 = a.astype(jnp.bfloat16), b.astype(jnp.bfloat16)
  # Residuals kept in bf16: half the memory of the f32 inputs, and exactly what the products use.
  # Empty arrays carry the inputs' dtypes (residuals must be arrays), for cotangents of matching dtype.
  dtypes = (jnp.zeros((0,), a.dtype), jnp.zeros((0,), b.dtype))
  return jnp.einsum(spec, a16, b16, preferred_element_type=_F32), (a16, b16) + dtypes


def _bwd(spec, res, g):
  a16, b16, a_like, b_like = res
  spec_a, spec_b = _grad_specs(spec)
  g16 = g.astype(jnp.bfloat16)
  ga = jnp.einsum(spec_a, g16, b16, preferred_element_type=_F32)
  gb = jnp.einsum(spec_b, g16, a16, preferred_element_type=_F32)
  return ga.astype(a_like.dtype), gb.astype(b_like.dtype)


mixed_einsum.defvjp(_fwd, _bwd)


def mixed_dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
  """A `dot_general` for `nn.Dense(dot_general=...)`: `x[..., i] @ w[i, o]` through `mixed_einsum`."""
  del precision, preferred_element_type
  (lc, rc), (lb, rb) = dimension_numbers
  if tuple(lc) != (lhs.ndim - 1,) or tuple(rc) != (0,) or lb or rb or rhs.ndim != 2:
    raise ValueError(f"mixed_dot_general supports Dense-style products only, got {dimension_numbers}.")
  return mixed_einsum("...i,io->...o", lhs, rhs)


def dropout(module: nn.Module, x: jax.Array, rate: float, deterministic: bool, bits: int = 32,
            rng: str = "threefry") -> jax.Array:
  """Inverted dropout whose decisions come from the module's 'dropout' rng.

  rng='threefry' draws `bits` (8, 16 or 32) random bits per decision; 32 is Flax's `nn.Dropout`. With 8 or 16 the
  drop probability is `round(rate * 2**bits) / 2**bits` (0.1 -> 0.1016 with 8 bits, 0.10000 with 16).
  rng='hash' (`bits` unused) makes each decision from `hash_bits` of the element's index, keyed by two threefry
  words per call: drop probability `round(rate * 2**32) / 2**32`.
  Kept values are scaled by the inverse of the exact keep probability, so the expectation is unchanged.
  """
  if deterministic or rate == 0.0:
    return x
  if rng not in ("threefry", "hash"):
    raise ValueError(f"dropout rng must be 'threefry' or 'hash', got {rng!r}")
  if rng == "threefry" and bits not in (8, 16, 32):
    raise ValueError(f"dropout bits must be 8, 16 or 32, got {bits}")
  if rate >= 1.0 or (rng == "threefry" and bits == 32):  # Flax's Dropout also handles rate 1 (everything dropped)
    return nn.Dropout(rate)(x, deterministic=False)
  key = module.make_rng("dropout")
  if rng == "hash":
    width, draws = 32, hash_bits(key, x.shape)
  else:
    n = int(np.prod(x.shape))
    words = jax.random.bits(key, (-(-n // (32 // bits)),), jnp.uint32)
    width = bits
    draws = jax.lax.bitcast_convert_type(words, {8: jnp.uint8, 16: jnp.uint16}[bits]).reshape(-1)[:n]
    draws = draws.reshape(x.shape)
  threshold = min(int(round(rate * 2**width)), 2**width - 1)
  keep_prob = 1.0 - threshold / 2**width
  return jnp.where(draws >= jnp.asarray(threshold, draws.dtype), x / jnp.asarray(keep_prob, x.dtype),
                   jnp.zeros((), x.dtype))


def _mix32(h: jax.Array) -> jax.Array:
  """A 32-bit integer finaliser (Wellons' 'lowbias32': every input bit flips each output bit with probability ~1/2)."""
  h = h ^ (h >> 16)
  h = h * jnp.uint32(0x7FEB352D)
  h = h ^ (h >> 15)
  h = h * jnp.uint32(0x846CA68B)
  return h ^ (h >> 16)


def hash_bits(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """uint32 pseudo-random bits of `shape`: mix(mix(index ^ s0) ^ s1), with (s0, s1) drawn from `key` by threefry.

  Counter-based, like threefry itself, but 2 rounds of a cheap mixer instead of 20 of a cipher: good enough for
  dropout decisions (rate and independence tested), not for anything adversarial. The index is the element's
  position in the *global* array, so a sharded computation draws the same mask as an unsharded one. Two seed
  words, the second applied between the rounds, keep different keys' streams from being shifted copies of each
  other (with one additive seed, stream(s) at i would equal stream(s') at i + s - s').
  """
  size = int(np.prod(shape))
  if size >= 2**32:
    raise ValueError(f"hash_bits indexes elements in 32 bits; {shape} has {size} elements")
  s = jax.random.bits(key, (2,), jnp.uint32)
  index, stride = jnp.zeros(shape, jnp.uint32), 1
  for axis in reversed(range(len(shape))):  # row-major flat index from per-axis iotas (no [size] reshape)
    index = index + jax.lax.broadcasted_iota(jnp.uint32, shape, axis) * jnp.uint32(stride)
    stride *= shape[axis]
  return _mix32(_mix32(index ^ s[0]) ^ s[1])


def einsum_fn(matmul: str):
  """The einsum used for attention: `mixed_einsum` for matmul='bf16_f32', plain `jnp.einsum` for 'float32'."""
  if matmul == "float32":
    return jnp.einsum
  if matmul == "bf16_f32":
    return mixed_einsum
  raise ValueError(f"matmul must be 'float32' or 'bf16_f32', got {matmul!r}")


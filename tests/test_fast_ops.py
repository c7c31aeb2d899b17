"""fast_ops: bf16-input/f32-accumulate products (forward and custom backward) and packed dropout masks,
checked against NumPy on the bf16-rounded inputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kd_jax.models import fast_ops


def _bf16_round(x):
  return np.asarray(jnp.asarray(x).astype(jnp.bfloat16).astype(jnp.float32), np.float64)


@pytest.mark.parametrize("spec,sa,sb", [("...i,io->...o", (3, 5, 16), (16, 7)),
                                        ("bqhd,bkhd->bhqk", (2, 5, 3, 4), (2, 6, 3, 4)),
                                        ("bhqk,bkhd->bqhd", (2, 3, 5, 6), (2, 6, 3, 4))])
def test_mixed_einsum_forward_and_grads_match_numpy(spec, sa, sb):
  rng = np.random.default_rng(0)
  a, b = rng.normal(size=sa).astype(np.float32), rng.normal(size=sb).astype(np.float32)
  g = rng.normal(size=np.einsum(spec, a, b).shape).astype(np.float32)
  out, vjp = jax.vjp(lambda x, y: fast_ops.mixed_einsum(spec, x, y), a, b)
  assert out.dtype == jnp.float32
  a16, b16, g16 = _bf16_round(a), _bf16_round(b), _bf16_round(g)
  np.testing.assert_allclose(out, np.einsum(spec, a16, b16), rtol=1e-5, atol=1e-5)
  ga, gb = vjp(jnp.asarray(g))
  # Reference gradients: the same products, in float64, of the bf16-rounded inputs and cotangent.
  ref_a = jax.grad(lambda x: jnp.vdot(jnp.einsum(spec, x, b16), g16))(a16.astype(np.float32))
  ref_b = jax.grad(lambda y: jnp.vdot(jnp.einsum(spec, a16, y), g16))(b16.astype(np.float32))
  np.testing.assert_allclose(ga, ref_a, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(gb, ref_b, rtol=1e-4, atol=1e-4)
  # And within bf16 rounding of the exact f32 gradient.
  exact_a, exact_b = jax.grad(lambda x, y: jnp.vdot(jnp.einsum(spec, x, y), g), argnums=(0, 1))(a, b)
  np.testing.assert_allclose(ga, exact_a, rtol=0.05, atol=0.05)
  np.testing.assert_allclose(gb, exact_b, rtol=0.05, atol=0.05)


def test_mixed_einsum_rejects_an_index_summed_on_its_own():
  with pytest.raises(ValueError, match="summed on its own"):
    jax.grad(lambda x: fast_ops.mixed_einsum("ij,k->k", x, jnp.ones(3)).sum())(jnp.ones((2, 2)))


def test_mixed_dot_general_only_takes_dense_products():
  x, w = jnp.ones((2, 3, 4)), jnp.ones((4, 5))
  np.testing.assert_allclose(fast_ops.mixed_dot_general(x, w, (((2,), (0,)), ((), ()))), np.full((2, 3, 5), 4.0))
  with pytest.raises(ValueError, match="Dense-style"):
    fast_ops.mixed_dot_general(x, jnp.ones((3, 5)), (((1,), (0,)), ((), ())))


class _Drop:
  """Calls fast_ops.dropout inside a Linen module, as the teacher does."""

  def __init__(self, rate, bits):
    import flax.linen as nn

    class M(nn.Module):
      @nn.compact
      def __call__(self, x):
        return fast_ops.dropout(self, x, rate, False, bits)
    self.m = M()

  def __call__(self, x, seed):
    return self.m.apply({}, x, rngs={"dropout": jax.random.key(seed)})


@pytest.mark.parametrize("bits,rate,expected", [(16, 0.1, 6554 / 65536), (8, 0.1, 26 / 256), (32, 0.1, 0.1),
                                                (16, 0.5, 0.5)])
def test_packed_dropout_rate_scale_and_determinism(bits, rate, expected):
  x = jnp.ones((1001, 257))  # odd sizes: the packed words do not divide the element count
  y = np.asarray(_Drop(rate, bits)(x, 0))
  dropped = (y == 0).mean()
  n = y.size
  assert abs(dropped - expected) < 4 * np.sqrt(expected * (1 - expected) / n)
  kept = y[y != 0]
  np.testing.assert_allclose(kept, 1.0 / (1.0 - expected), rtol=1e-6)
  np.testing.assert_array_equal(y, np.asarray(_Drop(rate, bits)(x, 0)))
  assert not np.array_equal(y, np.asarray(_Drop(rate, bits)(x, 1)))


def test_packed_dropout_positions_are_independent():
  # Two decisions share one 32-bit word: neighbouring positions must still be (nearly) uncorrelated.
  y = np.asarray(_Drop(0.5, 16)(jnp.ones((200_000,)), 3)) == 0
  corr = np.corrcoef(y[0::2].astype(float), y[1::2].astype(float))[0, 1]
  assert abs(corr) < 0.02


def test_dropout_rejects_unknown_bits():
  with pytest.raises(ValueError, match="bits"):
    _Drop(0.1, 4)(jnp.ones(4), 0)


class _HashDrop(_Drop):
  def __init__(self, rate):  # pylint: disable=super-init-not-called
    import flax.linen as nn

    class M(nn.Module):
      @nn.compact
      def __call__(self, x):
        return fast_ops.dropout(self, x, rate, False, rng="hash")
    self.m = M()


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
def test_hashed_dropout_rate_scale_and_determinism(rate):
  x = jnp.ones((1001, 257))
  y = np.asarray(_HashDrop(rate)(x, 0))
  expected = round(rate * 2**32) / 2**32
  assert abs((y == 0).mean() - expected) < 4 * np.sqrt(expected * (1 - expected) / y.size)
  np.testing.assert_allclose(y[y != 0], 1.0 / (1.0 - expected), rtol=1e-6)
  np.testing.assert_array_equal(y, np.asarray(_HashDrop(rate)(x, 0)))


def test_hashed_bits_are_uniform_and_independent_across_positions_and_keys():
  shape = (64, 256, 32)
  a = np.asarray(fast_ops.hash_bits(jax.random.key(0), shape), np.float64).ravel() / 2**32
  # Uniform: every 1/16 bucket holds its share (chi-square, 15 dof; 60 is far beyond p = 1e-6).
  counts = np.histogram(a, bins=16, range=(0, 1))[0]
  assert ((counts - a.size / 16) ** 2 / (a.size / 16)).sum() < 60
  # Neighbours along every axis, and the same positions under other keys (a layer's next key, a split key),
  # including the other key's stream shifted by a few positions: no correlation above sampling noise.
  noise = 5 / np.sqrt(a.size)
  for lag in (1, 32, 256 * 32):
    assert abs(np.corrcoef(a[:-lag], a[lag:])[0, 1]) < noise
  k0 = jax.random.key(0)
  for other in (jax.random.fold_in(k0, 1), jax.random.split(k0)[1], jax.random.key(1)):
    b = np.asarray(fast_ops.hash_bits(other, shape), np.float64).ravel() / 2**32
    for shift in (0, 1, 7):
      assert abs(np.corrcoef(a[shift:], b[:b.size - shift])[0, 1]) < noise
    assert (a == b).mean() < 1e-3


def test_hashed_dropout_mask_is_the_same_when_the_array_is_sharded():
  from jax.sharding import NamedSharding, PartitionSpec as P
  from kd_jax import sharding
  mesh = sharding.make_mesh(data=8)
  fn = jax.jit(lambda x, k: fast_ops.hash_bits(k, x.shape) ^ jnp.zeros(x.shape, jnp.uint32))
  x = jnp.ones((16, 6, 40))
  whole = np.asarray(fn(x, jax.random.key(4)))
  split = np.asarray(fn(jax.device_put(x, NamedSharding(mesh, P("data"))), jax.random.key(4)))
  np.testing.assert_array_equal(whole, split)


def test_dropout_rejects_an_unknown_rng():
  with pytest.raises(ValueError, match="rng"):
    fast_ops.dropout(None, jnp.ones(4), 0.1, False, rng="philox")

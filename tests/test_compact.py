"""Compact index storage (kd_jax/compact.py) against independent references: bfloat16 via ml_dtypes (JAX's own
bfloat16), int8 against the error bound of per-row symmetric quantisation."""

import ml_dtypes
import numpy as np
import pytest

from kd_jax import compact


def test_bf16_matches_ml_dtypes_rounding():
  rng = np.random.default_rng(0)
  x = np.concatenate([rng.normal(size=4000).astype(np.float32) * 10.0 ** rng.integers(-5, 5, 4000),
                      np.float32([0.0, -0.0, 1.0, 1.00390625, 1.01171875, 65504.0, 3.0e38])])  # ties to even
  bits = compact.to_bf16(x)
  np.testing.assert_array_equal(bits, x.astype(ml_dtypes.bfloat16).view(np.uint16))
  np.testing.assert_array_equal(compact.from_bf16(bits), x.astype(ml_dtypes.bfloat16).astype(np.float32))


def test_int8_round_trip_error_is_within_half_a_step():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(50, 16)).astype(np.float32) * rng.uniform(0.01, 100, (50, 1)).astype(np.float32)
  x[3] = 0.0
  q, scale = compact.to_int8(x)
  assert q.dtype == np.int8 and scale.shape == (50,) and np.abs(q).max() <= 127
  back = compact.from_int8(q, scale)
  assert (np.abs(back - x) <= scale[:, None] / 2 + 1e-7).all()
  np.testing.assert_array_equal(back[3], 0.0)
  assert (np.abs(q).max(1)[np.arange(50) != 3] == 127).all()  # each row uses its whole range


@pytest.mark.parametrize("dtype", compact.DTYPES)
def test_encode_decode(dtype):
  x = np.random.default_rng(2).normal(size=(7, 5)).astype(np.float32)
  stored, scales = compact.encode(x, dtype)
  assert stored.dtype == compact.STORED[dtype] and (scales is not None) == (dtype == "int8")
  np.testing.assert_allclose(compact.decode(stored, scales, dtype), x, atol=0.03 if dtype == "int8" else 0.01)


@pytest.mark.parametrize("dtype", compact.DTYPES)
def test_table_decodes_only_the_rows_asked_for(dtype, tmp_path):
  x = np.random.default_rng(3).normal(size=(40, 6)).astype(np.float32)
  stored, scales = compact.encode(x, dtype)
  np.save(tmp_path / "v.npy", stored)
  mapped = np.load(tmp_path / "v.npy", mmap_mode="r")
  table = compact.Table(mapped, scales, dtype)
  whole = compact.decode(stored, scales, dtype)
  assert table.shape == (40, 6) and len(table) == 40
  np.testing.assert_array_equal(table[5:17], whole[5:17])
  rows = np.array([[3, 3, 39], [0, 12, 7]])  # a pool's [Q, U] rows, as score_rows asks
  np.testing.assert_array_equal(table[rows], whole[rows])
  np.testing.assert_array_equal(np.asarray(table), whole)


def test_unknown_dtype_is_one_clear_error():
  with pytest.raises(ValueError, match="index.dtype='float16' is not one of float32, bfloat16, int8"):
    compact.encode(np.zeros((1, 2), np.float32), "float16")


@pytest.mark.parametrize("dtype", ["bfloat16", "int8"])
def test_search_decodes_a_compact_table_on_device_as_numpy_does(dtype):
  from kd_jax import search, sharding

  class Dot:  # the `built` interface search.top_k uses
    class module:  # noqa: N801
      score = "score"

      @staticmethod
      def apply(_, claims, docs, method):
        return claims @ docs.T
  x = np.random.default_rng(5).normal(size=(333, 8)).astype(np.float32)
  table = compact.Table(*compact.encode(x, dtype), dtype)
  claims = np.random.default_rng(6).normal(size=(5, 8)).astype(np.float32)
  mesh = sharding.make_mesh(1, 1)
  want_scores, want_rows = search.top_k(Dot, {}, claims, compact.decode(*compact.encode(x, dtype), dtype), 12, mesh)
  for chunk in (100, 1000):  # a padded last chunk, and one chunk
    scores, rows = search.top_k(Dot, {}, claims, table, 12, mesh, chunk_rows=chunk)
    np.testing.assert_array_equal(rows, want_rows)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-5)

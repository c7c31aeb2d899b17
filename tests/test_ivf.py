"""IVF approximate search: k-means against known clusters, grouping against a loop, and search with every list probed
equal to exact search (NumPy brute force)."""

import json

import numpy as np
import pytest

from kd_jax import compact, ivf, search, sharding


class Dot:  # the `built` interface: module.apply(..., method=module.score)
  class module:  # noqa: N801
    score = "score"

    @staticmethod
    def apply(_, claims, docs, method):
      return claims @ docs.T


def _clustered(n=600, d=8, centers=6, seed=0):
  rng = np.random.default_rng(seed)
  means = rng.normal(size=(centers, d)) * 5
  which = rng.integers(0, centers, n)
  return (means[which] + rng.normal(size=(n, d)) * 0.3).astype(np.float32), means, which


def test_kmeans_finds_separated_clusters():
  x, means, _ = _clustered()
  cent = ivf.kmeans(x, 6, iters=20, seed=1)
  # every true centre has a centroid next to it
  dist = np.linalg.norm(means[:, None] - cent[None], axis=-1).min(1)
  assert dist.max() < 0.5


def test_group_orders_rows_by_list():
  list_of = np.array([2, 0, 2, 1, 0, 2], np.int32)
  order, offsets = ivf.group(list_of, 4)
  assert order.tolist() == [1, 4, 3, 0, 2, 5] and offsets.tolist() == [0, 2, 3, 6, 6]  # list 3 is empty


@pytest.mark.parametrize("dtype", ["float32", "int8"])
def test_probing_every_list_is_exact_search(tmp_path, dtype):
  x, _, _ = _clustered(n=500, seed=2)
  table = x if dtype == "float32" else compact.Table(*compact.encode(x, dtype), dtype)
  root = ivf.build(tmp_path / "ivf", table, lists=8, sample=300, iters=5, chunk_rows=64)
  index = ivf.IVF(root)
  order = np.load(root / "order.npy")
  assert sorted(order.tolist()) == list(range(500))
  np.testing.assert_array_equal(np.load(root / "vecs.npy"), np.asarray(table)[order])  # grouped copy, row for row
  claims = np.random.default_rng(3).normal(size=(7, 8)).astype(np.float32)
  exact_scores, exact_rows = search.top_k(Dot, {}, claims, np.asarray(table), 20, sharding.make_mesh(1, 1))
  scores, rows = index.search(Dot, {}, claims, 20, probe=8)
  np.testing.assert_array_equal(rows, exact_rows)
  np.testing.assert_allclose(scores, exact_scores, rtol=1e-5, atol=1e-5)
  bias = np.random.default_rng(4).normal(size=500).astype(np.float32)  # the hub correction, as in search.top_k
  want_scores, want_rows = search.top_k(Dot, {}, claims, np.asarray(table), 20, sharding.make_mesh(1, 1),
                                        doc_bias=bias)
  scores, rows = index.search(Dot, {}, claims, 20, probe=8, doc_bias=bias)
  np.testing.assert_array_equal(rows, want_rows)
  np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-5)


def test_fewer_lists_probed_trade_recall_and_pad_with_minus_one(tmp_path):
  x, _, _ = _clustered(n=800, centers=16, seed=4)
  index = ivf.IVF(ivf.build(tmp_path / "ivf", x, lists=16, sample=800, iters=10))
  claims = x[:40] + 0.05  # claims near documents: their own cluster holds their best matches
  _, exact = search.top_k(Dot, {}, claims, x, 10, sharding.make_mesh(1, 1))
  recall = lambda rows: np.mean([len(set(a) & set(b)) / 10 for a, b in zip(rows, exact)])  # noqa: E731
  few, _ = index.search(Dot, {}, claims, 10, probe=2)[1], None
  assert recall(index.search(Dot, {}, claims, 10, probe=16)[1]) == 1.0
  assert 0.3 < recall(few) <= 1.0
  _, rows = index.search(Dot, {}, claims[:1], 700, probe=1)  # one list cannot hold 700 documents
  assert (rows[0] == -1).any() and (rows[0][rows[0] >= 0] < 800).all()


def test_build_is_reused_only_with_the_same_settings(tmp_path):
  x, _, _ = _clustered(n=200, seed=5)
  root = ivf.build(tmp_path / "ivf", x, lists=4, sample=200, iters=3)
  stamp = (root / "vecs.npy").stat().st_mtime_ns
  ivf.build(tmp_path / "ivf", x, lists=4, sample=200, iters=3)
  assert (root / "vecs.npy").stat().st_mtime_ns == stamp
  ivf.build(tmp_path / "ivf", x, lists=5, sample=200, iters=3)
  assert ivf.settings(root)["lists"] == 5 and json.loads((root / "meta.json").read_text())["build_minutes"] >= 0
  with pytest.raises(FileNotFoundError, match="No complete IVF"):
    ivf.IVF(tmp_path / "none")

"""The reproduction command end to end at smoke size: stages, table and plots."""

import json

from configs import reproduce as reproduce_config
from kd_jax import reproduce


def test_reproduce_smoke_writes_table_and_plots(data_dir, tmp_path):
  c = reproduce_config.get_config("smoke")
  c.data.dir = str(data_dir)
  c.data.cache_dir = str(tmp_path / "cache")
  c.reproduce.datasets = ("scifact",)
  c.reproduce.students = ("cnn",)
  c.reproduce.seeds = (0, 1)
  c.reproduce.sweep_temperatures = (2.0,)  # the main distilled runs: the sweep reuses them
  c.reproduce.sweep_alphas = (0.0, 0.5)
  c.reproduce.results_dir = str(tmp_path / "results")
  results = reproduce.run(c, str(tmp_path / "work"))
  rows = results["datasets"]["scifact"]["rows"]
  assert list(rows) == ["Teacher (MiniLM-L6 cross-encoder)", "CNN hard labels only", "CNN distilled"]
  assert all(len(rows[name]) == 2 for name in list(rows)[1:])  # one evaluation per seed
  assert rows["CNN hard labels only"][0]["rerank"] != rows["CNN distilled"][0]["rerank"]
  # Sweep points are the same runs as the table's seed-0 entries, not retrained.
  assert results["sweep"]["alpha"][0.0] == rows["CNN hard labels only"][0]
  text = (tmp_path / "results" / "RESULTS.md").read_text()
  assert "| CNN distilled | " in text and " ± " in text and "BM25" in text
  assert (tmp_path / "results" / "metrics.png").stat().st_size > 5000
  assert (tmp_path / "results" / "sweep.png").stat().st_size > 5000
  saved = json.loads((tmp_path / "results" / "results.json").read_text())
  assert saved["datasets"]["scifact"]["bm25"]["full_collection"]["ndcg@10"] > 0.6

"""The reproduction command end to end at smoke size: stages, table and plots."""

import json

import pytest

from configs import pseudo_table as pseudo_table_config
from configs import reproduce as reproduce_config
from experiments import pseudo_table, reproduce
from kd_jax.data import datasets


@pytest.mark.slow  # a minutes-long chain of stages
def test_reproduce_smoke_writes_table_and_plots(data_dir, tmp_path):
  c = reproduce_config.get_config("smoke")
  c.data.dir = str(data_dir)
  c.data.cache_dir = str(tmp_path / "cache")
  c.reproduce.datasets = ("scifact",)
  c.reproduce.students = ("cnn",)
  c.reproduce.seeds = (0, 1)
  c.reproduce.sweep_student = "cnn"
  c.reproduce.sweep_temperatures = (2.0,)  # the main distilled runs: the sweep reuses them
  c.reproduce.sweep_alphas = (0.0, 0.5)
  c.reproduce.results_dir = str(tmp_path / "results")
  results = reproduce.run(c, str(tmp_path / "work"))
  rows = results["datasets"]["scifact"]["rows"]
  assert list(rows) == ["Teacher (MiniLM-L6 cross-encoder)", "CNN hard labels only", "CNN distilled"]
  assert all(len(rows[name]) == 2 for name in list(rows)[1:])  # one evaluation per seed
  assert rows["CNN hard labels only"][0]["rerank"] != rows["CNN distilled"][0]["rerank"]
  # Sweep points are the same runs as the table's seed-0 entries, not retrained, with the dev figure that chooses.
  point = dict(results["sweep"]["alpha"][0.0])
  dev = point.pop("dev_ndcg@10")
  assert point == rows["CNN hard labels only"][0]
  logged = [json.loads(line) for line in (tmp_path / "work" / "scifact" / "cnn_T2_a0_s0" / "metrics.jsonl").open()]
  assert dev == max(r["ndcg@10"] for r in logged if r["split"] == "dev")
  text = (tmp_path / "results" / "RESULTS.md").read_text()
  assert "| CNN distilled | " in text and " ± " in text and "BM25" in text
  assert "| setting | dev rerank nDCG@10 | test rerank nDCG@10 |" in text
  assert "Distilled beats hard labels only" in text and " of 8" in text  # the paper's claim, metric by metric
  assert (tmp_path / "results" / "metrics.png").stat().st_size > 5000
  assert (tmp_path / "results" / "sweep.png").stat().st_size > 5000
  saved = json.loads((tmp_path / "results" / "results.json").read_text())
  assert saved["datasets"]["scifact"]["bm25"]["full_collection"]["ndcg@10"] > 0.6
  # Students record their hybrids with BM25, the weight chosen on dev.
  hybrid = rows["CNN distilled"][0]["hybrid"]
  assert set(hybrid) == {"linear", "zscore", "rrf", "gated", "coverage", "zcoverage"}
  assert all(0.0 <= h[s]["weight"] <= 1.0 and "ndcg@10" in h[s]["test"] for h in hybrid.values()
             for s in ("rerank", "full_collection"))

  # The pseudo-claim table on the same workdir: count 0 reuses the distilled students above.
  p = pseudo_table_config.get_config("smoke")
  p.data, p.reproduce, p.teacher, p.students = c.data, c.reproduce, c.teacher, c.students
  p.pseudo_table.datasets = ("scifact",)
  p.pseudo_table.counts = {"scifact": (0, 24)}
  table = pseudo_table.run(p, str(tmp_path / "work"))
  runs = table["datasets"]["scifact"]["runs"]["cnn"]
  assert sorted(runs) == [0, 24] and all(len(v) == 2 for v in runs.values())
  assert runs[0][0]["full_collection"] == {k: rows["CNN distilled"][0]["full_collection"][k]
                                           for k in runs[0][0]["full_collection"]}
  assert runs[24][0]["rerank"] != runs[0][0]["rerank"]  # other training data, other student
  meta = json.loads(next((tmp_path / "work" / "scifact").glob("teacher/pseudo/*/*/meta.json")).read_text())
  data = datasets.load(p.data)
  assert meta["count"] == 24 and meta["banned_claims"] == len(data.splits["dev"]) + len(data.splits["test"])
  # A finished stage is reused only under the settings it was trained with.
  p.students.cnn.train.steps += 1
  with pytest.raises(ValueError, match="other train settings"):
    reproduce.eval_stage(pseudo_table.student_config(p, "scifact", "cnn", 24, 0), tmp_path / "work" / "scifact")
  text = (tmp_path / "results" / "RESULTS.md").read_text()
  assert "| CNN distilled | " in text  # the reproduction's section survives
  assert "| CNN + BM25 (RRF) | 24 | " in text and "Beyond the labelled claims" in text
  assert (tmp_path / "results" / "pseudo_claims.png").stat().st_size > 5000


def test_a_one_dataset_reproduction_keeps_the_others_with_their_teacher(tmp_path):
  """Rerunning one dataset's table updates it and keeps the file's other datasets, each labelled with the teacher
  (and command) that made it."""
  config = reproduce_config.get_config()
  old_teacher = json.loads(config.teacher.to_json_best_effort())
  old_teacher["model"]["pair_len"], old_teacher["model"]["head"] = 96, "cls"
  old_config = json.loads(config.to_json_best_effort())
  old_config["teacher"] = old_teacher
  row = {"params": 1, "rerank": {m: 0.5 for m in reproduce.RERANK}, "bm25_rerank": {m: 0.4 for m in reproduce.RERANK},
         "rerank_claims_per_s": 1.0}
  dataset = lambda: {"rows": {"Teacher (MiniLM-L6 cross-encoder)": [row]},
                     "bm25": {"full_collection": {m: 0.6 for m in reproduce.FULL}, "claims_per_s": 9.0}}
  path = tmp_path / "results.json"
  path.write_text(json.dumps({"config": old_config, "command": "old command", "wall_minutes": 3,
                              "datasets": {"scifact": dataset(), "fever_titles": dataset()}}))
  new = {"config": config.to_dict(), "command": "new command", "wall_minutes": 1,
         "datasets": {"scifact": {**dataset(), "teacher": reproduce.teacher_config(config, "scifact").to_dict()}}}
  reproduce._keep_other_datasets(new, path)  # pylint: disable=protected-access
  assert list(new["datasets"]) == ["scifact", "fever_titles"]
  kept = new["datasets"]["fever_titles"]
  assert kept["command"] == "old command" and kept["teacher"]["model"]["pair_len"] == 48  # as that run applied it
  text = reproduce.render(new, config)
  assert "Teacher: MiniLM-L6 cross-encoder, 256-token pairs, seg_cosine head" in text
  assert "Teacher: MiniLM-L6 cross-encoder, 48-token pairs, cls head" in text and "`old command`" in text


def test_each_student_kind_has_its_own_distillation_setting():
  r = reproduce_config.get_config().reproduce
  r.per_student.lstm.update(alpha=0.25, temperature=4.0)
  assert reproduce.distill_setting(r, "lstm") == (0.25, 4.0)
  assert reproduce.distill_setting(r, "cnn") == (r.per_student.cnn.alpha, r.per_student.cnn.temperature)
  del r.per_student["cnn"]
  assert reproduce.distill_setting(r, "cnn") == (r.alpha, r.temperature)  # no own setting: the table-wide one
  text = reproduce._settings_text(r)  # pylint: disable=protected-access
  assert "BiLSTM alpha=0.25, T=4" in text and "chosen on dev" in text


def test_a_stage_saved_before_later_fields_is_reused_and_a_changed_one_is_not(tmp_path):
  # A student stage saved before negatives, mined negatives, document crops and dropout_rng existed was trained as
  # their defaults behave: reusable. Changing a setting that was saved is refused.
  cfg = reproduce_config.get_config().students.cnn
  cfg.name = "cnn_T2_a0.5_s0"
  saved = json.loads(cfg.to_json_best_effort())
  for key in ("negatives", "doc_crop", "scored"):
    del saved["distill"][key]
  del saved["model"]["dropout_rng"]
  stage = tmp_path / cfg.name
  stage.mkdir()
  (stage / "config.json").write_text(json.dumps(saved))
  reproduce._check_same_settings(cfg, stage)  # pylint: disable=protected-access
  saved["distill"]["negatives"] = {"in_batch": True, "random": 0}
  (stage / "config.json").write_text(json.dumps(saved))
  with pytest.raises(ValueError, match="other distill settings"):
    reproduce._check_same_settings(cfg, stage)  # pylint: disable=protected-access


def test_the_first_round_stage_is_a_location_but_the_scored_count_is_a_setting(tmp_path):
  # distill.scored.stage may name the same folder as a path or as a name under --workdir (the stored table records
  # which folder it came from); the number of scored negatives changes the experiment.
  cfg = reproduce_config.get_config().students.cnn
  cfg.name = "cnn_s0"
  cfg.distill.scored.update(stage="workdir/x/round1", count=8)
  saved = json.loads(cfg.to_json_best_effort())
  del saved["distill"]["scored"]["max_per_doc"]  # saved before the cap existed: trained uncapped
  stage = tmp_path / cfg.name
  stage.mkdir()
  (stage / "config.json").write_text(json.dumps(saved))
  cfg.distill.scored.stage = "round1"
  reproduce._check_same_settings(cfg, stage)  # pylint: disable=protected-access
  cfg.distill.scored.count = 4
  with pytest.raises(ValueError, match="other distill settings"):
    reproduce._check_same_settings(cfg, stage)  # pylint: disable=protected-access


def test_distillation_verdict_counts_the_claims_metrics_on_seed_means():
  def run(rr, full):
    return {"rerank": dict.fromkeys(reproduce.RERANK, rr), "full_collection": {"ndcg@10": full, "recall@100": full}}
  rows = {"CNN hard labels only": [run(0.5, 0.3), run(0.5, 0.3)],
          "CNN distilled": [run(0.6, 0.2), run(0.6, 0.3)],  # full-collection means 0.25 < 0.3: 6 of 8
          "BiLSTM hard labels only": [run(0.5, 0.3)], "BiLSTM distilled": [run(0.5, 0.4)],  # ties are not wins
          "Teacher (MiniLM-L6 cross-encoder)": [run(0.9, 0.0)]}
  cnn, lstm = reproduce.distillation_verdict(rows)
  assert cnn == "CNN 6 of 8 (not full ndcg@10 0.250 vs 0.300, full recall@100 0.250 vs 0.300)"
  assert lstm.startswith("BiLSTM 2 of 8 (not mrr@10 0.500 vs 0.500,")

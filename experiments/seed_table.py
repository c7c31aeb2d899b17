"""The main command's student over seeds, with and without the levers chosen after it: what `run.py
--config=configs/cnn_student.py` gives, as means ± std, against the main command's own teacher. Writes
results/main_recipe.json and results/main_recipe.md (a section of RESULTS.md).

  KD_JAX_DATA_DIR=../shared/data python -m experiments.seed_table --workdir=workdir/main
  KD_JAX_DATA_DIR=../shared/data python -m experiments.seed_table --workdir=workdir/main \
      --config=configs/lstm_student.py     # the BiLSTM's rows (LSTM_ROWS), same teacher

Stages are <workdir>/<config name>[+levers]_s<seed>; finished ones are reused, missing ones trained (the teacher
too, when <workdir>/teacher is missing). The ablation (experiments/ablation.py) measures levers one at a time on the
reproduction's teacher and recipe; this table measures today's defaults, which differ from that recipe (teacher,
steps, dropout masks), so its rows are the ones the issue's targets are read against.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path

from absl import app, flags
from ml_collections import config_flags

from experiments import ablation, reproduce, results_md
from kd_jax import atomic, machine

# (row name, stage-name suffix, overrides). Settings are spelled out, not taken from the config's defaults, so a row
# means the same thing after the defaults change.
DENSE = {"model.lexical_dim": 0, "data.vocab_size": 20000, "data.oov_buckets": 0, "model.embed_oov": True}
LEX = dict(ablation.LEVERS["lex4k"][1])
OOVLEX = dict(ablation.LEVERS["oovlex"][1])
STEPS600 = {"train.steps": 600}  # the main command's length when these rows were measured
# Teacher-scored hard negatives (kd_jax/scored_negatives.py): the main command's seed-0 student is the first round
# for every seed. Trained on both devices of the split CPU, as the main command's stages it is compared with were.
SCORED = {"distill.scored.stage": "cnn_student+lex4k+oovlex+steps1200_s0", "distill.scored.count": 8,
          "mesh.split_cpu_data": -1}
ROWS = [("CNN with dense vectors only (the main command before the lexical channel)", "", {**DENSE, **STEPS600}),
        ("CNN + lexical channel", "+lex4k", {**LEX, "data.oov_buckets": 0, "model.embed_oov": True, **STEPS600}),
        ("CNN + lexical channel + rare words matched (the main command until 1200 steps)", "+lex4k+oovlex",
         {**LEX, **OOVLEX, **STEPS600}),
        ("CNN + lexical channel + rare words + documents' dense parts at unit length", "+lex4k+oovlex+docnorm",
         {**LEX, **OOVLEX, **ablation.LEVERS["docnorm"][1], **STEPS600}),
        ("CNN + lexical channel + rare words + 1200 steps (the main command)", "+lex4k+oovlex+steps1200",
         {**LEX, **OOVLEX, "train.steps": 1200}),
        ("CNN + lexical channel + rare words + documents cut at 256 words", "+lex4k+oovlex+doc256",
         {**LEX, **OOVLEX, **ablation.LEVERS["doc256"][1], **STEPS600}),
        ("CNN + lexical channel + rare words + cosine dense parts", "+lex4k+oovlex+cos",
         {**LEX, **OOVLEX, **ablation.LEVERS["cos"][1], **STEPS600}),
        ("CNN + lexical channel + rare words + 1200 steps + teacher-scored negatives (8 a claim)",
         "+lex4k+oovlex+steps1200+scored8", {**LEX, **OOVLEX, "train.steps": 1200, **SCORED}),
        ("CNN + lexical channel + rare words + 1200 steps + teacher-scored negatives (8 a claim; a document in at most "
         "4 claims' lists)", "+lex4k+oovlex+steps1200+scored8cap4",
         {**LEX, **OOVLEX, "train.steps": 1200, **SCORED, "distill.scored.max_per_doc": 4})]
# Rows of `--config=configs/lstm_student.py`: a table's rows are one student kind's, since a row's settings are
# applied to the config's model.
LSTM_ROWS = [("BiLSTM + lexical channel + rare words matched (configs/lstm_student.py)", "+lex4k+oovlex",
              {**LEX, **OOVLEX, **STEPS600})]


def rows_for(base) -> list[tuple[str, str, dict]]:
  """The rows a config's table has: the BiLSTM's for a BiLSTM config, the CNN's otherwise."""
  return LSTM_ROWS if base.model.kind == "lstm" else ROWS


def unknown_rows(base, only: list[str]) -> str:
  """'' when every name in `only` is a row of the config's table; else the one-line error that says which is not."""
  unknown = sorted(set(only) - {name for name, _, _ in rows_for(base)})
  return f"--rows names no row of this config's table: {', '.join(unknown)}" if unknown else ""


def stage_config(base, suffix: str, overrides: dict, seed: int):
  cfg = base.copy_and_resolve_references()
  cfg.seed = seed
  ablation.apply_overrides(cfg, overrides)
  cfg.name = f"{cfg.name}{suffix}_s{seed}"
  return cfg


def trained_on(stage: Path) -> str:
  """The CPU (or accelerator) a stage trained on, as it recorded it (kd_jax/machine.py); for a stage trained before
  stages recorded it, this run's CPU, which trained it when this run did."""
  done = stage / "complete.json"
  recorded = json.loads(done.read_text()).get("machine") if done.is_file() else None
  return machine.kind(recorded) if recorded else machine.cpu_name()


def run(base, workdir: Path, seeds: list[int], only: list[str], transfer_claims: int) -> dict:
  dataset = base.data.name
  out = {"command": "python -m experiments.seed_table " + shlex.join(sys.argv[1:]), "dataset": dataset, "rows": {}}
  started = time.time()
  error = unknown_rows(base, only)
  if error:
    raise ValueError(error)
  for name, suffix, overrides in rows_for(base):
    if only and name not in only:
      continue
    runs = []
    for seed in seeds:
      cfg = stage_config(base, suffix, overrides, seed)
      result = dict(reproduce.eval_stage(cfg, workdir), train_minutes=ablation.train_minutes(workdir / cfg.name),
                    dev_best={m: reproduce.best_dev(workdir / cfg.name, m) for m in ("ndcg@10", "full_ndcg@10")},
                    cpu=trained_on(workdir / cfg.name))
      if transfer_claims and dataset in ablation.OTHER:
        result["transfer"] = ablation.transfer(cfg, workdir, ablation.OTHER[dataset], transfer_claims)
      runs.append(result)
    out["rows"][name] = {"kind": base.model.kind, "levers": [f"{k}={v}" for k, v in overrides.items()], "runs": runs}
  out["wall_minutes"] = round((time.time() - started) / 60, 1)
  return out


def render(results: dict) -> str:
  lines = ["## The main command's student over seeds", "",
           "`python run.py --config=configs/cnn_student.py` as it stands (its own teacher, steps and dropout masks; "
           "not the reproduction's recipe the ablation above uses), with the settings named, over seeds; the BiLSTM's "
           "rows are `configs/lstm_student.py`'s, against the same teacher. Columns as in "
           "the ablation; the fusion weights and the hub correction's beta are chosen on dev. Figures without ± are "
           "seed 0 alone: probes that dev did not choose, so not run on more seeds.", ""]
  # Rows measured since runs record their CPU say which; the earlier sessions' CPU was not recorded.
  named = {f"{name} [{row['runs'][0]['cpu']}]" if row["runs"] and "cpu" in row["runs"][0] else name: row
           for name, row in results["rows"].items()}
  lines[-2] += (" Rows name the CPU they were trained and evaluated on where it was recorded (the earlier sessions' "
                "benchmarks ran on an Intel Xeon): XLA's arithmetic differs between CPUs, so one seed trains to other "
                "figures on each.")
  return "\n".join(lines + ablation.dataset_table(results["dataset"], {**results, "rows": named})) + "\n"


def main(argv):
  del argv
  f = flags.FLAGS
  out_dir = Path(f.results_dir)
  error = unknown_rows(f.config, f.rows)
  if error:  # one line, before anything trains
    raise app.UsageError(error)
  results = run(f.config, Path(f.workdir), [int(s) for s in f.seeds], f.rows, f.transfer_claims)
  stored = out_dir / "main_recipe.json"
  if f.rows and stored.is_file():
    results = ablation.merge_rows(json.loads(stored.read_text()), results)
  out_dir.mkdir(parents=True, exist_ok=True)
  atomic.write_text(stored, json.dumps(results, indent=2, default=float))
  atomic.write_text(out_dir / "main_recipe.md", render(results))
  results_md.write(out_dir)
  print(render(results))


def _define_flags() -> None:
  """Defined when run as a program only: experiments/ablation.py defines flags of the same names on import."""
  config_flags.DEFINE_config_file("config", "configs/cnn_student.py", "The student config (main command).")
  flags.DEFINE_string("workdir", "workdir/main", "The main command's workdir (its teacher is reused).")
  flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds of each row.")
  flags.DEFINE_list("rows", [], "Only these row names (default: every row).")
  flags.DEFINE_string("results_dir", "results", "Where main_recipe.json/.md and RESULTS.md are written.")
  flags.DEFINE_integer("transfer_claims", 1500, "Test claims of the other collection for the hub and transfer "
                       "check (0: skip).")


if __name__ == "__main__":
  _define_flags()
  app.run(main)

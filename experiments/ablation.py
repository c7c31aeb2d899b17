"""What makes a student worth searching with on its own: one row per lever (each alone, then all together), over
seeds, on the whole collection. Writes results/ablation.json and results/ablation.md (part of RESULTS.md).

  KD_JAX_DATA_DIR=../shared/data python -m experiments.ablation --workdir=workdir/reproduce \
      --config.reproduce.teacher_dirs.scifact=workdir/teacher

Stages live beside the reproduction's (same flags, same teacher), so the 'reproduction' rows reuse its finished
students and an interrupted ablation continues. Every lever is a config override; settings are chosen by dev
figures (the checkpoint kept is the best by dev), test figures are only reported.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
from absl import app, flags
from ml_collections import config_flags

from configs import pseudo_table as pseudo_table_config
from experiments import pseudo_table, reproduce, results_md
from kd_jax import atomic, collection, collection_eval, logbook
from kd_jax.modes import evaluate

# Each lever: a short name (part of the stage name) and its config overrides.
LEVERS = {
    "fullsel": ("checkpoint chosen by dev full-collection nDCG@10",
                {"train.eval_full_collection": True, "train.best_metric": "full_ndcg@10"}),
    "inbatch": ("in-batch negatives", {"distill.negatives.in_batch": True}),
    "rand8": ("8 random collection negatives per claim", {"distill.negatives.random": 8}),
    "cos": ("cosine scoring (learned scale)", {"model.scoring": "cosine"}),
    # Only the document's dense part normalised: its norm (its length, its known words) cannot make it a hub, the
    # claim's norm still weighs the dense part against the lexical channel. The scale starts near a trained dot
    # student's median document norm.
    "docnorm": ("documents' dense parts scaled to unit length (learned scale)",
                {"model.scoring": "doc_cosine", "model.cosine_scale_init": 2.0}),
    "oov2k": ("2,048 hashed rows for out-of-vocabulary words (vocabulary 18k: same budget)",
              {"data.oov_buckets": 2048, "data.vocab_size": 18000}),
    "doc256": ("documents cut at 256 words instead of 128", {"data.doc_word_len": 256}),
    "mined8": ("8 hard negatives per claim mined from the student's own index, re-mined every 50 steps (ANCE)",
               {"distill.negatives.mined.count": 8, "distill.negatives.mined.refresh_every": 50}),
    "crop50": ("half the training documents cut to a random window (8 words to whole) at every step",
               {"distill.doc_crop.prob": 0.5, "distill.doc_crop.min_words": 8}),
    # A learned exact-match score inside the dot product (kd_jax/models/lexical.py). The vocabulary shrinks to 18,432
    # words so the CNN stays within 1/20 of the teacher's parameters (2,048 hashed out-of-vocabulary rows instead of
    # 3,616 words scored 0.755 against 0.794 on dev with 20k words, main command, seed 0).
    "lex4k": ("4,096 hashed buckets of learned term weights appended to the vectors (vocabulary 18,432: the CNN is "
              "1/20 of the teacher)", {"model.lexical_dim": 4096, "data.vocab_size": 18432}),
    # Rare words matched by the lexical channel alone: out-of-vocabulary words hashed to 2^20 ids that have no
    # embedding rows (they read <unk>), so they cost no parameters and rarely share an id.
    "oovlex": ("out-of-vocabulary words hashed to 2^20 ids without embedding rows: only the lexical channel tells "
               "them apart", {"data.oov_buckets": 1 << 20, "model.embed_oov": False}),
    # The pseudo-claim table's 2,500 teacher-labelled pseudo-claims (configs/pseudo_table.py settings, so its stored
    # set is reused): a function of the dataset, whose shortest useful sentence differs.
    "pseudo2.5k": ("2,500 teacher-labelled pseudo-claims mixed in at half the examples (KL term only)",
                   lambda dataset: {f"distill.pseudo.{k}": v for k, v in pseudo_table.pseudo_settings(
                       pseudo_table_config.get_config().pseudo_table, dataset, 2500).items()}),
}
ALL = ("fullsel", "inbatch", "rand8", "cos", "oov2k", "doc256")
# The CNN's levers chosen on SciFact dev (the single lever with the best dev full-collection nDCG@10; combining more
# lowered it): what the BiLSTM gets too.
CHOSEN = ("fullsel", "inbatch")
# (row name, student kind, levers). The reproduction rows are the distilled students of results.json.
ROWS = [("CNN reproduction", "cnn", ()), ("CNN + fullsel", "cnn", ("fullsel",))] + [
    (f"CNN + fullsel + {name}", "cnn", ("fullsel", name)) for name in ALL[1:]] + [
    ("CNN all levers", "cnn", ALL),
    # Mined negatives came after the table above was measured: alone, and on top of the chosen levers.
    ("CNN + fullsel + mined8", "cnn", ("fullsel", "mined8")),
    ("CNN + fullsel + inbatch + mined8", "cnn", CHOSEN + ("mined8",)),
    ("BiLSTM reproduction", "lstm", ()),
    ("BiLSTM + fullsel + inbatch", "lstm", CHOSEN),
    ("BiLSTM + fullsel + inbatch + mined8", "lstm", CHOSEN + ("mined8",)),
    # Pseudo-claims (results/pseudo.md measured them with the paper's recipe only) on top of the chosen levers.
    ("CNN + fullsel + inbatch + pseudo2.5k", "cnn", CHOSEN + ("pseudo2.5k",)),
    ("CNN + fullsel + inbatch + mined8 + pseudo2.5k", "cnn", CHOSEN + ("mined8", "pseudo2.5k")),
    # Against length-dependent scores (hubs on collections of short documents): length-varied training documents,
    # and cosine scoring, on top of the chosen levers.
    ("CNN + fullsel + inbatch + mined8 + crop50", "cnn", CHOSEN + ("mined8", "crop50")),
    ("CNN + fullsel + inbatch + mined8 + cos", "cnn", CHOSEN + ("mined8", "cos")),
    # The lexical channel on top of the chosen levers, for both students.
    ("CNN + fullsel + inbatch + mined8 + lex4k", "cnn", CHOSEN + ("mined8", "lex4k")),
    ("BiLSTM + fullsel + inbatch + mined8 + lex4k", "lstm", CHOSEN + ("mined8", "lex4k")),
    ("CNN + fullsel + inbatch + mined8 + lex4k + oovlex", "cnn", CHOSEN + ("mined8", "lex4k", "oovlex")),
    # Documents' dense parts at unit length, against the hubs that remain with the lexical channel.
    ("CNN + fullsel + inbatch + mined8 + lex4k + oovlex + docnorm", "cnn",
     CHOSEN + ("mined8", "lex4k", "oovlex", "docnorm"))]
# Also checked on the other collection: the chosen levers and all of them.
TRANSFER_ROWS = ("CNN + fullsel + inbatch", "CNN all levers", "BiLSTM + fullsel + inbatch",
                 "CNN + fullsel + inbatch + mined8", "CNN + fullsel + inbatch + mined8 + crop50",
                 "CNN + fullsel + inbatch + mined8 + cos", "CNN + fullsel + inbatch + mined8 + lex4k",
                 "BiLSTM + fullsel + inbatch + mined8 + lex4k", "CNN + fullsel + inbatch + mined8 + lex4k + oovlex",
                 "CNN + fullsel + inbatch + mined8 + lex4k + oovlex + docnorm")
OTHER = {"scifact": "fever_titles", "fever_titles": "scifact"}


def levers_for(config, dataset: str, levers) -> tuple[str, ...]:
  """The row's levers on this dataset: longer documents mean nothing where documents are page titles (the
  reproduction's short_docs, cut at a few words), and would only pad them."""
  if dataset in config.reproduce.short_docs:
    return tuple(lever for lever in levers if lever != "doc256")
  return tuple(levers)


def apply_overrides(cfg, overrides: dict) -> None:
  """Sets each dotted key of `overrides` (e.g. 'model.lexical_dim') in the ConfigDict `cfg`."""
  for key, value in overrides.items():
    node = cfg
    *path, last = key.split(".")
    for part in path:
      node = node[part]
    node[last] = value


def merge_rows(before: dict, results: dict) -> dict:
  """A run of some rows keeps the stored table's other rows, and the table names every command that made them."""
  results["rows"] = {**before["rows"], **results["rows"]}
  if results["command"] not in before["command"]:
    results["command"] = f"{before['command']}`, then `{results['command']}"
  return results


def stage_config(config, dataset: str, kind: str, levers, seed: int):
  alpha, temperature = reproduce.distill_setting(config.reproduce, kind)
  cfg = reproduce.student_config(config, dataset, kind, alpha, temperature, seed)
  for lever in levers:
    overrides = LEVERS[lever][1]
    apply_overrides(cfg, overrides(dataset) if callable(overrides) else overrides)
  if levers:
    cfg.name += "+" + "+".join(levers)
  return cfg


def train_minutes(stage: Path) -> float:
  """Wall minutes from the first to the last training record (dev evaluations included)."""
  times = [r["time"] for r in logbook.read(stage) if r.get("split") == "train"]
  return (max(times) - min(times)) / 60 if len(times) > 1 else float("nan")


def transfer(cfg, workdir: Path, target: str, max_claims: int) -> dict:
  """The stage on the other dataset's collection (zero-shot; reused when stored)."""
  cfg = cfg.copy_and_resolve_references()
  cfg.mode = "evaluate"
  cfg.collection.update(dataset=target, name=target, max_claims=max_claims)
  path = workdir / cfg.name / f"eval_{target}.json"
  stored = json.loads(path.read_text()) if path.is_file() else {}
  if collection_eval.zero_shot_is_current(stored, workdir / cfg.name, cfg):
    return stored
  return evaluate.evaluate_collection(cfg, str(workdir), collection.from_config(cfg))


def run(config, workdir: Path, dataset: str, only: list[str], transfer_claims: int) -> dict:
  """One dataset's rows: {"command", "rows": {name: {"kind", "levers", "runs": [one eval per seed]}}}."""
  out = {"command": "python -m experiments.ablation " + " ".join(shlex.quote(a) for a in sys.argv[1:]), "rows": {}}
  started = time.time()
  wd = workdir / dataset
  seen = set()
  for name, kind, levers in ROWS:
    levers = levers_for(config, dataset, levers)
    if (only and name not in only) or (kind, levers) in seen:
      continue  # not asked for, or the same stages as an earlier row (a lever that means nothing here)
    seen.add((kind, levers))
    runs = []
    for seed in config.reproduce.seeds:
      cfg = stage_config(config, dataset, kind, levers, seed)
      result = dict(reproduce.eval_stage(cfg, wd), train_minutes=train_minutes(wd / cfg.name),
                    dev_best={m: reproduce.best_dev(wd / cfg.name, m) for m in ("ndcg@10", "full_ndcg@10")})
      if transfer_claims and name in TRANSFER_ROWS:
        result["transfer"] = transfer(cfg, wd, OTHER[dataset], transfer_claims)
      runs.append(result)
    out["rows"][name] = {"kind": kind, "levers": list(levers), "runs": runs}
  out["wall_minutes"] = round((time.time() - started) / 60, 1)
  return out


def _ms(values) -> str:
  return reproduce.mean_std([float(v) for v in values])


def _pct(values) -> str:
  values = [100 * float(v) for v in values]
  return f"{np.mean(values):.1f} ± {np.std(values):.1f}%" if len(values) > 1 else f"{values[0]:.1f}%"


def render(whole: dict) -> str:
  """The ablation section of RESULTS.md: one table per dataset, then the combined rows on the other collection."""
  lines = ["## Ablation: what makes a student search the whole collection", "",
           "Distilled students (the reproduction's alpha/T), means ± std over seeds, test split, whole collection "
           "unless marked rerank. Each lever row adds one lever to checkpoint choice by dev full-collection nDCG@10 "
           "(`fullsel`); 'all levers' combines every lever that applies (longer documents do not apply to page "
           "titles). Hub: the largest share of test claims with one document in the student's top 10. "
           "Hub-corrected: the same student searching with each document less beta x its mean top-10 score over a "
           "bank of 2,000 of the collection's own documents read as claims (kd_jax/hubness.py; beta chosen on dev, "
           "and on the training collection's dev for the other collection). Calibrated: searched as mode=search does by "
           "default, with the training collection's common words kept out of lexical matches and documents' dense "
           "norms pulled toward the collection's median (kd_jax/calibration.py; results/calibration.md), shown where "
           "measured. + BM25 coverage: linear fusion with the "
           "student's share scaled by the share of claim and document words it knows (kd_jax/fusion.py). Train "
           "minutes are wall time on 2 CPU cores shared with other jobs: compare them within a table only.", "",
           "Levers: " + "; ".join(f"`{k}` {v}" for k, v in whole["levers"].items()) + ".", ""]
  for dataset, results in whole["datasets"].items():
    lines += dataset_table(dataset, results)
  return "\n".join(lines) + "\n"


def dataset_table(dataset: str, results: dict) -> list[str]:
  rows = results["rows"]
  first = next(iter(rows.values()))["runs"]
  bm25 = first[0]["bm25_full_collection"]
  lines = [f"### {dataset}", "", f"Produced by `{results['command']}`; {len(first)} seeds. BM25 over the whole "
           f"collection: nDCG@10 {bm25['ndcg@10']:.3f}, R@100 {bm25['recall@100']:.3f}.", "",
           "| row | levers | params | full nDCG@10 | full R@100 | hub-corrected nDCG@10 | calibrated nDCG@10 | "
           "rerank nDCG@10 | + BM25 gated | + BM25 linear | + BM25 z-score | + BM25 linear, calibrated | "
           "+ BM25 coverage | + BM25 z-coverage | hub | hub, corrected | hub, calibrated | dev full nDCG@10 | "
           "train min |", "|---|---|" + "---:|" * 17]
  for name, row in rows.items():
    runs = row["runs"]
    hyb = {m: _ms([r["hybrid"][m]["full_collection"]["test"]["ndcg@10"] for r in runs])
           if all(m in r.get("hybrid", {}) for r in runs) else "—"
           for m in ("gated", "linear", "zscore", "coverage", "zcoverage")}
    corrected = all("hub_norm" in r for r in runs)
    cal = all("hybrid" in r.get("calibrated", {}) for r in runs)
    lines.append(
        f"| {name} | {' '.join(row['levers']) or '—'} | {runs[0]['params']:,} | "
        f"{_ms([r['full_collection']['ndcg@10'] for r in runs])} | "
        f"{_ms([r['full_collection']['recall@100'] for r in runs])} | "
        f"{_ms([r['hub_norm']['full_collection']['ndcg@10'] for r in runs]) if corrected else '—'} | "
        f"{_ms([r['calibrated']['full_collection']['ndcg@10'] for r in runs]) if cal else '—'} | "
        f"{_ms([r['rerank']['ndcg@10'] for r in runs])} | {hyb['gated']} | {hyb['linear']} | {hyb['zscore']} | "
        f"{_ms([r['calibrated']['hybrid']['linear']['full_collection']['test']['ndcg@10'] for r in runs]) if cal else '—'} | "
        f"{hyb['coverage']} | {hyb['zcoverage']} | {_pct([r['hub']['max_share'] for r in runs])} | "
        f"{_pct([r['hub_norm']['hub']['max_share'] for r in runs]) if corrected else '—'} | "
        f"{_pct([r['calibrated']['hub']['max_share'] for r in runs]) if cal else '—'} | "
        f"{_ms([r['dev_best']['full_ndcg@10'] for r in runs])} | {_ms([r['train_minutes'] for r in runs])} |")
  transfers = {n: r for n, r in rows.items() if all("transfer" in x for x in r["runs"])}
  if transfers:
    target = next(iter(transfers.values()))["runs"][0]["transfer"]
    lines += ["", f"Trained on {dataset}, zero-shot on {target['collection']} (first {target['claims']} test claims; "
              f"BM25 alone {target['bm25']['full_collection']['ndcg@10']:.3f}; fusion weights chosen on {dataset} "
              "dev; calibrated: documents' dense norms and the training collection's common words, "
              "kd_jax/calibration.py):", "", "| row | alone | alone, hub-corrected | alone, calibrated | "
              "+ BM25 gated | + BM25 linear | + BM25 z-score | + BM25 linear, calibrated | + BM25 coverage | "
              "+ BM25 coverage, calibrated | + BM25 z-coverage, calibrated | hub | hub, corrected | hub, calibrated |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, row in transfers.items():
      t = [r["transfer"] for r in row["runs"]]
      fused = {m: _ms([x["hybrid"][m]["full_collection"]["ndcg@10"] for x in t])
               if all(m in x["hybrid"] for x in t) else "—" for m in ("gated", "linear", "zscore", "coverage")}
      corrected = all("hub_norm" in x for x in t)
      normed = all("calibrated" in x for x in t)
      cal_fused = {m: _ms([x["calibrated"]["hybrid"][m]["full_collection"]["ndcg@10"] for x in t])
                   if normed and all(m in x["calibrated"].get("hybrid", {}) for x in t) else "—"
                   for m in ("linear", "coverage", "zcoverage")}
      lines.append(f"| {name} | {_ms([x['student']['full_collection']['ndcg@10'] for x in t])} | "
                   f"{_ms([x['hub_norm']['full_collection']['ndcg@10'] for x in t]) if corrected else '—'} | "
                   f"{_ms([x['calibrated']['full_collection']['ndcg@10'] for x in t]) if normed else '—'} | "
                   f"{fused['gated']} | {fused['linear']} | {fused['zscore']} | {cal_fused['linear']} | "
                   f"{fused['coverage']} | {cal_fused['coverage']} | {cal_fused['zcoverage']} | "
                   f"{_pct([x['hub']['max_share'] for x in t])} | "
                   f"{_pct([x['hub_norm']['hub']['max_share'] for x in t]) if corrected else '—'} | "
                   f"{_pct([x['calibrated']['hub']['max_share'] for x in t]) if normed else '—'} |")
  return lines + [""]


def main(argv):
  del argv
  f = flags.FLAGS
  config, dataset = f.config, f.dataset
  results = run(config, Path(f.workdir), dataset, f.rows, f.transfer_claims)
  out = Path(config.reproduce.results_dir)
  out.mkdir(parents=True, exist_ok=True)
  stored = out / "ablation.json"
  # One file for every dataset: a run updates its dataset (its rows, if --rows names some) and keeps the others.
  old = json.loads(stored.read_text()) if stored.is_file() else {}
  whole = {"levers": {k: v[0] for k, v in LEVERS.items()}, "datasets": old.get("datasets", {})}
  if f.rows and dataset in whole["datasets"]:
    results = merge_rows(whole["datasets"][dataset], results)
  whole["datasets"][dataset] = results
  atomic.write_text(stored, json.dumps(whole, indent=2, default=float))
  atomic.write_text(out / "ablation.md", render(whole))
  results_md.write(out)
  print(render(whole))


def _define_flags() -> None:
  """Defined when run as a program only, so other experiments can import this module's rows and tables."""
  config_flags.DEFINE_config_file("config", "configs/reproduce.py", "The reproduction config.")
  flags.DEFINE_string("workdir", "workdir/reproduce", "The reproduction's workdir.")
  flags.DEFINE_string("dataset", "scifact", "Dataset the students are trained and tested on.")
  flags.DEFINE_list("rows", [], "Only these row names (default: every row).")
  flags.DEFINE_integer("transfer_claims", 1500, "Test claims of the other collection for the hub and transfer check "
                       "of the combined rows (0: skip).")


if __name__ == "__main__":
  _define_flags()
  app.run(main)

"""The paper's table, measured: teacher, and each student with and without distillation, over seeds.

`python run.py --config=configs/reproduce.py --workdir=workdir/reproduce` runs every missing stage (finished
ones are reused, so an interrupted reproduction continues) and writes `results/results.json`, its section
`results/reproduction.md` of RESULTS.md, and the plots.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shlex
import sys
import time
from pathlib import Path

import ml_collections
import numpy as np

from experiments import results_md
from kd_jax import atomic, calibration, logbook, multihost
from kd_jax.modes import distill, evaluate
from kd_jax.data import candidates, datasets
from kd_jax.models import registry
from kd_jax.search import full_collection_metrics

RERANK = ("mrr@10", "map", "ndcg@10", "recall@1", "recall@5", "recall@10")
FULL = ("ndcg@10", "recall@10", "recall@100")
# The metrics the paper's claim is checked on: distilled beats hard labels on every one.
CLAIM_METRICS = tuple(("rerank", m) for m in RERANK) + (("full_collection", "ndcg@10"),
                                                        ("full_collection", "recall@100"))


def _copy(c) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(c.to_dict())


def _data(config, dataset: str):
  d = _copy(config.data)
  d.name = dataset
  if dataset in config.reproduce.short_docs:
    d.doc_wp_len = d.doc_word_len = config.reproduce.short_doc_len
  d.max_claims = config.reproduce.max_claims.get(dataset, 0) or d.max_claims
  return d


def teacher_config(config, dataset: str):
  t = _copy(config.teacher)
  t.data = _data(config, dataset)
  t.mesh = _copy(config.mesh)
  if dataset in config.reproduce.short_docs:
    t.model.pair_len = config.reproduce.short_pair_len
  return t


def student_config(config, dataset: str, kind: str, alpha: float, temperature: float, seed: int):
  c = _copy(config.students[kind])
  c.data = _data(config, dataset)
  c.mesh = _copy(config.mesh)
  c.seed = seed
  c.distill.alpha = alpha
  c.distill.temperature = temperature
  c.name = f"{kind}_T{temperature:g}_a{alpha:g}_s{seed}"
  c.teacher = teacher_config(config, dataset)
  c.distill.teacher_dir = config.reproduce.teacher_dirs.get(dataset, "")
  return c


def distill_setting(r, kind: str) -> tuple[float, float]:
  """(alpha, temperature) of a student kind's distilled rows: chosen on dev per kind (`reproduce.per_student`),
  else the table-wide `reproduce.alpha` / `reproduce.temperature`."""
  own = (r.get("per_student") or {}).get(kind) or {}
  return float(own.get("alpha", r.alpha)), float(own.get("temperature", r.temperature))


def sweep_center(r) -> tuple[float, float]:
  """(alpha, temperature) the sweep varies one at a time: `reproduce.sweep_center`, else the swept student's own
  setting (a sweep that chose a setting keeps its points when the choice is written into the config)."""
  center = r.get("sweep_center") or {}
  own = distill_setting(r, r.sweep_student)
  return float(center.get("alpha", own[0])), float(center.get("temperature", own[1]))


def best_dev(stage: Path, metric: str = "ndcg@10") -> float:
  """The best dev figure a stage reached while training (the one its best checkpoint was kept for): what a
  sweep chooses by, so test figures are only reported."""
  return max((r[metric] for r in logbook.read(stage) if r.get("split") == "dev" and metric in r),
             default=float("nan"))


def eval_stage(cfg, workdir: Path) -> dict:
  """The stage's test evaluation, running whatever is missing (training included) first."""
  path = workdir / cfg.name / "eval_test.json"
  _check_same_settings(cfg, workdir / cfg.name)
  if path.is_file():
    stored = json.loads(path.read_text())
    calibrated = "calibrated" in stored or not calibration.of(cfg, own=True).active
    if "full_collection" not in stored or (set(stored.get("hybrid", {})) >= set(cfg.hybrid.methods)
                                           and "hub_norm" in stored and calibrated):
      return stored
    # made before a fusion method, the hub correction or the calibration existed: the figures again
    return evaluate.evaluate_stage(cfg, str(workdir))
  if cfg.mode == "distill":
    return distill.distill(cfg, str(workdir))
  return evaluate.evaluate_stage(cfg, str(workdir))


# What makes two runs of a stage the same experiment: these config subtrees, whole, less the fields that only say
# where things are (a field added to a subtree counts without being listed here).
_SUBTREES = ("data", "model", "train", "distill")
# distill.scored.stage names the first-round student by a path or a name under --workdir; the table stored in the
# stage folder records the folder it resolved to, and scored_negatives.ensure refuses another one.
_WHERE = ("data.cache_dir", "distill.teacher_dir", "distill.train_teacher_if_missing", "distill.scored.stage")
# Fields added after stages were trained, at the value that behaves as before they existed: a stage whose saved
# config lacks one was trained that way.
_ADDED = {"data.oov_buckets": 0, "train.eval_full_collection": False, "model.dropout_rng": "threefry",
          "distill.negatives.in_batch": False, "distill.negatives.random": 0,
          "distill.negatives.mined": {"count": 0, "depth": 50, "skip": 0, "refresh_every": 100},
          "distill.doc_crop": {"prob": 0.0, "min_words": 8},
          "distill.scored.stage": "", "distill.scored.count": 0, "distill.scored.max_per_doc": 0}


def _check_same_settings(cfg, stage: Path) -> None:
  """Refuses to reuse a stage folder trained with other settings (its name does not encode them all)."""
  saved = stage / "config.json"
  if not saved.is_file():
    return
  old, new = json.loads(saved.read_text()), json.loads(cfg.to_json_best_effort())
  for key, value in _ADDED.items():  # only inside subtrees the stage has (a teacher has no distill settings)
    top, *middle, last = key.split(".")
    node = old.get(top)
    if not isinstance(node, dict):
      continue
    for part in middle:
      node = node.setdefault(part, {})
    node.setdefault(last, value)
  old["model"], new["model"] = registry.model_fields(old.get("model", {})), registry.model_fields(new["model"])
  differ = [k for k in _SUBTREES if _digest(old, k) != _digest(new, k)]
  if differ:
    raise ValueError(f"{stage} was trained with other {', '.join(differ)} settings than asked for now: pass another "
                     "--workdir (or delete that folder) to train it afresh.")


def _digest(config: dict, subtree: str) -> str:
  """A hash of one config subtree without its location fields (JSON with sorted keys, so order never matters)."""
  tree = json.loads(json.dumps(config.get(subtree) or {}))  # a deep copy: nested location fields are popped
  for key in _WHERE:
    top, *middle, field = key.split(".")
    node = tree if top == subtree else None
    for part in middle:
      node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict):
      node.pop(field, None)
  return hashlib.sha256(json.dumps(tree, sort_keys=True, default=str).encode()).hexdigest()


def bm25_full_collection(data_cfg) -> dict:
  data = datasets.load(data_cfg)
  test = data.splits["test"]
  n = data_cfg.max_claims or len(test)  # the same claims the models are evaluated on
  index = candidates.BM25Index(data.collection)
  start = time.perf_counter()
  rows, scores = index.search(test.texts[:n], 100)
  per_s = n / (time.perf_counter() - start)
  out = full_collection_metrics(scores, rows, test.ids[:n], data.collection.ids, test.qrels)
  return {"full_collection": out, "claims_per_s": per_s}


def run(config, workdir: str) -> dict:
  r = config.reproduce
  root = Path(workdir)
  results: dict = {"config": config.to_dict(), "datasets": {}}
  started = time.time()
  for dataset in r.datasets:
    wd = root / dataset
    rows: dict[str, list[dict]] = {}
    for kind in r.students:
      alpha, temperature = distill_setting(r, kind)
      for label, a in (("hard labels only", 0.0), ("distilled", alpha)):
        for seed in r.seeds:
          cfg = student_config(config, dataset, kind, a, temperature, seed)
          rows.setdefault(f"{registry.display_name(kind)} {label}", []).append(eval_stage(cfg, wd))
    tcfg = teacher_config(config, dataset)
    tcfg.mode = "evaluate"
    tdir = Path(config.reproduce.teacher_dirs.get(dataset, "") or wd / tcfg.name)
    tcfg.name = tdir.name
    rows = {"Teacher (MiniLM-L6 cross-encoder)": [eval_stage(tcfg, tdir.parent)], **rows}
    bm25 = bm25_full_collection(tcfg.data)
    results["datasets"][dataset] = {"rows": rows, "bm25": bm25, "teacher": teacher_config(config, dataset).to_dict()}
    # The sweep: one student, one seed, temperature and alpha varied around its main setting. Each point records
    # its best dev nDCG@10, which is what chooses a setting; its test figures are only reported.
    if dataset == r.sweep_dataset:
      sweep = {"temperature": {}, "alpha": {}}
      alpha, temperature = sweep_center(r)
      points = [("temperature", t, alpha, t) for t in r.sweep_temperatures]
      points += [("alpha", a, a, temperature) for a in r.sweep_alphas]
      for axis, value, a, t in points:
        cfg = student_config(config, dataset, r.sweep_student, a, t, 0)
        sweep[axis][value] = {**eval_stage(cfg, wd), "dev_ndcg@10": best_dev(wd / cfg.name)}
      results["sweep"] = sweep
  results["wall_minutes"] = round((time.time() - started) / 60, 1)
  results["command"] = "python " + " ".join(shlex.quote(a) for a in sys.argv)
  out = Path(r.results_dir)
  multihost.primary_writes(f"the results in {out}", lambda: write_results(results, out))
  return results


def write_results(results: dict, out: Path) -> None:
  """results.json (keeping the datasets this run did not cover), its section of RESULTS.md and the plots."""
  out.mkdir(parents=True, exist_ok=True)
  _keep_other_datasets(results, out / "results.json")
  atomic.write_text(out / "results.json", json.dumps(results, indent=2, default=float))
  write_section(out)
  plot(results, out)
  logging.info("Wrote %s", out / "RESULTS.md")


def _keep_other_datasets(results: dict, path: Path) -> None:
  """Datasets of an earlier results.json that this run did not cover stay in the file, each with the teacher and
  command that made it: a reproduction of one dataset updates that dataset's table, not the whole file."""
  if not path.is_file():
    return
  old = json.loads(path.read_text())
  for name, d in old.get("datasets", {}).items():
    if name in results["datasets"]:
      continue
    d = dict(d)
    if "teacher" not in d:  # files from before per-dataset teachers: the run's teacher, as that run applied it
      d["teacher"] = teacher_config(ml_collections.ConfigDict(old["config"]), name).to_dict()
    d.setdefault("command", old["command"])
    d.setdefault("wall_minutes", old.get("wall_minutes"))
    results["datasets"][name] = d


def dataset_teacher_desc(t: dict, pairs: str = "") -> str:
  """The teacher recipe of one dataset's table (its teacher config as the reproduction applied it); `pairs`
  replaces the default '<pair_len>-token pairs'."""
  m, tc = t["model"], t["train"]
  base = "MiniLM-L6" if m.get("pretrained") else "BERT from scratch,"
  pairs = pairs or f"{m['pair_len']}-token pairs"
  return (f"Teacher: {base} cross-encoder, {pairs}, {m.get('head', 'cls')} head, {tc['steps']} "
          f"steps x {tc['batch_size']} claims x {tc.get('list_size') or t['data']['num_candidates']} candidates, "
          f"learning rate {tc['learning_rate']:g}.")


def write_section(out: Path) -> None:
  """results/reproduction.md from results.json, then RESULTS.md again."""
  results = json.loads((out / "results.json").read_text())
  atomic.write_text(out / "reproduction.md", render(results, ml_collections.ConfigDict(results["config"])))
  results_md.write(out)


def distillation_verdict(rows: dict) -> list[str]:
  """Per student kind with both rows (`<kind> hard labels only`, `<kind> distilled`): on how many CLAIM_METRICS the
  distilled mean over seeds beats the hard-label one, and the others with both means."""
  out = []
  for name, hard in rows.items():
    kind = name.removesuffix(" hard labels only")
    dist = rows.get(f"{kind} distilled")
    if kind == name or not dist:
      continue
    checked = [(part, m) for part, m in CLAIM_METRICS if part in hard[0] and part in dist[0]]
    short = []
    for part, m in checked:
      h, d = (float(np.mean([x[part][m] for x in runs])) for runs in (hard, dist))
      if not d > h:
        short.append(f"{'full ' if part == 'full_collection' else ''}{m} {d:.3f} vs {h:.3f}")
    out.append(f"{kind} {len(checked) - len(short)} of {len(checked)}"
               + (f" (not {', '.join(short)})" if short else ""))
  return out


def mean_std(values: list[float]) -> str:
  values = [v for v in values if v == v]
  if not values:
    return "—"
  return f"{np.mean(values):.3f} ± {np.std(values):.3f}" if len(values) > 1 else f"{values[0]:.3f}"


def teacher_desc(config) -> str:
  """One sentence naming the teacher recipe a table was made with (tables made with earlier teachers stay
  readable: fields they lack take the defaults of that time)."""
  t, r = config["teacher"], config["reproduce"]
  short = ", ".join(d for d in r.get("short_docs", ()) if d in r.get("datasets", ()))
  short = f" ({r['short_pair_len']} on {short})" if short else ""
  return dataset_teacher_desc({**t, "data": config["data"]}, f"{t['model']['pair_len']}-token pairs{short}")


def render(results: dict, config) -> str:
  r = config.reproduce
  lines = ["# Reproduction: distillation into claim-independent students", "",
           f"Produced by `{results['command']}` ({results['wall_minutes']} min of stages not already finished). Means ± std over seeds {tuple(r.seeds)} (the teacher: one run). "
           f"Distilled: {_settings_text(r)}; hard labels only: alpha=0. Test split; reranking "
           f"is over each claim's {config.data.num_candidates} BM25 candidates. Claims per split capped at "
           f"{dict(r.max_claims)} (0 = all)."
           + ("" if all("teacher" in d for d in results["datasets"].values()) else f" {teacher_desc(config)}"), ""]
  for dataset, d in results["datasets"].items():
    lines += [f"## {dataset}", ""]
    if "teacher" in d:
      lines += [dataset_teacher_desc(d["teacher"]) + (f" Made by an earlier run: `{d['command']}`." if d.get(
          "command") not in (None, results["command"]) else ""), ""]
    lines += ["| model | params | " + " | ".join(RERANK) + " | full " + " | full ".join(FULL)
              + " | rerank claims/s |", "|---|---:|" + "---:|" * (len(RERANK) + len(FULL) + 1)]
    any_row = next(iter(d["rows"].values()))[0]
    bm25_rr = [any_row["bm25_rerank"][m] for m in RERANK]
    bm25_full = [d["bm25"]["full_collection"][m] for m in FULL]
    lines.append("| BM25 (bm25s, stemmed) | — | " + " | ".join(f"{v:.3f}" for v in bm25_rr) + " | "
                 + " | ".join(f"{v:.3f}" for v in bm25_full) + f" | {d['bm25']['claims_per_s']:.0f} (full search) |")
    for name, runs in d["rows"].items():
      rr = [mean_std([x["rerank"][m] for x in runs]) for m in RERANK]
      full = [mean_std([x["full_collection"][m] for x in runs]) if "full_collection" in runs[0] else "—"
              for m in FULL]
      lines.append(f"| {name} | {runs[0]['params']:,} | " + " | ".join(rr + full)
                   + f" | {np.mean([x['rerank_claims_per_s'] for x in runs]):.0f} |")
    lines.append("")
    verdict = distillation_verdict(d["rows"])
    if verdict:
      lines += ["Distilled beats hard labels only (means over seeds; reranking MRR@10, MAP, nDCG@10, Recall@1/5/10, "
                "full-collection nDCG@10, Recall@100) on: " + "; ".join(verdict) + ".", ""]
  if "sweep" in results:
    alpha, temperature = sweep_center(r)
    lines += [f"## Sweep ({r.sweep_student}, {r.sweep_dataset}, seed 0, around alpha={alpha:g}, T={temperature:g})",
              "", "Settings are chosen by the dev column (the best dev nDCG@10 reached in training, reranking); "
              "test figures are reported, not chosen by.", "",
              "| setting | dev rerank nDCG@10 | test rerank nDCG@10 | test full nDCG@10 |", "|---|---:|---:|---:|"]
    for axis, runs in results["sweep"].items():
      for value, x in runs.items():
        dev = f"{x['dev_ndcg@10']:.3f}" if "dev_ndcg@10" in x else "—"
        lines.append(f"| {axis} = {value} | {dev} | {x['rerank']['ndcg@10']:.3f} | "
                     f"{x['full_collection']['ndcg@10']:.3f} |")
    lines += ["", "![metrics](metrics.png)", "", "![sweep](sweep.png)", ""]
  return "\n".join(lines)


def _settings_text(r) -> str:
  kinds = r.get("students", ())
  settings = {kind: distill_setting(r, kind) for kind in kinds}
  if len(set(settings.values())) <= 1:
    return f"alpha={r.alpha}, T={r.temperature}" if not settings else "alpha={:g}, T={:g}".format(
        *next(iter(settings.values())))
  return "; ".join(f"{registry.display_name(k)} alpha={a:g}, T={t:g}" for k, (a, t) in
                   settings.items()) + " (each chosen on dev)"


def pyplot():
  """matplotlib's pyplot on the headless backend (imported only when plotting)."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  return plt


def dataset_panels(results: dict):
  """A figure with one panel per dataset, and (axis, dataset name, its results) for each panel."""
  names = list(results["datasets"])
  fig, axes = pyplot().subplots(1, len(names), figsize=(6 * len(names), 4), squeeze=False)
  return fig, [(ax, name, results["datasets"][name]) for ax, name in zip(axes[0], names)]


def plot(results: dict, out: Path) -> None:
  fig, panels = dataset_panels(results)
  for ax, dataset, d in panels:
    names = list(d["rows"])
    means = [np.mean([x["rerank"]["ndcg@10"] for x in d["rows"][n]]) for n in names]
    stds = [np.std([x["rerank"]["ndcg@10"] for x in d["rows"][n]]) for n in names]
    ax.barh(names, means, xerr=stds, color="tab:blue")
    ax.axvline(next(iter(d["rows"].values()))[0]["bm25_rerank"]["ndcg@10"], color="k", ls="--", label="BM25")
    ax.set_title(f"{dataset}: test nDCG@10 (reranking)")
    ax.legend()
  fig.tight_layout()
  fig.savefig(out / "metrics.png", dpi=110)
  if "sweep" in results:
    fig, axes = pyplot().subplots(1, 2, figsize=(10, 3.5))
    for ax, axis in zip(axes, ("temperature", "alpha")):
      xs = [float(v) for v in results["sweep"][axis]]
      for kind, label in (("rerank", "reranking"), ("full_collection", "full collection")):
        ax.plot(xs, [x[kind]["ndcg@10"] for x in results["sweep"][axis].values()], "o-", label=label)
      ax.set_xlabel(axis)
      ax.set_ylabel("test nDCG@10")
      ax.legend()
    fig.tight_layout()
    fig.savefig(out / "sweep.png", dpi=110)

"""Choosing the search calibration on dev (kd_jax/calibration.py): finished students search their own collection and
the other dataset's, with the training collection's common words kept out of lexical matches (`search.stop_df`) and
documents' dense norms pulled toward the searched collection's median (`search.doc_norms`), over a grid of both.
Writes results/calibration.json, results/calibration.md (a section of RESULTS.md) and results/calibration.png.

  KD_JAX_DATA_DIR=../shared/data python -m experiments.calibration --workdir=workdir

Stages are finished student folders under --workdir (STAGES, one per seed: the main command's CNN, in the workdir the
seed table names, and the ablation's lexical-channel students on both datasets); --stages names others.

Both settings act at search time: the same students are searched at every grid point. They are chosen on dev only.
A search knows whether it reads the stage's own training collection or another, so the norm strength is chosen
twice: `doc_norms.own` by the mean over stages of the own collection's dev nDCG@10, `doc_norms.other` by that of the
other collection's dev claims. The common-word threshold is a property of the training collection, so it is one
setting: the one whose best own and best other dev means, averaged, are highest. Ties go to the milder setting.
Test figures are reported, never used.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path

import ml_collections
import numpy as np
from absl import app, flags

from experiments import ablation, reproduce, results_md
from kd_jax import atomic, calibration, collection, collection_eval, indexing, search, sharding
from kd_jax.modes import stage

STRENGTHS = (0.0, 0.25, 0.5, 0.75, 1.0)
STOP_DFS = (1.0, 0.5, 0.25, 0.1, 0.05)
# Every finished student with the lexical channel and dot scores (the kind whose norms make hubs), `{seed}` filled in.
STAGES = ("main_hash/cnn_student+lex4k+oovlex+steps1200_s{seed}",
          "reproduce/scifact/cnn_T2_a0.5_s{seed}+fullsel+inbatch+mined8+lex4k+oovlex",
          "reproduce/scifact/lstm_T2_a0.25_s{seed}+fullsel+inbatch+mined8+lex4k",
          "reproduce/fever_titles/cnn_T2_a0.5_s{seed}+fullsel+inbatch+mined8+lex4k+oovlex",
          "reproduce/fever_titles/lstm_T2_a0.25_s{seed}+fullsel+inbatch+mined8+lex4k")


def key(stop_df: float, strength: float) -> str:
  return f"stop_df={stop_df:g} doc_norms={strength:g}"


def stored_index(stage_dir: Path, cfg, built, params, inputs, name: str, max_claims: int, mesh):
  """(the dataset `name` as a collection.Source cut to `max_claims` test claims, the stage's stored index of it): the
  index is built once, beside the stage's other indexes, and reused after."""
  c = ml_collections.ConfigDict(cfg.to_dict())
  c.collection.update(path="", dataset=name, name=name, max_claims=max_claims)
  src = collection.from_config(c)
  return src, indexing.build_for(stage_dir, built, params, inputs, src, mesh, cfg.name)


def stage_rows(stage_dir: Path, stop_dfs, strengths, transfer_claims: int) -> dict:
  """{key(stop_df, strength): {own|other: {dev|test: {ndcg@10, recall@100, hub, claims}}}} of one finished student."""
  cfg = ml_collections.ConfigDict(json.loads((stage_dir / "config.json").read_text()))
  mesh = sharding.make_mesh(1, 1)
  built, params, inputs = stage.student(cfg, stage_dir, mesh)
  own_name = cfg.data.name
  wanted = {"own": (own_name, cfg.data.get("max_claims", 0)), "other": (ablation.OTHER[own_name], transfer_claims)}
  out = {"trained_on": own_name, "other": ablation.OTHER[own_name], "rows": {}}
  for where, (name, max_claims) in wanted.items():
    src, index = stored_index(stage_dir, cfg, built, params, inputs, name, max_claims, mesh)
    doc_vecs, doc_ids, _ = index.read()
    for split in ("dev", "test"):
      claims = src.claims(split)
      claim_vecs = search.encode_claims(built, params, inputs.claim_words(claims.texts), mesh)
      for t in stop_dfs:
        for s in strengths:
          cal = calibration.Calibration(doc_norms=s, stop_df=t)
          scores, rows = search.top_k(built, params, cal.claims(built, inputs, claim_vecs), cal.docs(built, doc_vecs),
                                      100, mesh)
          m = search.full_collection_metrics(scores, rows, claims.ids, doc_ids, claims.qrels)
          out["rows"].setdefault(key(t, s), {}).setdefault(where, {})[split] = {
              "ndcg@10": m["ndcg@10"], "recall@100": m["recall@100"],
              "hub": collection_eval.hub_share(rows)["max_share"], "claims": len(claims.ids)}
  return out


def choose(stages: dict, stop_dfs, strengths) -> dict:
  """The dev choices (module docstring) and the dev means they were read from."""
  mean = {where: {key(t, s): float(np.mean([st["rows"][key(t, s)][where]["dev"]["ndcg@10"] for st in stages.values()]))
                  for t in stop_dfs for s in strengths} for where in ("own", "other")}
  # max() keeps the first of equal values: the grids run from the mildest setting (stop_df 1, strength 0) up.
  best_s = {(where, t): max(strengths, key=lambda s: round(mean[where][key(t, s)], 6))
            for where in ("own", "other") for t in stop_dfs}
  score = {t: (mean["own"][key(t, best_s["own", t])] + mean["other"][key(t, best_s["other", t])]) / 2
           for t in stop_dfs}
  t = max(stop_dfs, key=lambda x: round(score[x], 6))
  return {"stop_df": t, "doc_norms": {"own": best_s["own", t], "other": best_s["other", t]},
          "dev_score_by_stop_df": {f"{x:g}": v for x, v in score.items()}, "dev_ndcg@10": mean}


def family(stage_name: str) -> str:
  """A stage's name without its seed (`_s<N>`), so seeds of one recipe are averaged together."""
  return re.sub(r"_s\d+", "", stage_name)


def render(results: dict) -> str:
  c = results["chosen"]
  t, own_s, other_s = c["stop_df"], c["doc_norms"]["own"], c["doc_norms"]["other"]
  lines = ["## Search calibrated for the collection searched", "",
           f"From `{results['command']}` (kd_jax/calibration.py): each student searches its own collection and the "
           "other dataset's. `stop_df`: words found in more than that share of the training collection's documents "
           "never match in the lexical channel (stopwords.py); `doc_norms`: each document's dense norm is pulled that "
           "far (in log space) toward the median of the collection searched (doc_norms.py). Chosen on dev over the "
           f"grid, by the mean dev nDCG@10 of all the stages below: **stop_df {t:g}; doc_norms {own_s:g} on a stage's "
           f"own collection, {other_s:g} on the other**.", "",
           "Mean dev nDCG@10 over all stages (own / other collection):", "",
           "| stop_df \\ doc_norms | " + " | ".join(f"{s:g}" for s in results["strengths"]) + " |",
           "|---|" + "---:|" * len(results["strengths"])]
  for x in results["stop_dfs"]:
    lines.append(f"| {x:g} | " + " | ".join(f"{c['dev_ndcg@10']['own'][key(x, s)]:.3f} / "
                                            f"{c['dev_ndcg@10']['other'][key(x, s)]:.3f}"
                                            for s in results["strengths"]) + " |")
  lines += ["", "Test, mean ± std over seeds (whole collection; hub: the largest share of test claims with one document "
            "in their top 10). Own columns are searched at the own strength, other columns at the other strength:", "",
            "| stage, search | own dev | own test | own hub | other dev | other test | other R@100 | other hub |",
            "|---|---:|---:|---:|---:|---:|---:|---:|"]
  settings = [("as trained", 1.0, 0.0, 0.0), (f"common words out (stop_df {t:g})", t, 0.0, 0.0),
              (f"norms pulled ({own_s:g} / {other_s:g})", 1.0, own_s, other_s), ("both (chosen)", t, own_s, other_s)]
  fmt = lambda xs: f"{np.mean(xs):.3f} ± {np.std(xs):.3f}" if len(xs) > 1 else f"{xs[0]:.3f}"  # noqa: E731
  pct = lambda xs: f"{100 * np.mean(xs):.1f}%"  # noqa: E731
  groups: dict[str, list[dict]] = {}
  for name, st in results["stages"].items():
    groups.setdefault(f"{st['trained_on']}: {family(Path(name).name)}", []).append(st)
  for group, sts in groups.items():
    lines.append(f"| **{group}** ({len(sts)} seeds, other: {sts[0]['other']}) | | | | | | | |")
    for label, x, so, sx in settings:
      o = lambda sp, k: [st["rows"][key(x, so)]["own"][sp][k] for st in sts]  # noqa: E731
      f = lambda sp, k: [st["rows"][key(x, sx)]["other"][sp][k] for st in sts]  # noqa: E731
      lines.append(f"| {label} | {fmt(o('dev', 'ndcg@10'))} | {fmt(o('test', 'ndcg@10'))} | {pct(o('test', 'hub'))} | "
                   f"{fmt(f('dev', 'ndcg@10'))} | {fmt(f('test', 'ndcg@10'))} | {fmt(f('test', 'recall@100'))} | "
                   f"{pct(f('test', 'hub'))} |")
  return "\n".join(lines) + "\n"


def plot(results: dict, out: Path) -> None:
  """calibration.png: mean dev nDCG@10 over the stages against the norm strength, one line per stop_df, on the
  stages' own collections and on the other ones; the chosen settings marked."""
  plt = reproduce.pyplot()
  fig, axes = plt.subplots(1, 2, figsize=(10, 4))
  c = results["chosen"]
  for ax, where, title in zip(axes, ("own", "other"), ("own collection (dev)", "other collection (dev)")):
    for t in results["stop_dfs"]:
      ax.plot(results["strengths"], [c["dev_ndcg@10"][where][key(t, s)] for s in results["strengths"]], "o-",
              label=f"stop_df {t:g}" + (" (off)" if t >= 1 else ""))
    chosen_s = c["doc_norms"][where]
    ax.plot([chosen_s], [c["dev_ndcg@10"][where][key(c["stop_df"], chosen_s)]], "k*", markersize=14, label="chosen")
    ax.set_xlabel("doc_norms strength (0: as trained)")
    ax.set_ylabel(f"mean nDCG@10 over {len(results['stages'])} students")
    ax.set_title(title)
    ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(out / "calibration.png", dpi=110)


def finished_stages(workdir: str, stages: list[str], patterns, seeds) -> list[str]:
  """`stages`, or every pattern of `patterns` at every seed, all finished under `workdir` (else a usage error)."""
  stages = stages or list(dict.fromkeys(p.format(seed=seed) for p in patterns for seed in seeds))  # seedless once
  missing = [st for st in stages if not (Path(workdir) / st / "complete.json").is_file()]
  if missing:
    raise app.UsageError(f"Not finished stages under {workdir}: {', '.join(missing)} (train them, or pass --stages).")
  return stages


def publish(out: Path, name: str, results: dict, render_fn, plot_fn) -> None:
  """results/<name>.json, <name>.md (a section of RESULTS.md, rebuilt) and the plot; the section printed."""
  out.mkdir(parents=True, exist_ok=True)
  atomic.write_text(out / f"{name}.json", json.dumps(results, indent=2))
  atomic.write_text(out / f"{name}.md", render_fn(results))
  plot_fn(results, out)
  results_md.write(out)
  print(render_fn(results))


def main(argv):
  del argv
  f = flags.FLAGS
  stages = finished_stages(f.workdir, f.stages, STAGES, f.seeds)
  stop_dfs = sorted({float(x) for x in f.stop_dfs}, reverse=True)  # mildest first: ties keep it
  strengths = sorted({float(x) for x in f.strengths})
  results = {"command": "python -m experiments.calibration " + shlex.join(sys.argv[1:]), "stop_dfs": stop_dfs,
             "strengths": strengths, "stages": {}}
  for st in stages:
    results["stages"][st] = stage_rows(Path(f.workdir) / st, stop_dfs, strengths, f.transfer_claims)
    print(st, "done", flush=True)
  results["chosen"] = choose(results["stages"], stop_dfs, strengths)
  publish(Path(f.results_dir), "calibration", results, render, plot)


def _define_flags() -> None:
  define_stage_flags("calibration")
  flags.DEFINE_list("strengths", [f"{s:g}" for s in STRENGTHS], "Norm strengths to compare (0 = as trained).")
  flags.DEFINE_list("stop_dfs", [f"{s:g}" for s in STOP_DFS], "Common-word thresholds to compare (1 = off).")


def define_stage_flags(name: str) -> None:
  """The flags every experiment over finished stages (finished_stages, publish) shares; `name` names its results."""
  flags.DEFINE_string("workdir", "workdir", "The folder the stages are under.")
  flags.DEFINE_list("stages", [], "Stage folders under --workdir, trained on scifact or fever_titles (default: STAGES).")
  flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds of each of STAGES.")
  flags.DEFINE_integer("transfer_claims", 1500, "Test claims of the other collection (0 = all).")
  flags.DEFINE_string("results_dir", "results", f"Where {name}.json/.md and RESULTS.md are written.")


if __name__ == "__main__":
  _define_flags()
  app.run(main)

"""One search setting (a field of kd_jax/calibration.py's Calibration) chosen on dev on top of the calibration already
chosen, over finished students: the rows at each strength, the choice, the RESULTS.md section and the plot.
experiments/lexical_norms.py (`lex_norms`) and experiments/unknown_words.py (`unk_drop`) are its two uses.

Each stage searches its own collection and the other dataset's, calibrated as `Setting.base` says, with the setting
at each strength of the grid. The strength is chosen twice, by the mean over stages of dev nDCG@10: `<setting>.own`
on the stages' own collections, `<setting>.other` on the other ones. Ties go to the milder strength. Test figures are
reported, never used; the fusions with BM25 are read at the weights the stage's own evaluation chose on dev for its
calibrated student.

At the chosen strengths, the querybank hub correction (kd_jax/hubness.py) on top: at home its beta is each stage's
own, chosen on its dev as mode=evaluate chooses it for the calibrated search (`calibrated.hub_norm`); on the other
collection no stage has dev claims of its own, so one beta per recipe (a config's `search.hub_beta_other`) is chosen
from the means over its seeds by hubness.choose_beta: among betas within a point of the best dev nDCG@10, the best of
those whose dev hub is at most 5%, else the smallest dev hub of them.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import shlex
import sys
from pathlib import Path
from typing import Callable

import ml_collections
import numpy as np
from absl import app, flags

from experiments import ablation, calibration as calibration_experiment, reproduce
from kd_jax import calibration, collection_eval, hubness, search, sharding
from kd_jax.modes import stage

STAGES = ("main_hash/cnn_student+lex4k+oovlex+steps1200_s{seed}",
          "bilstm_layer/lstm_student+lex4k+oovlex_s{seed}")
FUSIONS = ("zscore", "zcoverage")  # reported for the other collection, where the levers act


@dataclasses.dataclass(frozen=True)
class Setting:
  name: str  # the Calibration field, and search.<name> of the configs
  base: Callable[[ml_collections.ConfigDict, bool], calibration.Calibration]  # (stage config, own) -> calibration
  title: str  # the RESULTS.md section's heading
  what: str  # what the setting does, for the section's first paragraph
  axis: str  # the plot's x label
  plural: str  # "lexical strengths": what the hub correction's paragraph says it sits on top of


def stored_weights(stage_dir: Path, collection_name: str) -> dict[str, float]:
  """The fusion weights the stage's zero-shot evaluation chose on dev for its calibrated student."""
  path = stage_dir / f"eval_{collection_name}.json"
  if not path.is_file():
    raise FileNotFoundError(f"{path} is missing: run --config.mode=evaluate --config.collection.dataset="
                            f"{collection_name} for {stage_dir} first.")
  hybrid = json.loads(path.read_text())["calibrated"]["hybrid"]
  return {m: float(hybrid[m]["weight"]) for m in FUSIONS}


def stage_rows(setting: Setting, stage_dir: Path, strengths, transfer_claims: int) -> dict:
  """One student's rows: {"rows": {f"{strength:g}": {own|other: {dev|test: {ndcg@10, recall@100, hub, claims[,
  fusions]}}}}, "hub_norm": {f"{strength:g}": {own|other: {dev|test: {f"{beta:g}": {ndcg@10, hub}}}}}}, the second
  with the querybank hub correction (hubness.py) on top, its bank read calibrated as the claims are. A strength whose
  calibration encodes anew (Calibration.encodes) encodes the collection and the claims again, in memory."""
  cfg = ml_collections.ConfigDict(json.loads((stage_dir / "config.json").read_text()))
  mesh = sharding.make_mesh(1, 1)
  built, params, inputs = stage.student(cfg, stage_dir, mesh)
  own_name, other_name = cfg.data.name, ablation.OTHER[cfg.data.name]
  wanted = {"own": (own_name, cfg.data.get("max_claims", 0)), "other": (other_name, transfer_claims)}
  weights = stored_weights(stage_dir, other_name)
  settings = collection_eval.hub_norm_settings(cfg)
  out = {"trained_on": own_name, "other": other_name, "rows": {}, "hub_norm": {}}
  for where, (name, max_claims) in wanted.items():
    base = setting.base(cfg, where == "own")
    src, index = calibration_experiment.stored_index(stage_dir, cfg, built, params, inputs, name, max_claims, mesh)
    stored_vecs, doc_ids, _ = index.read()
    texts = [text for _, text in src.documents()]
    out[f"{where}_calibration"] = base.settings()
    claims = {split: src.claims(split) for split in ("dev", "test")}
    encode_claims = lambda p: {split: search.encode_claims(built, p, inputs.claim_words(c.texts), mesh)  # noqa: E731
                               for split, c in claims.items()}
    as_trained = encode_claims(params)  # every strength that leaves the towers' inputs alone reads these
    for s in strengths:
      cal = dataclasses.replace(base, **{setting.name: s})
      p = cal.params(params)
      doc_vecs = search.encode_docs(built, p, inputs.doc_words(texts), mesh) if cal.encodes else stored_vecs
      claim_vecs = encode_claims(p) if cal.encodes else as_trained
      docs = cal.docs(built, doc_vecs)
      penalty = hubness.collection_penalty(built, p, docs, settings,
                                           lambda rows: inputs.claim_words([texts[int(r)] for r in rows]), mesh,
                                           lambda v, cal=cal: cal.claims(built, inputs, v))
      for split, c in claims.items():
        q = cal.claims(built, inputs, claim_vecs[split])
        for beta in hubness.BETAS:
          scores, rows = search.top_k(built, p, q, docs, 100, mesh, doc_bias=beta * penalty)
          m = search.full_collection_metrics(scores, rows, c.ids, doc_ids, c.qrels)
          hub = collection_eval.hub_share(rows)["max_share"]
          out["hub_norm"].setdefault(f"{s:g}", {}).setdefault(where, {}).setdefault(split, {})[f"{beta:g}"] = {
              "ndcg@10": m["ndcg@10"], "hub": hub}
          if beta:
            continue
          fused = {}
          if where == "other" and split == "test":  # the fusions, at the weights the stage chose for this student
            fig = collection_eval.calibrated_figures(built, p, inputs, claim_vecs[split], doc_vecs, doc_ids, src, c,
                                                     weights, mesh, 100, cal)
            fused = {f: fig["hybrid"][f]["full_collection"]["ndcg@10"] for f in FUSIONS}
          out["rows"].setdefault(f"{s:g}", {}).setdefault(where, {})[split] = {
              "ndcg@10": m["ndcg@10"], "recall@100": m["recall@100"], "hub": hub, "claims": len(c.ids), **fused}
  return out


def choose(stages: dict, strengths, name: str) -> dict:
  """Own and other strengths of the setting `name` by the mean dev nDCG@10 over the stages (module docstring), with
  those means; then, at those strengths, the hub correction's beta: at home each stage's own (its dev, as
  mode=evaluate chooses it), on the other collection one per recipe (from the means over its seeds, with the hub
  ceiling: hubness.choose_beta; `search.hub_beta_other` of its config)."""
  mean = {where: {f"{s:g}": float(np.mean([st["rows"][f"{s:g}"][where]["dev"]["ndcg@10"] for st in stages.values()]))
                  for s in strengths} for where in ("own", "other")}
  # max() keeps the first of equal values: the grids run from the mildest setting (0) up.
  best = {where: max(strengths, key=lambda s: round(mean[where][f"{s:g}"], 6)) for where in ("own", "other")}
  out = {name: best, "dev_ndcg@10": mean}
  if all("hub_norm" in st for st in stages.values()):
    dev = lambda st, where, b: st["hub_norm"][f"{best[where]:g}"][where]["dev"][f"{b:g}"]["ndcg@10"]  # noqa: E731
    hub = lambda st, where, b: st["hub_norm"][f"{best[where]:g}"][where]["dev"][f"{b:g}"]["hub"]  # noqa: E731
    out["hub_beta_own"] = {n: hubness.choose_beta({b: (dev(st, "own", b), hub(st, "own", b)) for b in hubness.BETAS})
                           for n, st in stages.items()}
    families = _families(stages)
    other = {r: {f"{b:g}": float(np.mean([dev(stages[n], "other", b) for n in names])) for b in hubness.BETAS}
             for r, names in families.items()}
    other_hub = {r: {f"{b:g}": float(np.mean([hub(stages[n], "other", b) for n in names])) for b in hubness.BETAS}
                 for r, names in families.items()}
    # Away from home the hub ceiling is enforced on dev as well (hubness.choose_beta): the correction with the
    # documents' bank raised the BiLSTM's hub on FEVER-titles while it lifted nDCG@10.
    out["hub_beta_other"] = {r: hubness.choose_beta({b: (other[r][f"{b:g}"], other_hub[r][f"{b:g}"])
                                                     for b in hubness.BETAS}, hubness.MAX_HUB) for r in families}
    out["hub_dev_ndcg@10_other"] = other
    out["hub_dev_hub_other"] = other_hub
  return out


def family(stage_name: str) -> str:
  return calibration_experiment.family(Path(stage_name).name)


def _families(stages: dict) -> dict[str, list[str]]:
  """Stage names by recipe: the seeds of one recipe together."""
  out: dict[str, list[str]] = {}
  for name in stages:
    out.setdefault(family(name), []).append(name)
  return out


def render(setting: Setting, results: dict) -> str:
  c = results["chosen"]
  strengths, name = results["strengths"], setting.name
  fmt = lambda xs: f"{np.mean(xs):.3f} ± {np.std(xs):.3f}" if len(xs) > 1 else f"{xs[0]:.3f}"  # noqa: E731
  pct = lambda xs: f"{100 * np.mean(xs):.1f}%"  # noqa: E731
  lines = [f"## {setting.title}", "",
           f"From `{results['command']}` {setting.what} Chosen on dev by the mean dev nDCG@10 of the stages below: "
           f"**{c[name]['own']:g} on a stage's own collection, {c[name]['other']:g} on the other**.",
           "", "Mean dev nDCG@10 over all stages, by strength:", "",
           "| collection | " + " | ".join(f"{s:g}" for s in strengths) + " |", "|---|" + "---:|" * len(strengths)]
  for where in ("own", "other"):
    lines.append(f"| {where} | " + " | ".join(f"{c['dev_ndcg@10'][where][f'{s:g}']:.3f}" for s in strengths) + " |")
  lines += ["", "Test, mean ± std over seeds (whole collection; hub: the largest share of test claims with one document "
            "in their top 10); the fusions at the weights each stage's evaluation chose on dev:", "",
            f"| stage (seeds), collection | {name} | dev nDCG@10 | test nDCG@10 | R@100 | hub | + BM25 z-score | "
            "+ BM25 z-coverage |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
  for group, names in _groups(results).items():
    sts = [results["stages"][n] for n in names]
    for where in ("own", "other"):
      shown = sorted({0.0, c[name][where]})
      for s in shown:
        r = lambda sp, k: [st["rows"][f"{s:g}"][where][sp][k] for st in sts]  # noqa: E731
        fused = [fmt(r("test", f)) if f in sts[0]["rows"][f"{s:g}"][where]["test"] else "—" for f in FUSIONS]
        chosen = " (chosen)" if s == c[name][where] and len(shown) > 1 else ""
        lines.append(f"| {group} ({len(sts)}), {where}: {sts[0]['trained_on'] if where == 'own' else sts[0]['other']}"
                     f" | {s:g}{chosen} | {fmt(r('dev', 'ndcg@10'))} | {fmt(r('test', 'ndcg@10'))} | "
                     f"{fmt(r('test', 'recall@100'))} | {pct(r('test', 'hub'))} | {' | '.join(fused)} |")
  if "hub_beta_other" in c:
    lines += ["", f"The hub correction on top (hubness.py), at the {setting.plural} chosen: at home each "
              "stage's beta chosen on its own dev (as mode=evaluate chooses it for the calibrated search); on the other "
              "collection one beta per recipe (`search.hub_beta_other` of its config), from the means over its "
              "seeds (dev nDCG@10 / hub): among betas within a point of the best nDCG@10, the best of those whose dev "
              "hub is at most 5%, else the smallest hub of them (hubness.choose_beta)"
              + (f"; chosen again from these rows by `{results['chosen_again_by']}`" if "chosen_again_by" in results
                 else "") + ":", ""]
    hubs = c.get("hub_dev_hub_other", {})
    lines += [f"- {r}: **{c['hub_beta_other'][r]:g}** (" + ", ".join(
        f"{b}: {v:.3f}" + (f" / {100 * hubs[r][b]:.1f}%" if r in hubs else "") for b, v in means.items()) + ")"
        for r, means in c["hub_dev_ndcg@10_other"].items()]
    lines += ["", "| stage (seeds), collection | beta | test nDCG@10 | hub | without: test nDCG@10 | hub |",
              "|---|---|---:|---:|---:|---:|"]
    for group, names in _groups(results).items():
      sts = [results["stages"][n] for n in names]
      for where in ("own", "other"):
        s = f"{c[name][where]:g}"
        betas = [c["hub_beta_own"][n] if where == "own" else c["hub_beta_other"][family(n)] for n in names]
        at = lambda b, k: [st["hub_norm"][s][where]["test"][f"{x:g}"][k] for st, x in zip(sts, b)]  # noqa: E731
        zero = [0.0] * len(sts)
        lines.append(f"| {group} ({len(sts)}), {where} | {', '.join(f'{b:g}' for b in betas)} | "
                     f"{fmt(at(betas, 'ndcg@10'))} | {pct(at(betas, 'hub'))} | {fmt(at(zero, 'ndcg@10'))} | "
                     f"{pct(at(zero, 'hub'))} |")
  return "\n".join(lines) + "\n"


def _groups(results: dict) -> dict[str, list[str]]:
  """Stage names by recipe (seeds together), labelled by the dataset trained on."""
  stages = results["stages"]
  return {f"{stages[names[0]]['trained_on']}: {r}": names for r, names in _families(stages).items()}


def plot(setting: Setting, results: dict, out: Path, file_name: str) -> None:
  """`file_name`: dev nDCG@10 against the strength, per student family, own and other collection."""
  plt = reproduce.pyplot()
  fig, axes = plt.subplots(1, 2, figsize=(10, 4))
  strengths = results["strengths"]
  for ax, where in zip(axes, ("own", "other")):
    for group, names in _families(results["stages"]).items():
      sts = [results["stages"][n] for n in names]
      ax.plot(strengths, [np.mean([st["rows"][f"{s:g}"][where]["dev"]["ndcg@10"] for st in sts]) for s in strengths],
              "o-", label=f"{group} ({len(sts)} seeds)")
    chosen = results["chosen"][setting.name][where]
    ax.axvline(chosen, color="k", ls=":", label=f"chosen ({chosen:g})")
    ax.set_xlabel(setting.axis)
    ax.set_ylabel("mean dev nDCG@10")
    ax.set_title(f"{where} collection (dev)")
    ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(out / file_name, dpi=110)


def define_rows_from_flag() -> None:
  flags.DEFINE_string("rows_from", "", "This experiment's results JSON: its measured rows are read back, and only the "
                      "choice, the section and the plot are made again (after a change of the choice rule).")


def stage_kind(stage_dir: Path) -> str:
  """The student kind (cnn, lstm) a stage's saved config names."""
  return json.loads((Path(stage_dir) / "config.json").read_text())["model"]["kind"]


def run(setting: Setting, module: str, strengths: list[float], patterns=STAGES, kind: str = "") -> None:
  """The experiment experiments/<module>.py over the stages its flags name (calibration.define_stage_flags; default:
  `patterns` at every seed), only those of student `kind` if given: rows at every strength, the choice,
  results/<name>.json/.md/.png and RESULTS.md, <name> being `module`, or `module_kind`."""
  f = flags.FLAGS
  name = f"{module}_{kind}" if kind else module
  command = f"python -m experiments.{module} " + shlex.join(sys.argv[1:])
  if f.rows_from:  # the rows as measured; only the choice (and what shows it) is made again
    results = json.loads(Path(f.rows_from).read_text())
    strengths = results["strengths"]  # the grid the rows were measured on, not the flags'
    kinds = {stage_kind(Path(f.workdir) / st) for st in results["stages"] if (Path(f.workdir) / st).is_dir()}
    if kind and kinds - {kind}:
      raise app.UsageError(f"--rows_from={f.rows_from} holds stages of kinds {sorted(kinds)}, not only {kind}.")
    results["chosen_again_by"] = command
  else:
    stages = calibration_experiment.finished_stages(f.workdir, f.stages, patterns, f.seeds)
    if kind:
      stages = [st for st in stages if stage_kind(Path(f.workdir) / st) == kind]
    results = {"command": command, "strengths": strengths, "stages": {}}
    for st in stages:
      results["stages"][st] = stage_rows(setting, Path(f.workdir) / st, strengths, f.transfer_claims)
      print(st, "done", flush=True)
  results["chosen"] = choose(results["stages"], strengths, setting.name)
  calibration_experiment.publish(Path(f.results_dir), name, results, functools.partial(render, setting),
                                 lambda r, out: plot(setting, r, out, f"{name}.png"))

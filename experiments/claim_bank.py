"""Choosing the hub correction's beta and k for a bank of real claims (`search.hub_bank`, kd_jax/hubness.py), per
student kind, on collections the students were not trained on. Writes results/claim_bank.json, .md (a section of
RESULTS.md) and .png:

  KD_JAX_DATA_DIR=../shared/data python -m experiments.claim_bank --workdir=workdir

Why: the hub correction lowers each document by beta x its mean score over its k best bank queries. Its default bank
is the collection's documents read as claims, which exists anywhere; on FEVER's page titles (2-6 words) those
queries are nothing like the claims, and the beta dev chose there raised the SciFact BiLSTM's hub from 17.3% to 21.3%
(results/unknown_words_lstm.md). A bank of the collection's own claims scores documents as the claims will.

Each stage searches the other dataset's collection at its kind's search defaults (configs/<kind>_student.py: the
calibration and unk_drop chosen before), with the penalty from a bank of that collection's dev claims (texts only).
k and beta are chosen on dev by cross-fitting, so no dev claim is scored against a bank holding it: the bank is one
half of the dev claims (averaged over their k / 2 best, the same share of the bank as k of the whole dev set) and the
other half is searched, both ways, and the two halves' nDCG@10 and hub shares averaged. One (k, beta) per student
kind, over its stages of both directions, by hubness.choose_bank: among the pairs within a point of the best mean dev
nDCG@10, the best of those whose mean dev hub is at most 5% (the issue's ceiling), else the smallest mean dev hub.
Test is then searched with the whole dev set as the bank, at that k and beta, as mode=evaluate and
`mode=search --config.search.hub_bank=dev` do.

Why k too: with a few best queries the penalty is noisy (a title that happens to score high against ten claims loses
as much as one that scores high against every claim), and at k = 10 the SciFact CNN's hubs on FEVER-titles stayed
above the ceiling at every beta.
"""

from __future__ import annotations

import importlib
import json
import shlex
import sys
from pathlib import Path

import ml_collections
import numpy as np
from absl import app, flags

from experiments import ablation, calibration as calibration_experiment, reproduce, search_grid
from kd_jax import calibration, collection_eval, hubness, search, sharding
from kd_jax.data import datasets
from kd_jax.modes import stage

STAGES = search_grid.STAGES + ("fever/cnn_student", "fever/lstm_student")
BETAS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5)
KS = (10, 20, 50, 100)
KINDS = {"cnn": "CNN", "lstm": "BiLSTM"}


def stage_rows(stage_dir: Path, transfer_claims: int, betas=BETAS, ks=KS, seed: int = 0) -> dict:
  """One student on the other dataset's collection: {"rows": {k: {beta: {"dev": {ndcg@10, hub} (cross-fitted means),
  "test": {ndcg@10, recall@100, hub}}}}} with the claim bank at each k (the best bank queries a document's penalty
  averages on test's whole-dev bank; k / 2 on the cross-fitted half banks) and beta."""
  cfg = ml_collections.ConfigDict(json.loads((stage_dir / "config.json").read_text()))
  mesh = sharding.make_mesh(1, 1)
  built, params, inputs = stage.student(cfg, stage_dir, mesh)
  kind = search_grid.stage_kind(stage_dir)
  cal = calibration.of(importlib.import_module(f"configs.{kind}_student").get_config(""), own=False)
  other = ablation.OTHER[cfg.data.name]
  src, index = calibration_experiment.stored_index(stage_dir, cfg, built, params, inputs, other,
                                                   transfer_claims if other == "fever_titles" else 0, mesh)
  p = cal.params(params)
  texts = [text for _, text in src.documents()]
  doc_vecs = search.encode_docs(built, p, inputs.doc_words(texts), mesh) if cal.encodes else index.read()[0]
  docs = np.asarray(cal.docs(built, doc_vecs), np.float32)
  doc_ids = src.collection().ids
  def encode(claims: datasets.ClaimSet) -> np.ndarray:
    return cal.claims(built, inputs, search.encode_claims(built, p, inputs.claim_words(claims.texts), mesh))
  dev, test = src.claims("dev"), src.claims("test")
  dev_vecs, test_vecs = encode(dev), encode(test)
  halves = np.array_split(np.random.default_rng(seed).permutation(len(dev.ids)), 2)

  def figures(bias, claims, claim_vecs) -> dict:
    f = collection_eval.corrected_figures(built, p, claim_vecs, docs, doc_ids, claims, bias, mesh, {})
    return {"ndcg@10": f["full_collection"]["ndcg@10"], "recall@100": f["full_collection"]["recall@100"],
            "hub": f["hub"]["max_share"]}

  rows = {}
  for k in ks:
    half_penalty = [hubness.claims_penalty(built, p, dev_vecs[h], docs, max(1, k // 2)) for h in halves]
    full_penalty = hubness.claims_penalty(built, p, dev_vecs, docs, k)
    for beta in betas:
      crossed = [figures(beta * half_penalty[a], dev.take(halves[1 - a]), dev_vecs[halves[1 - a]]) for a in (0, 1)]
      rows.setdefault(str(k), {})[f"{beta:g}"] = {
          "dev": {m: float(np.mean([c[m] for c in crossed])) for m in ("ndcg@10", "hub")},
          "test": figures(beta * full_penalty, test, test_vecs)}
  return {"kind": kind, "trained_on": cfg.data.name, "other": other, "calibration": cal.settings(),
          "bank_claims": len(dev.ids), "test_claims": len(test.ids), "rows": rows}


def choose(stages: dict, betas=BETAS, ks=KS) -> dict:
  """Per student kind: the mean cross-fitted dev (nDCG@10, hub) over its stages at each k and beta, and the (k, beta)
  hubness.choose_bank picks from them (choose_beta's rule over every pair; ties to the smaller beta, then k)."""
  out = {}
  for kind in sorted({st["kind"] for st in stages.values()}):
    sts = [st for st in stages.values() if st["kind"] == kind]
    dev = {str(k): {b: tuple(float(np.mean([st["rows"][str(k)][f"{b:g}"]["dev"][m] for st in sts]))
                             for m in ("ndcg@10", "hub")) for b in betas} for k in ks}
    k, beta = hubness.choose_bank(dev, hubness.MAX_HUB)
    out[kind] = {"k": int(k), "beta": beta, "stages": len(sts),
                 "dev": {kk: {f"{b:g}": {"ndcg@10": v[0], "hub": v[1]} for b, v in curve.items()}
                         for kk, curve in dev.items()}}
  return out


def render(results: dict) -> str:
  c, betas, ks = results["chosen"], results["betas"], results["ks"]
  fmt = lambda xs: f"{np.mean(xs):.3f} ± {np.std(xs):.3f}" if len(xs) > 1 else f"{xs[0]:.3f}"  # noqa: E731
  pct = lambda xs: f"{100 * np.mean(xs):.1f}%" + (f" (max {100 * max(xs):.1f}%)" if len(xs) > 1 else "")  # noqa: E731
  lines = ["## The hub correction with a bank of real claims", "",
           f"From `{results['command']}` (kd_jax/hubness.py, `search.hub_bank`): each student searches the other "
           "dataset's collection at its kind's search defaults, each document lowered by beta x its mean score over "
           "its k best queries of a bank made of that collection's dev claims (texts only), instead of its documents "
           "read as claims. k and beta are chosen per student kind on dev, cross-fitted (the bank one half of the dev "
           "claims, averaged over its k / 2 best, the other half searched, both ways): among the (k, beta) within a "
           "point of the best mean dev nDCG@10, the best of those whose mean dev hub is at most "
           f"{100 * hubness.MAX_HUB:g}%, else the smallest mean dev hub (hubness.choose_bank). "
           + ", ".join(f"**{KINDS[kind]}: k {v['k']}, beta {v['beta']:g}**" for kind, v in c.items())
           + " (`search.hub_bank_k` and `search.hub_bank_beta` of configs/<kind>_student.py). Test is searched with "
           "the whole dev set as the bank, as mode=evaluate reports it and `mode=search --config.search.hub_bank=dev` "
           "searches.", "",
           "Mean dev over each kind's stages (nDCG@10 / hub), by k and beta:", "",
           "| kind (stages) | k | " + " | ".join(f"{b:g}" for b in betas) + " |", "|---|---:|" + "---:|" * len(betas)]
  for kind, v in c.items():
    for k in ks:
      dev = v["dev"][str(k)]
      lines.append(f"| {KINDS[kind]} ({v['stages']}) | {k}{' (chosen)' if k == v['k'] else ''} | " + " | ".join(
          f"{dev[f'{b:g}']['ndcg@10']:.3f} / {100 * dev[f'{b:g}']['hub']:.1f}%" for b in betas) + " |")
  lines += ["", "Test, mean ± std over seeds (whole collection; hub: the largest share of test claims with one "
            "document in their top 10; with several seeds, the worst seed's in brackets):", "",
            "| stage (seeds), searching | k, beta | test nDCG@10 | R@100 | hub |", "|---|---:|---:|---:|---:|"]
  for group, names in _groups(results["stages"]).items():
    sts = [results["stages"][n] for n in names]
    chosen = c[sts[0]["kind"]]
    for k, b, label in ((ks[0], 0.0, "no correction"), (chosen["k"], chosen["beta"], "chosen")):
      r = lambda m: [st["rows"][str(k)][f"{b:g}"]["test"][m] for st in sts]  # noqa: E731
      setting = "—" if not b else f"{k}, {b:g}"
      lines.append(f"| {group} ({len(sts)}), {sts[0]['other']} ({sts[0]['test_claims']} claims, bank of "
                   f"{sts[0]['bank_claims']}) | {setting} ({label}) | {fmt(r('ndcg@10'))} | {fmt(r('recall@100'))} | "
                   f"{pct(r('hub'))} |")
  return "\n".join(lines) + "\n"


def _groups(stages: dict) -> dict[str, list[str]]:
  out: dict[str, list[str]] = {}
  for name, st in stages.items():
    out.setdefault(f"{st['trained_on']}: {search_grid.family(name)}", []).append(name)
  return out


def plot(results: dict, out: Path) -> None:
  """claim_bank.png: mean dev nDCG@10 and dev hub share against beta, per student kind and k."""
  plt = reproduce.pyplot()
  fig, axes = plt.subplots(1, 2, figsize=(11, 4))
  betas = results["betas"]
  for kind, v in results["chosen"].items():
    for k in results["ks"]:
      dev = v["dev"][str(k)]
      style = "-" if kind == "cnn" else "--"
      for ax, metric, scale in zip(axes, ("ndcg@10", "hub"), (1, 100)):
        ax.plot(betas, [scale * dev[f"{b:g}"][metric] for b in betas], "o" + style, ms=3,
                lw=2.5 if k == v["k"] else 1, label=f"{KINDS[kind]}, k {k}" + (" (chosen)" if k == v["k"] else ""))
  axes[1].axhline(100 * hubness.MAX_HUB, color="k", ls=":", label=f"ceiling ({100 * hubness.MAX_HUB:g}%)")
  axes[1].set_ylim(0, 25)  # past beta 1 the hub share climbs to ~50%: off the chart
  for ax, label in zip(axes, ("mean dev nDCG@10 (cross-fitted)", "mean dev hub share, %")):
    ax.set_xlabel("beta")
    ax.set_ylabel(label)
    ax.legend(fontsize=6, ncol=2)
  fig.suptitle("Hub correction, bank of the searched collection's dev claims (other collection); thick: chosen k")
  fig.tight_layout()
  fig.savefig(out / "claim_bank.png", dpi=110)


def main(argv):
  del argv
  f = flags.FLAGS
  stages = calibration_experiment.finished_stages(f.workdir, f.stages, STAGES, f.seeds)
  results = {"command": "python -m experiments.claim_bank " + shlex.join(sys.argv[1:]), "betas": list(BETAS),
             "ks": list(KS), "max_hub": hubness.MAX_HUB, "stages": {}}
  for st in stages:
    results["stages"][st] = stage_rows(Path(f.workdir) / st, f.transfer_claims)
    print(st, "done", flush=True)
  results["chosen"] = choose(results["stages"])
  calibration_experiment.publish(Path(f.results_dir), "claim_bank", results, render, plot)


if __name__ == "__main__":
  calibration_experiment.define_stage_flags("claim_bank")
  app.run(main)

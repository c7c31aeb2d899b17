"""Choosing the lexical channel's layout (`model.lexical_private`, kd_jax/models/lexical.py) on dev. Writes
results/lexical_layout.json, .md (a section of RESULTS.md) and .png:

  KD_JAX_DATA_DIR=../shared/data python -m experiments.lexical_layout --workdir=workdir

Why: the lexical channel hashes every word id to one of 4,096 buckets. A document word that shares its bucket with a
word found in a quarter of all claims matches all those claims: "Grown Ups 2" was a hub of the FEVER-titles students
at home because "ups" hashes where "was" does. With `private` > 0 the vocabulary's `private` most frequent ids (the
vocabulary ranks words by frequency) get a bucket each and every other id hashes into the rest, so a common word
shares its bucket with no other word, at the price of more collisions among rare words. The buckets are a layout, not
parameters, so the trained students are searched at each layout without training again.

Each stage searches as `mode=search` does, at its kind's search defaults (configs/<kind>_student.py):
- at home, calibrated, with the hub correction's bank and beta chosen on the stage's dev claims at that layout
  (hubness.choose_bank over the documents' bank and the training claims' bank, as mode=evaluate chooses them by
  default: the hub share over dev's claims alone, without `hub_norm.unlabelled_claims`);
- on the other dataset's collection, calibrated, with a bank of that collection's dev claims at the kind's
  `search.hub_bank_k` and `search.hub_bank_beta`; dev cross-fitted as experiments/claim_bank.py does (one half of the
  dev claims the bank, averaged over its k / 2 best, the other half searched, both ways).

One layout per student kind, chosen by hubness.choose_beta's rule over the layouts' dev figures: the mean over the
kind's stage-collection groups (seeds averaged within a group) of dev nDCG@10 and of dev hub share: among the layouts
within a point of the best, the best of those at or under 5%, else the smallest hub. The mean, not the worst group:
the FEVER-titles students' dev on SciFact is 75 claims searched in halves, where one claim is 2.7 points of hub share
and the worst group's hub did not move with the layout (6.7% at every layout for the CNN's seed 0).
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
from kd_jax import calibration, collection, collection_eval, hubness, hybrid, search, sharding
from kd_jax.data import datasets, prepare
from kd_jax.modes import stage

# 3,072 was tried on the FEVER-titles CNN's seed 0 and dropped for time: its dev figures equalled 2,048's, and it leaves
# 1,024 buckets for every other word.
PRIVATE = (0, 1024, 2048)
# Student + BM25 at home, the weight chosen on dev at each layout; the student as trained (not calibrated), as the
# main command's fusion figures are (calibrated students fuse no better). Only for SciFact's stages, where the issue's
# fusion target is (FEVER-titles' stage, seed 0: 0.930 zcoverage at every layout).
FUSIONS = ("zscore", "zcoverage")
FUSION_DATASETS = ("scifact",)
KINDS = {"cnn": "CNN", "lstm": "BiLSTM"}


def stage_names(seeds) -> list[str]:
  """The SciFact stages experiments/search_grid.py reads and the FEVER-titles students (seed 0 unsuffixed)."""
  fever = [f"fever/{kind}_student" + (f"_s{s}" if int(s) else "") for kind in KINDS for s in seeds]
  return [p.format(seed=s) for p in search_grid.STAGES for s in seeds] + fever


class Searcher:
  """One stage at one layout, searching one collection calibrated as mode=search does: its documents and claims
  encoded once, then (nDCG@10, R@100, hub) for any claims and any per-document bias."""

  def __init__(self, stage_dir: Path, private: int, name: str, own: bool, transfer_claims: int, mesh,
               calibrated: bool = True):
    cfg = ml_collections.ConfigDict(json.loads((stage_dir / "config.json").read_text()))
    cfg.model.lexical_private = private
    self.cfg, self.mesh, self.own = cfg, mesh, own
    self.built, params, self.inputs = stage.student(cfg, stage_dir, mesh)
    self.kind = search_grid.stage_kind(stage_dir)
    self.defaults = importlib.import_module(f"configs.{self.kind}_student").get_config("")
    self.cal = calibration.of(self.defaults, own=own) if calibrated else calibration.Calibration()
    self.params = self.cal.params(params)
    c = ml_collections.ConfigDict(cfg.to_dict())
    if own:
      self.source = collection.Source(name=cfg.data.name, path=None, data_cfg=c.data)
    else:
      c.collection.update(path="", dataset=name, name=name, max_claims=transfer_claims if name == "fever_titles" else 0)
      self.source = collection.from_config(c)
    self.texts = [text for _, text in self.source.documents()]
    vecs = search.encode_docs(self.built, self.params, self.inputs.doc_words(self.texts), mesh)
    self.docs = np.asarray(self.cal.docs(self.built, vecs), np.float32)
    self.doc_ids = self.source.collection().ids

  def claim_fn(self, vecs) -> np.ndarray:
    return self.cal.claims(self.built, self.inputs, np.asarray(vecs))

  def encode(self, texts: list[str]) -> np.ndarray:
    return self.claim_fn(search.encode_claims(self.built, self.params, self.inputs.claim_words(list(texts)),
                                              self.mesh))

  def figures(self, claims: datasets.ClaimSet, vecs: np.ndarray, bias: np.ndarray) -> dict:
    f = collection_eval.corrected_figures(self.built, self.params, vecs, self.docs, self.doc_ids, claims, bias,
                                          self.mesh, {})
    return {"ndcg@10": f["full_collection"]["ndcg@10"], "recall@100": f["full_collection"]["recall@100"],
            "hub": f["hub"]["max_share"]}


def home_row(stage_dir: Path, private: int, mesh) -> dict:
  """At home: the (bank, beta) dev chooses at this layout, and dev and test at that choice and uncorrected."""
  s = Searcher(stage_dir, private, "", True, 0, mesh)
  h = collection_eval.hub_norm_settings(s.defaults)
  words = lambda rows: s.inputs.claim_words([s.texts[int(r)] for r in rows])  # noqa: E731
  penalties = {"documents": hubness.collection_penalty(s.built, s.params, s.docs, h, words, mesh, s.claim_fn),
               "train": hubness.claims_penalty(s.built, s.params, s.encode(prepare.training_claims(s.cfg.data)),
                                               s.docs, int(h["k"]))}
  sets = {split: s.source.claims(split) for split in ("dev", "test")}
  vecs = {split: s.encode(c.texts) for split, c in sets.items()}
  curves = {bank: {b: s.figures(sets["dev"], vecs["dev"], b * pen) for b in hubness.BETAS}
            for bank, pen in penalties.items()}
  bank, beta = hubness.choose_bank({bank: {b: (f["ndcg@10"], f["hub"]) for b, f in c.items()}
                                    for bank, c in curves.items()})
  return {"fusion": fusion_figures(stage_dir, private, sets, mesh) if s.cfg.data.name in FUSION_DATASETS else {},
          "searched": s.source.name, "kind": s.kind, "bank": bank, "beta": beta,
          "dev": curves[bank][beta], "dev_uncorrected": curves["documents"][0.0],
          "test": s.figures(sets["test"], vecs["test"], beta * penalties[bank]),
          "test_uncorrected": s.figures(sets["test"], vecs["test"], np.zeros(len(s.docs))),
          "claims": {split: len(c.ids) for split, c in sets.items()}}


def fusion_figures(stage_dir: Path, private: int, sets: dict, mesh) -> dict:
  """The student as trained + BM25 at home, per FUSIONS method: the weight chosen on dev, dev and test nDCG@10."""
  raw = Searcher(stage_dir, private, "", True, 0, mesh, calibrated=False)
  pools = {split: hybrid.full_collection_pool(raw.built, raw.params, raw.encode(c.texts), raw.docs, c.texts, c.ids,
                                              c.qrels, raw.source.bm25, mesh, 100,
                                              *collection_eval.reach_of(raw.inputs, c.texts, raw.source.collection()))
           for split, c in sets.items()}
  fused = {m: hybrid.choose(lambda w, m=m: hybrid.full_collection_metrics(pools["dev"], m, w, raw.doc_ids),
                            lambda w, m=m: hybrid.full_collection_metrics(pools["test"], m, w, raw.doc_ids))
           for m in FUSIONS}
  return {m: {"weight": f["weight"], "dev_ndcg@10": f["dev_ndcg@10"], "test_ndcg@10": f["test"]["ndcg@10"]}
          for m, f in fused.items()}


def other_row(stage_dir: Path, private: int, transfer_claims: int, mesh, seed: int = 0) -> dict:
  """On the other dataset's collection with its dev claims as the bank, at the kind's (k, beta)."""
  cfg = json.loads((stage_dir / "config.json").read_text())
  s = Searcher(stage_dir, private, ablation.OTHER[cfg["data"]["name"]], False, transfer_claims, mesh)
  k, beta = collection_eval.bank_k(s.defaults), float(s.defaults.search.hub_bank_beta)
  dev, test = s.source.claims("dev"), s.source.claims("test")
  dev_vecs, test_vecs = s.encode(dev.texts), s.encode(test.texts)
  halves = np.array_split(np.random.default_rng(seed).permutation(len(dev.ids)), 2)
  crossed = [s.figures(dev.take(halves[1 - a]), dev_vecs[halves[1 - a]],
                       beta * hubness.claims_penalty(s.built, s.params, dev_vecs[halves[a]], s.docs, max(1, k // 2)))
             for a in (0, 1)]
  return {"searched": s.source.name, "kind": s.kind, "k": k, "beta": beta,
          "dev": {m: float(np.mean([c[m] for c in crossed])) for m in ("ndcg@10", "recall@100", "hub")},
          "test": s.figures(test, test_vecs, beta * hubness.claims_penalty(s.built, s.params, dev_vecs, s.docs, k)),
          "claims": {"bank": len(dev.ids), "test": len(test.ids)}}


def group(name: str, row: dict) -> str:
  """The stage-collection group a row is averaged in: the recipe (seeds together) and the collection searched."""
  return f"{search_grid.family(name)} -> {row['searched']}"


def members_of(results: dict) -> dict[str, list[tuple[str, str]]]:
  """{group: [(stage, "home" | "other"), ...]}: the rows the tables and the plot average together."""
  groups: dict[str, list[tuple[str, str]]] = {}
  for name, st in results["stages"].items():
    for where, row in st["0"].items():
      groups.setdefault(group(name, row), []).append((name, where))
  return groups


def choose(stages: dict, layouts=PRIVATE) -> dict:
  """Per kind: per layout the mean over its groups of dev nDCG@10 and dev hub (each group's seeds averaged first), and
  the layout hubness.choose_beta's rule picks (ties to the smaller layout)."""
  out = {}
  for kind in sorted({r["kind"] for st in stages.values() for r in st["0"].values()}):
    dev = {}
    for p in layouts:
      groups: dict[str, list[dict]] = {}
      for name, st in stages.items():
        for row in st[str(p)].values():
          if row["kind"] == kind:
            groups.setdefault(group(name, row), []).append(row["dev"])
      ndcg = float(np.mean([np.mean([d["ndcg@10"] for d in g]) for g in groups.values()]))
      hub = float(np.mean([np.mean([d["hub"] for d in g]) for g in groups.values()]))
      dev[p] = (ndcg, hub)
    chosen = hubness.choose_beta(dev)  # the rule over any ordered settings: here layouts, mildest (0) first
    out[kind] = {"private": int(chosen), "dev": {str(p): {"ndcg@10": v[0], "hub": v[1]}
                                                 for p, v in dev.items()}}
  return out


def render(results: dict) -> str:
  layouts, c = results["private"], results["chosen"]
  fmt = lambda xs: f"{np.mean(xs):.3f} ± {np.std(xs):.3f}" if len(xs) > 1 else f"{xs[0]:.3f}"  # noqa: E731
  def pct(xs):
    return f"{100 * np.mean(xs):.1f}% ({100 * max(xs):.1f}%)" if len(xs) > 1 else f"{100 * xs[0]:.1f}%"
  lines = ["## The lexical channel's layout: common words a bucket each", "",
           f"From `{results['command']}` (`model.lexical_private`, kd_jax/models/lexical.py): the vocabulary's "
           "`private` most frequent words get a lexical bucket each and every other word hashes into the rest, so no "
           "common claim word shares its bucket with a document's word. A layout, not parameters: the trained "
           "students are searched at each. Each stage searches as mode=search does: at home with the hub "
           "correction's bank and beta chosen on its dev claims at that layout, elsewhere with the other "
           "collection's dev claims as the bank at the kind's k and beta (dev cross-fitted). One layout per kind, "
           "by choose_beta's rule over the mean dev nDCG@10 and mean dev hub of the kind's stage-collection groups: "
           + ", ".join(f"**{KINDS[k]}: {v['private']}**" for k, v in c.items()) + ".", "",
           "Dev, per kind: mean nDCG@10 / mean hub over its stage-collection groups, by layout:", "",
           "| kind | " + " | ".join(f"private {p}" for p in layouts) + " |", "|---|" + "---:|" * len(layouts)]
  for kind, v in c.items():
    lines.append(f"| {KINDS[kind]} | " + " | ".join(
        f"{v['dev'][str(p)]['ndcg@10']:.3f} / {100 * v['dev'][str(p)]['hub']:.1f}%"
        + (" (chosen)" if p == v["private"] else "") for p in layouts) + " |")
  lines += ["", "Test, mean ± std over seeds (nDCG@10; hub: mean over seeds, the worst seed in brackets), searched as "
            "mode=search searches:", "",
            "| stages (seeds) -> collection | " + " | ".join(f"private {p}" for p in layouts) + " |",
            "|---|" + "---:|" * len(layouts)]
  groups = members_of(results)
  for g, members in groups.items():
    cells = []
    for p in layouts:
      rows = [results["stages"][n][str(p)][w]["test"] for n, w in members]
      cells.append(f"{fmt([r['ndcg@10'] for r in rows])}, hub {pct([r['hub'] for r in rows])}")
    lines.append(f"| {g} ({len(members)}) | " + " | ".join(cells) + " |")
  fused = [(g, [n for n, w in members if w == "home" and results["stages"][n]["0"]["home"]["fusion"]])
           for g, members in groups.items()]
  fused = [(g, homes) for g, homes in fused if homes]
  if fused:
    lines += ["", "At home, the student (as trained) + BM25, the weight chosen on dev at each layout (test nDCG@10, "
              "mean ± std over seeds):", "", "| stages (seeds), fusion | " + " | ".join(f"private {p}" for p in layouts)
              + " |", "|---|" + "---:|" * len(layouts)]
  for g, homes in fused:
    for m in FUSIONS:
      lines.append(f"| {g} ({len(homes)}), {m} | " + " | ".join(
          fmt([results["stages"][n][str(p)]["home"]["fusion"][m]["test_ndcg@10"] for n in homes]) for p in layouts)
          + " |")
  return "\n".join(lines) + "\n"


def plot(results: dict, out: Path) -> None:
  """lexical_layout.png: per group, mean test hub against the layout (the dev choice marked per kind)."""
  plt = reproduce.pyplot()
  fig, axes = plt.subplots(1, 2, figsize=(11, 4))
  layouts = results["private"]
  groups = members_of(results)
  for g, members in groups.items():
    for ax, metric, scale in zip(axes, ("ndcg@10", "hub"), (1, 100)):
      ax.plot(layouts, [scale * np.mean([results["stages"][n][str(p)][w]["test"][metric] for n, w in members])
                        for p in layouts], "o-", ms=3, label=g)
  axes[1].axhline(100 * hubness.MAX_HUB, color="k", ls=":", label=f"ceiling ({100 * hubness.MAX_HUB:g}%)")
  for ax, label in zip(axes, ("mean test nDCG@10", "mean test hub share, %")):
    ax.set_xlabel("lexical_private (most frequent words with a bucket each)")
    ax.set_ylabel(label)
    ax.legend(fontsize=6)
  fig.suptitle("Lexical layout, searched as mode=search searches (test; the layout is chosen on dev)")
  fig.tight_layout()
  fig.savefig(out / "lexical_layout.png", dpi=110)


def main(argv):
  del argv
  f = flags.FLAGS
  names = calibration_experiment.finished_stages(f.workdir, f.stages or stage_names(f.seeds), (), f.seeds)
  path = Path(f.results_dir) / "lexical_layout.json"
  command = "python -m experiments.lexical_layout " + shlex.join(sys.argv[1:])
  # Rows already measured by an interrupted run of the same command are kept: each stage's is minutes.
  done = json.loads(path.read_text()) if path.is_file() else {}
  results = {"command": command, "private": list(PRIVATE), "max_hub": hubness.MAX_HUB,
             "stages": done.get("stages", {}) if done.get("private") == list(PRIVATE) else {}}
  mesh = sharding.make_mesh(1, 1)
  for name in names:
    d = Path(f.workdir) / name
    if name in results["stages"]:
      continue
    rows = {}
    for p in PRIVATE:
      rows[str(p)] = {"home": home_row(d, p, mesh), "other": other_row(d, p, f.transfer_claims, mesh)}
      print(name, "private", p, {where: {split: (round(r[split]["ndcg@10"], 4), round(r[split]["hub"], 4))
                                        for split in ("dev", "test")} for where, r in rows[str(p)].items()}, flush=True)
    results["stages"][name] = rows
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**results, "partial": True}, indent=2))
  results["stages"] = {n: results["stages"][n] for n in names}
  results["chosen"] = choose(results["stages"])
  calibration_experiment.publish(Path(f.results_dir), "lexical_layout", results, render, plot)


if __name__ == "__main__":
  calibration_experiment.define_stage_flags("lexical_layout")
  app.run(main)

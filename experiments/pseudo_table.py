"""Pseudo-claim students and student + BM25 hybrids, measured: `results/pseudo.json`, a section of RESULTS.md, and
`pseudo_claims.png` (full-collection nDCG@10 against the number of pseudo-claims).

Stage folders are the reproduction's (`<workdir>/<dataset>/<student>_T.._a.._[p<count>_]s<seed>`): the count-0
students are the reproduction's distilled students, reused when present.
"""

from __future__ import annotations

import json
import logging
import shlex
import sys
import time
from pathlib import Path

import jax
import numpy as np

from experiments import reproduce, results_md
from kd_jax import atomic, multihost
from kd_jax.data import prepare
from kd_jax.models import build as build_lib
from kd_jax.models import registry
from kd_jax.models.size import count_params



def pseudo_settings(table, dataset: str, count: int) -> dict:
  """`distill.pseudo` for `count` pseudo-claims under the table's settings (`config.pseudo_table`); the same settings
  name the same stored pseudo-claim set, so every user of them shares it."""
  return dict(count=count, fraction=table.fraction, seed=table.seed, max_overlap=table.max_overlap,
              min_words=table.min_words.get(dataset, 5), max_words=table.max_words)


def student_config(config, dataset: str, kind: str, count: int, seed: int):
  r = config.reproduce
  c = reproduce.student_config(config, dataset, kind, *reproduce.distill_setting(r, kind), seed)
  if count:
    c.name = c.name.replace(f"_s{seed}", f"_p{count}_s{seed}")
    c.distill.pseudo.update(pseudo_settings(config.pseudo_table, dataset, count))
  return c


def _summary(x: dict) -> dict:
  """What the table needs from one eval_test.json."""
  out = {"params": x["params"], "rerank": x["rerank"], "full_collection": x["full_collection"]}
  for m, h in x.get("hybrid", {}).items():
    out[f"hybrid_{m}"] = {"rerank": h["rerank"]["test"], "full_collection": h["full_collection"]["test"],
                          "weight_rerank": h["rerank"]["weight"], "weight_full": h["full_collection"]["weight"]}
  return out


def run(config, workdir: str) -> dict:
  p = config.pseudo_table
  root = Path(workdir)
  out = Path(config.reproduce.results_dir)
  path = out / "pseudo.json"
  results = {"config": config.to_dict(), "datasets": {}}
  started = time.time()
  for dataset in p.datasets:
    wd = root / dataset
    counts = sorted(set(p.counts[dataset]))
    runs: dict[str, dict[int, list[dict]]] = {}
    for i, kind in enumerate(config.reproduce.students):
      for count in counts if i == 0 else sorted({counts[0], counts[-1]}):
        for seed in config.reproduce.seeds:
          cfg = student_config(config, dataset, kind, count, seed)
          x = reproduce.eval_stage(cfg, wd)  # evaluated again if made before a fusion method existed
          runs.setdefault(kind, {}).setdefault(count, []).append(_summary(x))
    tcfg = reproduce.teacher_config(config, dataset)
    results["datasets"][dataset] = {"runs": runs, "bm25": reproduce.bm25_full_collection(tcfg.data),
                                    "teacher_params": _teacher_params(config, dataset)}
    # Written after every dataset: an interrupted table keeps what it measured.
    results["wall_minutes"] = round((time.time() - started) / 60, 1)
    results["command"] = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    multihost.primary_writes(f"{path}", lambda: _write_json(path, results))

  def write_report():
    write_section(out)
    plot(results, out)
  multihost.primary_writes(f"the report in {out}", write_report)
  logging.info("Wrote %s and %s", path, out / "RESULTS.md")
  return results


def _write_json(path: Path, results: dict) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  atomic.write_text(path, json.dumps(results, indent=2, default=float))


def _teacher_params(config, dataset: str) -> int:
  tcfg = reproduce.teacher_config(config, dataset)
  built = build_lib.build(tcfg.model, prepare.prepare(tcfg.data))
  return count_params(jax.eval_shape(built.init, jax.random.key(0)))


def _steps(config: dict) -> str:
  train = {k: config["students"][k]["train"] for k in config["reproduce"]["students"]}
  return ", ".join(f"{registry.display_name(k)} {t['steps']} x {t['batch_size']} claims" for k, t in train.items())


def _per_dataset(x) -> str:
  return ", ".join(f"{v} ({k})" for k, v in x.items()) if isinstance(x, dict) else str(x)


def write_section(out: Path) -> None:
  """results/pseudo.md from pseudo.json, then RESULTS.md again."""
  results = json.loads((out / "pseudo.json").read_text())
  atomic.write_text(out / "pseudo.md", render(results, results["config"]))
  results_md.write(out)


def render(results: dict, config: dict) -> str:
  p = config["pseudo_table"]
  lines = ["## Beyond the labelled claims: pseudo-claims and student + BM25 hybrids", "",
           f"Produced by `{results['command']}` ({results['wall_minutes']} min of stages not already finished). "
           "Pseudo-claims are collection sentences (titles and body sentences of at least "
           f"{_per_dataset(p['min_words'])} and at most {p['max_words']} words; any sentence holding >= "
           f"{p['max_overlap']:.0%} of a dev or test claim's words is banned), with "
           f"BM25 top-{config['data']['num_candidates']} lists scored by the teacher; they make up "
           f"{p['fraction']:.0%} of training examples and carry only the KL term. Each student trains the same steps "
           f"at every count ({_steps(config)}), so more pseudo-claims means other data, not more compute. Hybrids fuse "
           "the student with BM25 (linear: min-max normalised; RRF: k=60), the student's weight chosen on dev "
           "(grid 0, 0.1, .., 1) per seed; the weight column gives the chosen weights. Test split, means ± std over "
           f"seeds {tuple(config['reproduce']['seeds'])}. {reproduce.teacher_desc(config)}", ""]
  for dataset, d in results["datasets"].items():
    bm = d["bm25"]["full_collection"]
    lines += [f"### {dataset}", "", "| model | pseudo-claims | rerank nDCG@10 | full nDCG@10 | full R@100 | "
              "weight (full) | teacher / student params |", "|---|---:|---:|---:|---:|---|---:|",
              f"| BM25 (bm25s, stemmed) | — | — | {bm['ndcg@10']:.3f} | {bm['recall@100']:.3f} | — | — |"]
    for kind, by_count in d["runs"].items():
      for count, xs in by_count.items():
        ratio = f"{d['teacher_params'] / xs[0]['params']:.1f}x"
        name = registry.display_name(kind)
        for variant, label in (("", name), ("hybrid_linear", f"{name} + BM25 (linear)"),
                               ("hybrid_rrf", f"{name} + BM25 (RRF)")):
          if variant and variant not in xs[0]:
            continue
          ys = [x[variant] if variant else x for x in xs]
          weights = "—" if not variant else ", ".join(f"{x[variant]['weight_full']:g}" for x in xs)
          figures = [reproduce.mean_std([y[setting][m] for y in ys])
                     for setting, m in (("rerank", "ndcg@10"), ("full_collection", "ndcg@10"),
                                        ("full_collection", "recall@100"))]
          lines.append(f"| {label} | {int(count):,} | {' | '.join(figures)} | {weights} | {ratio} |")
    lines.append("")
  lines += ["![pseudo-claims](pseudo_claims.png)", ""]
  return "\n".join(lines)


def plot(results: dict, out: Path) -> None:
  fig, panels = reproduce.dataset_panels(results)
  for ax, dataset, d in panels:
    for kind, by_count in d["runs"].items():
      xs = sorted(by_count, key=int)
      name = registry.display_name(kind)
      for variant, style, label in (("", "o-", name), ("hybrid_linear", "s--", f"{name} + BM25")):
        if variant and variant not in by_count[xs[0]][0]:
          continue
        vals = [[(x[variant] if variant else x)["full_collection"]["ndcg@10"] for x in by_count[c]] for c in xs]
        ax.errorbar([int(c) for c in xs], [np.mean(v) for v in vals], yerr=[np.std(v) for v in vals], fmt=style,
                    capsize=3, label=label)
    ax.axhline(d["bm25"]["full_collection"]["ndcg@10"], color="k", ls=":", label="BM25")
    ax.set_xlabel("pseudo-claims")
    ax.set_ylabel("test nDCG@10, full collection")
    ax.set_title(dataset)
    ax.legend()
  fig.tight_layout()
  fig.savefig(out / "pseudo_claims.png", dpi=110)

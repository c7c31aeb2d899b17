"""Does distillation transfer? The reproduction's students (both kinds, hard labels and distilled, every seed)
evaluated zero-shot on the other dataset's collection: SciFact-trained on FEVER-titles, FEVER-titles-trained on
SciFact.

  KD_JAX_DATA_DIR=../shared/data python -m benchmarks.transfer_table --workdir=workdir/reproduce \
      --config.reproduce.teacher_dirs.scifact=workdir/teacher

Reads the finished stages of `python run.py --config=configs/reproduce.py` (same flags) and runs mode=evaluate with
`collection.dataset` set on each (<stage>/eval_<target>.json; finished ones are reused). Nothing is tuned on the
target: the fusions use each stage's own dev-chosen weight. Writes results/transfer.json, results/transfer.md and
RESULTS.md again (which includes it).
"""

import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
from absl import app, flags
from ml_collections import config_flags

from experiments import reproduce, results_md
from kd_jax import collection, collection_eval
from kd_jax.modes import evaluate
from kd_jax.models import registry

_CONFIG = config_flags.DEFINE_config_file("config", "configs/reproduce.py", "The reproduction config.")
_WORKDIR = flags.DEFINE_string("workdir", "workdir/reproduce", "The reproduction's workdir.")
_CLAIMS = flags.DEFINE_integer("max_claims", 1500, "Test claims of the target (first N; FEVER-titles has 6,666).")

TARGETS = {"scifact": "fever_titles", "fever_titles": "scifact"}


def run(config, workdir: Path, max_claims: int) -> dict:
  r = config.reproduce
  out = {"command": "python -m benchmarks.transfer_table " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
         "max_claims": max_claims, "pairs": {}}
  started = time.time()
  for trained_on in r.datasets:
    target = TARGETS[trained_on]
    rows: dict[str, list[dict]] = {}
    for kind in r.students:
      alpha, temperature = reproduce.distill_setting(r, kind)
      for label, a in (("hard labels only", 0.0), ("distilled", alpha)):
        for seed in r.seeds:
          cfg = reproduce.student_config(config, trained_on, kind, a, temperature, seed)
          stage = workdir / trained_on / cfg.name
          if not (stage / "complete.json").is_file():
            continue  # not trained (e.g. a dataset the reproduction left out)
          cfg.mode = "evaluate"
          cfg.collection.update(dataset=target, name=target, max_claims=max_claims)
          path = stage / f"eval_{target}.json"
          result = json.loads(path.read_text()) if path.is_file() else {}
          if not collection_eval.zero_shot_is_current(result, stage, cfg):
            result = evaluate.evaluate_collection(cfg, str(workdir / trained_on), collection.from_config(cfg))
          rows.setdefault(f"{registry.display_name(kind)} {label}", []).append(result)
    if rows:
      out["pairs"][f"{trained_on} -> {target}"] = rows
  out["wall_minutes"] = round((time.time() - started) / 60, 1)
  return out


def _mean(values) -> str:
  values = [v for v in values if v == v]
  return f"{np.mean(values):.3f} ± {np.std(values):.3f}" if len(values) > 1 else f"{values[0]:.3f}"


def render(results: dict) -> str:
  lines = ["## Transfer: students on the other dataset's collection (zero-shot)", "",
           f"Produced by `{results['command']}`. Means ± std over seeds; whole-collection nDCG@10 on the first "
           f"{results['max_claims']} test claims of the target. Fusions use each stage's own dev-chosen weight "
           "(nothing tuned on the target). Hub: the largest share of claims with one document in the student's "
           "top 10. Hub-corrected: each document less beta x its mean top-10 score over a bank of 2,000 of the "
           "target's own documents read as claims (kd_jax/hubness.py), beta chosen on the stage's own dev set. "
           "Coverage fusion: the student's share scaled by the share of the claim's and the document's words in its "
           "vocabulary (kd_jax/fusion.py). The teacher reranks BM25's top 16 of the target.", ""]
  for pair, rows in results["pairs"].items():
    any_row = next(iter(rows.values()))[0]
    lines += [f"### {pair}", "", f"BM25 alone: {any_row['bm25']['full_collection']['ndcg@10']:.3f}; teacher "
              f"reranking BM25's top {any_row['teacher']['num_candidates']}: "
              f"{any_row['teacher']['rerank']['ndcg@10']:.3f} (BM25's own order of those lists: "
              f"{any_row['teacher']['bm25_rerank']['ndcg@10']:.3f})." if "teacher" in any_row else "", "",
              "| student | alone | alone, hub-corrected | + BM25 linear | + BM25 RRF | + BM25 gated | + BM25 coverage | "
              "gated − BM25 | coverage − BM25 | hub (top 10) | hub, corrected |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, runs in rows.items():
      fc = lambda x: x["full_collection"]["ndcg@10"]  # noqa: E731
      bm25 = [fc(x["bm25"]) for x in runs]
      fused = {m: [fc(x["hybrid"][m]) for x in runs] for m in ("linear", "rrf", "gated", "coverage")}
      lines.append(f"| {name} | {_mean([fc(x['student']) for x in runs])} | "
                   f"{_mean([fc(x['hub_norm']) for x in runs])} | "
                   + " | ".join(_mean(fused[m]) for m in ("linear", "rrf", "gated", "coverage")) + " | "
                   f"{_mean([v - b for v, b in zip(fused['gated'], bm25)])} | "
                   f"{_mean([v - b for v, b in zip(fused['coverage'], bm25)])} | "
                   f"{_mean([x['hub']['max_share'] for x in runs])} | "
                   f"{_mean([x['hub_norm']['hub']['max_share'] for x in runs])} |")
    lines.append("")
  return "\n".join(lines)


def main(argv):
  del argv
  results = run(_CONFIG.value, Path(_WORKDIR.value), _CLAIMS.value)
  out = Path(_CONFIG.value.reproduce.results_dir)
  (out / "transfer.json").write_text(json.dumps(results, indent=2, default=float))
  (out / "transfer.md").write_text(render(results))
  results_md.write(out)
  print(render(results))


if __name__ == "__main__":
  app.run(main)

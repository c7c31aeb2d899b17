"""What the search calibration (kd_jax/calibration.py) costs a search: a finished student's stored index searched with
every test claim of its own collection and of the other dataset's, top 100, as trained and calibrated (the settings
mode=search uses), timed side by side in one process (the two alternate in each round, so load falls on both alike).
Claim encoding is left out: it is the same for both. Writes results/calibration_cost.json and prints a Markdown table.

  KD_JAX_DATA_DIR=../shared/data python -m benchmarks.calibration_cost \\
      --stage=workdir/main_hash/cnn_student+lex4k+oovlex+steps1200_s0 [--rounds=7]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import jax
import ml_collections
import numpy as np

from benchmarks import host
from configs import cnn_student
from experiments import ablation, calibration as calibration_experiment
from kd_jax import atomic, calibration, indexing, search, sharding
from kd_jax.modes import stage as stage_lib

REPO = Path(__file__).resolve().parents[1]


def collection_seconds(stage: Path, cfg, name: str, own: bool, rounds: int, mesh) -> dict:
  built, params, inputs = stage_lib.student(cfg, stage, mesh)
  src, index = calibration_experiment.stored_index(stage, cfg, built, params, inputs, name, 0, mesh)
  doc_vecs, _, _ = index.read()
  claims = search.encode_claims(built, params, inputs.claim_words(src.claims("test").texts), mesh)
  cal = calibration.of(cnn_student.get_config(), own=own)  # the main command's search settings
  docs = indexing.calibrated_docs(index.root, built, doc_vecs, cal)  # norms stored beside the index, as mode=search
  runs = {"as trained": lambda: search.top_k(built, params, claims, doc_vecs, 100, mesh),
          "calibrated": lambda: search.top_k(built, params, cal.claims(built, inputs, claims), docs, 100, mesh)}
  times = {k: [] for k in runs}
  for r in range(rounds + 1):  # the first round compiles
    for k, fn in runs.items():
      start = time.perf_counter()
      fn()
      if r:
        times[k].append(time.perf_counter() - start)
  return {"claims": len(claims), "documents": len(doc_vecs), **cal.settings(),
          **{k: float(np.median(t)) for k, t in times.items()}}


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--stage", required=True, help="A finished student stage folder (lexical channel, dot scores).")
  parser.add_argument("--rounds", type=int, default=7)
  parser.add_argument("--out", default=str(REPO / "results/calibration_cost.json"))
  args = parser.parse_args()
  stage = Path(args.stage)
  cfg = ml_collections.ConfigDict(json.loads((stage / "config.json").read_text()))
  cfg.data.dir = os.environ.get("KD_JAX_DATA_DIR") or str(REPO.parent / "shared" / "data")
  mesh = sharding.make_mesh(1, 1)
  result = {"command": f"python -m benchmarks.calibration_cost --stage={args.stage} --rounds={args.rounds}",
            "cpu": host.cpu_name(), "devices": len(jax.devices()), "load_average": os.getloadavg(),
            "collections": {name: collection_seconds(stage, cfg, name, name == cfg.data.name, args.rounds, mesh)
                            for name in (cfg.data.name, ablation.OTHER[cfg.data.name])}}
  atomic.write_text(Path(args.out), json.dumps(result, indent=2))
  lines = [f"On {result['cpu']} (one JAX device), load average {result['load_average'][0]:.1f}; median of "
           f"{args.rounds} rounds; claims encoded beforehand.", "",
           "| collection | claims x documents | as trained | calibrated | ratio |", "|---|---|---:|---:|---:|"]
  for name, r in result["collections"].items():
    lines.append(f"| {name} ({calibration.describe(r)}) | {r['claims']:,} x "
                 f"{r['documents']:,} | {1000 * r['as trained']:.0f} ms | {1000 * r['calibrated']:.0f} ms | "
                 f"{r['calibrated'] / r['as trained']:.2f}x |")
  print("\n".join(lines))


if __name__ == "__main__":
  main()

"""What the students' extra negatives cost per train step: the same CNN/BiLSTM step on the same SciFact batch, without
and with in-batch and random negatives, timed side by side in one process (variants alternate, so load on the machine
falls on all of them alike). Writes results/negatives_cost.json and prints a Markdown table.

Mined negatives (kd_jax/mined_negatives.py) enter the step exactly as random ones do (the same [B, R] extra
documents), so their step costs what "8 random" costs; on top comes one refresh (encode the collection, search it
with every training claim) per `refresh_every` steps, timed here and spread over 100 steps.

  KD_JAX_DATA_DIR=../shared/data python -m benchmarks.negatives_cost [--steps=20] [--rounds=3]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from benchmarks import host
from configs import cnn_student, lstm_student
from kd_jax import atomic, losses, mined_negatives, sharding, train
from kd_jax.data import datasets, pipeline, prepare
from kd_jax.models import build as build_lib

REPO = Path(__file__).resolve().parents[1]
VARIANTS = {"candidates only": (False, 0), "in-batch": (True, 0), "8 random": (False, 8),
            "in-batch + 8 random": (True, 8)}
MINED = "in-batch + 8 mined, refresh every 100"
REFRESH_EVERY = 100


def refresh_seconds(module, prepared, mesh, rounds: int) -> float:
  """Median wall time of one mined-negative refresh with the student's initial parameters."""
  c = module.get_config()
  built = build_lib.build(c.model, prepared)
  params = built.init(jax.random.key(0))
  times = []
  with tempfile.TemporaryDirectory() as tmp:
    miner = mined_negatives.Miner(tmp, prepared, built, mesh, count=8, depth=50, skip=0, refresh_every=1, seed=0)
    miner.refresh_if_due(1, params)  # compile
    for r in range(rounds):
      start = time.perf_counter()
      miner.refresh_if_due(2 + r, params)
      times.append(time.perf_counter() - start)
  return float(np.median(times))


def step_seconds(module, prepared, in_batch: bool, random: int, steps: int, mesh) -> callable:
  """A function timing `steps` train steps of this variant (compiled on first use, untimed)."""
  c = module.get_config()
  built = build_lib.build(c.model, prepared)
  tx = train.make_optimizer(c.train)
  state, state_sh = train.init_state(built, tx, jax.random.key(0), mesh)
  step = train.jit_step(train.make_train_step(built, tx, losses.distill_loss_fn(2.0, 0.5, "listwise"),
                                              in_batch=in_batch), mesh, state_sh)
  batch = pipeline.TrainBatches(prepared.source("train"), c.train.batch_size, 0, pipeline.gather_transform(
      prepared, "words", random_negatives=random))[0]
  batch["teacher_scores"] = batch["bm25_scores"]
  batch = sharding.put_batch(batch, mesh)
  holder = {"state": state}

  def run() -> float:
    start = time.perf_counter()
    for _ in range(steps):
      holder["state"], metrics = step(holder["state"], batch, jax.random.key(1))
    jax.block_until_ready(metrics)
    return (time.perf_counter() - start) / steps
  run()  # compile
  return run


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--out", default=str(REPO / "results/negatives_cost.json"))
  args = parser.parse_args()
  cfg = cnn_student.get_config().data
  cfg.dir = os.environ.get(datasets.DATA_DIR_ENV) or str(REPO.parent / "shared" / "data")
  prepared = prepare.prepare(cfg)
  mesh = sharding.make_mesh(-1, 1)
  result = {"command": "python -m benchmarks.negatives_cost " + f"--steps={args.steps} --rounds={args.rounds}",
            "cpu": host.cpu_name(), "load_average": os.getloadavg(), "students": {}}
  for name, module in (("CNN", cnn_student), ("BiLSTM", lstm_student)):
    runs = {v: step_seconds(module, prepared, *VARIANTS[v], args.steps, mesh) for v in VARIANTS}
    times = {v: [] for v in VARIANTS}
    for _ in range(args.rounds):
      for v, fn in runs.items():
        times[v].append(fn())
    result["students"][name] = {v: float(np.median(t)) for v, t in times.items()}
    refresh = refresh_seconds(module, prepared, mesh, args.rounds)
    result["students"][name]["mined refresh"] = refresh
    result["students"][name][MINED] = result["students"][name]["in-batch + 8 random"] + refresh / REFRESH_EVERY
  atomic.write_text(Path(args.out), json.dumps(result, indent=2))
  columns = [*VARIANTS, MINED]
  lines = [f"Train step (32 claims x 16 candidates, SciFact) on {result['cpu']}, load average "
           f"{result['load_average'][0]:.1f}; median of {args.rounds} rounds of {args.steps} steps. One mined-negative "
           "refresh: " + ", ".join(f"{n} {t['mined refresh']:.1f} s" for n, t in result["students"].items()) + ".", "",
           "| student | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
  for name, t in result["students"].items():
    base = t["candidates only"]
    lines.append(f"| {name} | " + " | ".join(f"{1000 * t[v]:.0f} ms ({t[v] / base:.2f}x)" for v in columns) + " |")
  print("\n".join(lines))


if __name__ == "__main__":
  main()

"""What the lexical channel (model.lexical_dim, kd_jax/models/lexical.py) costs: the same CNN/BiLSTM train step on the
same SciFact batch (in-batch negatives, as the main command trains) with dense vectors only and with 4,096 lexical
buckets, timed side by side in one process (variants alternate, so load falls on both alike); and whole-collection
search (encode the 5,183 abstracts, then the top 100 of every test claim) with each. Writes
results/lexical_cost.json and prints a Markdown table.

  KD_JAX_DATA_DIR=../shared/data python -m benchmarks.lexical_cost [--steps=10] [--rounds=3]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import jax
import numpy as np

from benchmarks import host, negatives_cost
from configs import cnn_student, lstm_student
from kd_jax import atomic, search, sharding
from kd_jax.data import datasets, prepare
from kd_jax.models import build as build_lib

REPO = Path(__file__).resolve().parents[1]
WIDTHS = {"dense": 0, "dense + lexical 4096": 4096}


class _With:
  """A config module whose get_config() sets model.lexical_dim (negatives_cost.step_seconds reads a module)."""

  def __init__(self, module, lexical_dim: int):
    self.module, self.lexical_dim = module, lexical_dim

  def get_config(self):
    c = self.module.get_config()
    # Both students read the CNN's prepared data, whose out-of-vocabulary words are hashed ids without rows.
    c.model.update(lexical_dim=self.lexical_dim, embed_oov=False)
    return c


def search_seconds(module, prepared, mesh, rounds: int) -> dict:
  """Median seconds to encode the collection and to search it with every test claim (initial parameters)."""
  built = build_lib.build(module.get_config().model, prepared)
  params = built.init(jax.random.key(0))
  src = prepared.source("test")
  claims = np.stack([src[i]["claim_words"] for i in range(len(src))])
  enc, top = [], []
  for _ in range(rounds + 1):  # the first round compiles
    start = time.perf_counter()
    docs = search.encode_collection(built, params, prepared, mesh)
    enc.append(time.perf_counter() - start)
    start = time.perf_counter()
    search.top_k(built, params, search.encode_claims(built, params, claims, mesh), docs, 100, mesh)
    top.append(time.perf_counter() - start)
  return {"encode collection": float(np.median(enc[1:])), "search test claims": float(np.median(top[1:])),
          "index MB (float32)": docs.nbytes / 2**20}


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--steps", type=int, default=10)
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--out", default=str(REPO / "results/lexical_cost.json"))
  args = parser.parse_args()
  cfg = cnn_student.get_config().data
  cfg.dir = os.environ.get(datasets.DATA_DIR_ENV) or str(REPO.parent / "shared" / "data")
  prepared = prepare.prepare(cfg)
  mesh = sharding.make_mesh(-1, 1)
  result = {"command": f"python -m benchmarks.lexical_cost --steps={args.steps} --rounds={args.rounds}",
            "cpu": host.cpu_name(), "devices": len(jax.devices()),
            "load_average": os.getloadavg(), "students": {}}
  for name, module in (("CNN", cnn_student), ("BiLSTM", lstm_student)):
    runs = {w: negatives_cost.step_seconds(_With(module, d), prepared, True, 0, args.steps, mesh)
            for w, d in WIDTHS.items()}
    times = {w: [] for w in WIDTHS}
    for _ in range(args.rounds):
      for w, fn in runs.items():
        times[w].append(fn())
    result["students"][name] = {w: {"train step": float(np.median(t)),
                                    **search_seconds(_With(module, WIDTHS[w]), prepared, mesh, args.rounds)}
                                for w, t in times.items()}
  atomic.write_text(Path(args.out), json.dumps(result, indent=2))
  lines = [f"On {result['cpu']} ({result['devices']} JAX device(s)), load average {result['load_average'][0]:.1f}; "
           f"train step: median of {args.rounds} rounds of {args.steps} steps (32 claims x 16 candidates, in-batch "
           "negatives); search: 300 test claims, top 100 of 5,183 abstracts.", "",
           "| student | vectors | train step | encode collection | search | index (float32) |",
           "|---|---|---:|---:|---:|---:|"]
  for name, rows in result["students"].items():
    base = rows["dense"]
    for w, t in rows.items():
      lines.append(f"| {name} | {w} | {1000 * t['train step']:.0f} ms ({t['train step'] / base['train step']:.2f}x) | "
                   f"{t['encode collection']:.2f} s | {1000 * t['search test claims']:.0f} ms | "
                   f"{t['index MB (float32)']:.0f} MB |")
  print("\n".join(lines))


if __name__ == "__main__":
  main()

"""The BiLSTM student's whole train step (benchmarks/speed.py's batch: 32 claims x 16 documents of 128 words, AdamW,
dropout on, configs/lstm_student.py's XLA:CPU options), with the layer as it was at commit aa202c3 (the bias added
after each step's product, and its gradient summed over the batch every step) and as it is (the bias a row of the
stacked kernel), beside the PyTorch peer, alternating within each round in one process (README, "Speed and size").
Run once per allocator setting, each in a process of its own, from the repository root:

  MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=1099511627776 python results/probes/bilstm_step_bias.py steady
  MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=1099511627776 MALLOC_ARENA_MAX=1 python results/probes/bilstm_step_bias.py \
    steady+one_arena

Each run adds its entry to results/probes/bilstm_step_bias.json. Not part of kd_jax.
"""
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, ".")  # run from the repository root
from kd_jax.models import bilstm  # noqa: E402
from results.probes import bilstm_step_ab  # noqa: E402

BEFORE, ROUNDS = "aa202c3", 10


def main():
  variants = [("bias added, summed each step", bilstm_step_ab.core_at(BEFORE), None),
              ("bias in the stacked kernel", bilstm._core, None)]  # pylint: disable=protected-access
  out = bilstm_step_ab.measure(variants, ROUNDS)
  out["MALLOC_ARENA_MAX"] = os.environ.get("MALLOC_ARENA_MAX", "(unset)")
  path = Path("results/probes/bilstm_step_bias.json")
  runs = json.loads(path.read_text()) if path.is_file() else {}
  runs[sys.argv[1]] = out
  path.write_text(json.dumps(runs, indent=1) + "\n")


if __name__ == "__main__":
  main()

"""The BiLSTM student's whole train step (benchmarks/speed.py's batch: 32 claims x 16 documents of 128 words, AdamW,
dropout on), four ways, beside the PyTorch peer, alternating within each round in one process (README, "Speed and
size"): the layer as it was (commit b214648: separate input and recurrent products) and as it is (each step's
products merged: [x, h] against the stacked kernels), each compiled with XLA's defaults and with the options
configs/lstm_student.py sets (train.xla_cpu_options, kd_jax/xla_cpu.py). Not part of kd_jax; a record of how
bilstm_step_ab.json was made, from the repository root:

  MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=1099511627776 python results/probes/bilstm_step_ab.py
"""
import json
import os
import subprocess
import sys
import time
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, ".")  # run from the repository root
from benchmarks import host, speed, torch_peers  # noqa: E402
from configs import common, lstm_student  # noqa: E402
from kd_jax import losses, train, xla_cpu  # noqa: E402
from kd_jax.data import datasets, pipeline, prepare  # noqa: E402
from kd_jax.models import bilstm, build  # noqa: E402

BEFORE, ROUNDS = "b214648", 12


def core_at(commit: str):
  """bilstm.py's _core as of `commit`, loaded as a module of its own."""
  code = subprocess.run(["git", "show", f"{commit}:kd_jax/models/bilstm.py"], capture_output=True, text=True,
                        check=True).stdout
  mod = types.ModuleType(f"bilstm_{commit}")
  sys.modules[mod.__name__] = mod  # the module's dataclasses look themselves up there
  exec(compile(code, mod.__name__, "exec"), mod.__dict__)  # pylint: disable=exec-used
  return mod._core  # pylint: disable=protected-access


def measure(variants, rounds: int) -> dict:
  """The train step with each (name, layer core, XLA options or None for the config's) of `variants`, and the
  PyTorch peer, alternating within each of `rounds` rounds; the record bilstm_step_*.json hold."""
  cfg = common.data_config()
  cfg.dir = os.environ.get(datasets.DATA_DIR_ENV) or str(Path("..") / "shared" / "data")
  cfg.cache_dir = os.environ.get("KD_JAX_CACHE") or "/tmp/kd_jax_probe_cache"
  cfg.num_candidates = speed.K_RERANK
  prepared = prepare.prepare(cfg)
  sb = pipeline.gather_transform(prepared, "words")(speed.claims_batch(prepared, "train", 0, 32, 16))
  sb["teacher_scores"] = np.random.default_rng(0).normal(size=sb["cand_labels"].shape).astype(np.float32)
  conf = lstm_student.get_config()
  mcfg, tc, d = conf.model, conf.train, conf.distill
  mcfg.glove, mcfg.lexical_dim = False, 0  # as benchmarks/speed.py: a fresh, dense student (the peer's)
  built = build.build(mcfg, prepared)
  params0 = built.init(jax.random.key(0))
  loss_fn = losses.distill_loss_fn(d.temperature, d.alpha, d.hard)
  batch = speed.on_device(sb, ("claim_words", "doc_words", "cand_labels", "cand_mask", "teacher_scores", "is_pseudo"))
  options = xla_cpu.options(tc.xla_cpu_options, jax.devices())
  current = bilstm._core  # pylint: disable=protected-access
  fns, losses_at_1 = {}, {}
  for name, core, opts in variants:
    bilstm._core = core  # pylint: disable=protected-access  # read when the step is traced, on its first call
    tx = train.make_optimizer(tc)
    step = jax.jit(train.make_train_step(built, tx, loss_fn), donate_argnums=0,
                   compiler_options=(options if opts is None else opts) or None)
    params = jax.tree.map(jnp.copy, params0)
    box = {"state": {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": tx.init(params)}}

    def run(box=box, step=step):
      box["state"], metrics = step(box["state"], batch, jax.random.key(0))
      return float(metrics["loss"])
    losses_at_1[name] = run()
    fns[name] = run
  bilstm._core = current  # pylint: disable=protected-access
  import torch  # pylint: disable=import-outside-toplevel
  torch.set_num_threads(speed.THREADS)
  labels, scores = torch.from_numpy(sb["cand_labels"]), torch.from_numpy(sb["teacher_scores"])
  peer = torch_peers.make_trainer(
      torch_peers.DualEncoder(torch_peers.BiLSTMTower(len(prepared.vocab), packed=False)),
      [sb[k].astype(np.int64) for k in ("claim_words", "doc_words")],
      lambda x: torch_peers.distill_loss(x, labels, scores, d.temperature, d.alpha), tc.learning_rate,
      tc.weight_decay, tc.grad_clip)
  peer(1)
  fns["PyTorch peer"] = lambda: peer(1)
  times = {k: [] for k in fns}
  load_start, cpu_start = speed.load(), host.cpu_times()
  for _ in range(rounds):
    for k, fn in fns.items():
      t = time.perf_counter()
      fn()
      times[k].append(time.perf_counter() - t)
  med = {k: float(np.median(v)) for k, v in times.items()}
  for k, v in med.items():
    print(f"{k:34s} {v * 1e3:7.0f} ms  {med['PyTorch peer'] / v:.2f}x PyTorch's speed")
  return {"machine": speed.machine(), "allocator": host.malloc_note(),
          "load": speed.conditions(load_start, cpu_start, speed.load()),
          "rounds": rounds, "options": options, "first_step_loss": losses_at_1,
          "seconds_per_step": {k: [round(x, 4) for x in v] for k, v in times.items()},
          "median_s": med, "ours_over_pytorch_speed": {k: med["PyTorch peer"] / v for k, v in med.items()}}


def main():
  before, merged = core_at(BEFORE), bilstm._core  # pylint: disable=protected-access
  variants = [(f"{core_name}, {opt_name}", core, opts) for core_name, core in (("before", before), ("merged", merged))
              for opt_name, opts in (("XLA defaults", {}), ("config's options", None))]
  out = {"command": "python results/probes/bilstm_step_ab.py", **measure(variants, ROUNDS)}
  Path("results/probes/bilstm_step_ab.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
  main()

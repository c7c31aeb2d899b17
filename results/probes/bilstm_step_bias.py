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

BEFORE, ROUNDS = "aa202c3", 10


def old_core():
  """bilstm.py's _core as of BEFORE, loaded as a module of its own."""
  code = subprocess.run(["git", "show", f"{BEFORE}:kd_jax/models/bilstm.py"], capture_output=True, text=True,
                        check=True).stdout
  mod = types.ModuleType("bilstm_before")
  sys.modules["bilstm_before"] = mod  # the module's dataclasses look themselves up there
  exec(compile(code, "bilstm_before", "exec"), mod.__dict__)  # pylint: disable=exec-used
  return mod._core  # pylint: disable=protected-access


def main():
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
  cores = {"bias added, summed each step": old_core(), "bias in the stacked kernel": bilstm._core}  # pylint: disable=protected-access
  fns, losses_at_1 = {}, {}
  for core_name, core in cores.items():
    for opt_name, opts in (("config's options", options),):
      bilstm._core = core  # pylint: disable=protected-access  # read when the step is traced, on its first call
      tx = train.make_optimizer(tc)
      step = jax.jit(train.make_train_step(built, tx, loss_fn), donate_argnums=0, compiler_options=opts or None)
      params = jax.tree.map(jnp.copy, params0)
      box = {"state": {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": tx.init(params)}}

      def run(box=box, step=step):
        box["state"], metrics = step(box["state"], batch, jax.random.key(0))
        return float(metrics["loss"])
      name = core_name
      losses_at_1[name] = run()
      fns[name] = run
  bilstm._core = cores["bias in the stacked kernel"]  # pylint: disable=protected-access
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
  for _ in range(ROUNDS):
    for k, fn in fns.items():
      t = time.perf_counter()
      fn()
      times[k].append(time.perf_counter() - t)
  med = {k: float(np.median(v)) for k, v in times.items()}
  setting = sys.argv[1]
  out = {"machine": speed.machine(), "allocator": host.malloc_note(),
         "MALLOC_ARENA_MAX": os.environ.get("MALLOC_ARENA_MAX", "(unset)"), "load": speed.conditions(load_start, cpu_start, speed.load()),
         "rounds": ROUNDS, "options": options, "first_step_loss": losses_at_1,
         "seconds_per_step": {k: [round(x, 4) for x in v] for k, v in times.items()},
         "median_s": med, "ours_over_pytorch_speed": {k: med["PyTorch peer"] / v for k, v in med.items()}}
  path = Path("results/probes/bilstm_step_bias.json")
  runs = json.loads(path.read_text()) if path.is_file() else {}
  runs[setting] = out
  path.write_text(json.dumps(runs, indent=1) + "\n")
  for k, v in med.items():
    print(f"{k:34s} {v * 1e3:7.0f} ms  {med['PyTorch peer'] / v:.2f}x PyTorch's speed")


if __name__ == "__main__":
  main()

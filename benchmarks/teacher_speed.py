"""The teacher's train step: today's vs the faster variants, at the old (96) and new (256) pair lengths, against
a PyTorch peer, with achieved FLOP/s as a share of this CPU's measured GEMM peak.

  python -m benchmarks.teacher_speed --out results/TEACHER_SPEED.md     # ~6 min on 2 quiet cores

One process; every contender at a length gets the same real batch (4 SciFact train claims x their first 4
candidates = 16 pairs, the CPU recipe's step; benchmarks/speed.py times the old recipe's 2 claims x 16 = 32), warms up
(compilation excluded), then they alternate within each timed round; medians reported. Every variant uses the
recipe's seg_cosine head (the head is a negligible share of the step).
- GEMM peak: the best of several [4096 x 384] @ [384 x 1536] products (the teacher's FFN shape) and a square
  2048^3 one, per dtype: f32 x f32 -> f32 and bf16 x bf16 -> f32.
- Step FLOPs: XLA's own cost analysis of the compiled step (forward, backward and optimizer, every op).
- The PyTorch peer is HF BertForSequenceClassification from the same weights, AdamW + clipping, run with
  OMP_WAIT_POLICY=PASSIVE (set before torch loads: OpenMP spin-waiting otherwise inflates its times under load).
- glibc keeps freed memory for reuse (benchmarks/host.py, unless --malloc=default), so the peer is not timed paying
  page faults for the buffers it re-allocates every step.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Two CPU devices, so one variant can split its batch over both cores (data parallel, as on a TPU slice); every
# other contender runs on the first device alone, as `make demo` does.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2").strip()

import argparse  # noqa: E402
import datetime  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks import host, speed  # noqa: E402
from configs import common  # noqa: E402
from kd_jax import losses, pretrained, sharding, train  # noqa: E402
from kd_jax.data import datasets, pipeline, prepare  # noqa: E402
from kd_jax.models import build  # noqa: E402

LENGTHS = (96, 256)
VARIANTS = {  # name -> teacher model overrides
    "today (f32, Flax dropout)": dict(matmul="float32", dropout_bits=32),
    "f32 + 16-bit dropout masks": dict(matmul="float32", dropout_bits=16),
    "bf16 x bf16 -> f32 products + 16-bit masks": dict(matmul="bf16_f32", dropout_bits=16),
    "f32 + hashed dropout masks (chosen)": dict(matmul="float32", dropout_rng="hash"),
    # The chosen step, its 16 pairs split over 2 CPU devices (one per core): elementwise work then runs on both
    # cores, where one device leaves much of it on one. `--config.mesh.data=2` with XLA_FLAGS as above.
    "chosen, batch split over 2 CPU devices": dict(matmul="float32", dropout_rng="hash", devices=2),
}


def gemm_peak(rounds: int = 5) -> dict[str, float]:
  """Best GFLOP/s over a few products per dtype (bf16 inputs accumulate and return f32)."""
  out = {}
  for name, dtype in (("f32", jnp.float32), ("bf16_f32", jnp.bfloat16)):
    best = 0.0
    for m, k, n in ((4096, 384, 1536), (2048, 2048, 2048)):
      a, b = jnp.ones((m, k), dtype), jnp.ones((k, n), dtype)
      f = jax.jit(lambda x, y: jnp.dot(x, y, preferred_element_type=jnp.float32))
      jax.block_until_ready(f(a, b))
      for _ in range(rounds):
        t = time.perf_counter()
        jax.block_until_ready(f(a, b))
        best = max(best, 2 * m * k * n / (time.perf_counter() - t) / 1e9)
    out[name] = best
  return out


def real_batch(prepared, length: int) -> dict[str, np.ndarray]:
  """4 SciFact train claims x their first 4 candidates = 16 pairs (the same pairs for every contender)."""
  b = speed.claims_batch(prepared, "train", 0, 4, 4)
  return pipeline.gather_transform(prepared, "pairs", length)(b)


def sharded_trainer(built, tc, batch, devices: int):
  """The train step as `stages` runs it on a `devices`-wide data mesh (jit with NamedShardings)."""
  mesh = sharding.make_mesh(devices)
  tx = train.make_optimizer(tc)
  state, shardings = train.init_state(built, tx, jax.random.key(0), mesh)
  step = train.jit_step(train.make_train_step(built, tx, losses.hard_loss_fn), mesh, shardings)
  box, dev, rng = {"state": state}, sharding.put_batch(batch, mesh), jax.random.key(0)

  def run(steps: int) -> float:
    for _ in range(steps):
      box["state"], metrics = step(box["state"], dev, rng)
    return float(metrics["loss"])
  return run


def ours(prepared, length: int, overrides: dict, batch) -> tuple:
  mcfg = common.teacher_model()
  mcfg.pair_len, mcfg.head = length, "seg_cosine"
  overrides = dict(overrides)
  devices = overrides.pop("devices", 1)
  mcfg.update(overrides)
  built = build.build(mcfg, prepared)
  tc = common.train_config(batch_size=4, steps=1000, learning_rate=5e-5)
  keys = ("pair_ids", "pair_types", "pair_mask", "cand_labels", "cand_mask")
  dev = speed.on_device(batch, keys)
  if devices > 1:
    run = sharded_trainer(built, tc, {k: batch[k] for k in keys}, devices)
  else:
    run = speed.jax_trainer(built, built.init(jax.random.key(0)), tc, losses.hard_loss_fn, dev)
  # XLA's count of the step's floating-point work (a fresh trace: cost analysis needs an un-donated state).
  tx = train.make_optimizer(tc)
  params = jax.eval_shape(built.init, jax.random.key(0))
  state = {"step": jax.ShapeDtypeStruct((), jnp.int32), "params": params, "opt_state": jax.eval_shape(tx.init, params)}
  lowered = jax.jit(train.make_train_step(built, tx, losses.hard_loss_fn)).lower(state, dev, jax.random.key(0))
  cost = lowered.compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return run, float(cost["flops"])


def peer(batch):
  from benchmarks import torch_peers  # pylint: disable=import-outside-toplevel
  import torch  # pylint: disable=import-outside-toplevel
  torch.set_num_threads(speed.THREADS)
  model = torch_peers.BertPeer(str(pretrained.hf_model_dir()))
  labels = torch.from_numpy(batch["cand_labels"])
  inputs = [batch[k].astype(np.int64) for k in ("pair_ids", "pair_types", "pair_mask")]
  return torch_peers.make_trainer(model, inputs, lambda x: torch_peers.listwise_loss(x, labels), 5e-5, 0.01, 1.0)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out", default="results/TEACHER_SPEED.md")
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--steps", type=int, default=2, help="steps per timed call")
  host.add_malloc_argument(parser)
  args = parser.parse_args()
  host.restart_with_steady_malloc("benchmarks.teacher_speed", args.malloc)
  try:
    import torch  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
    have_torch = True
  except ImportError:
    have_torch = False
    print(speed.TORCH_HINT)
  start, load_start, cpu_start = time.time(), speed.load(), host.cpu_times()
  peak = gemm_peak()
  rows, summary = [], {}
  with tempfile.TemporaryDirectory(prefix="kd_jax_bench_") as tmp:
    cfg = common.data_config()
    cfg.dir = os.environ.get(datasets.DATA_DIR_ENV) or str(speed.REPO.parent / "shared" / "data")
    cfg.cache_dir = os.environ.get("KD_JAX_CACHE") or tmp
    prepared = prepare.prepare(cfg)
    attn = "n/a"
    for length in LENGTHS:  # inside the block: `prepared` reads its examples lazily from the temporary cache
      batch = real_batch(prepared, length)
      fns, flops = {}, {}
      for name, overrides in VARIANTS.items():
        run, flops[name] = ours(prepared, length, overrides, batch)
        fns[name] = run
      if have_torch:
        fns["PyTorch peer"] = peer(batch)
        attn = fns["PyTorch peer"].model.bert.config._attn_implementation  # pylint: disable=protected-access
      for fn in fns.values():
        fn(1)  # compile / first-touch allocations
      secs = speed.compare({k: (lambda fn=fn: fn(args.steps)) for k, fn in fns.items()}, args.rounds, warmup=0)
      secs = {k: v / args.steps for k, v in secs.items()}
      tokens = 16 * length
      for name, t in secs.items():
        f = flops.get(name)
        use_peak = peak["bf16_f32"] if VARIANTS.get(name, {}).get("matmul") == "bf16_f32" else peak["f32"]
        rows.append([length, name, t, tokens / t, secs["today (f32, Flax dropout)"] / t,
                     secs["PyTorch peer"] / t if "PyTorch peer" in secs else "skipped",
                     f / t / 1e9 if f else "—", f"{100 * f / t / 1e9 / use_peak:.0f}%" if f else "—"])
      summary[length] = secs
      print(speed.table(["tokens", "step", "s / step", "tokens / s", "vs today", "vs PyTorch", "GFLOP/s",
                         "% of GEMM peak"], rows[-len(secs):]), flush=True)
  text = speed.table(["pair tokens", "train step (16 pairs)", "s / step", "tokens / s", "speed-up vs today",
                      "ours / PyTorch", "achieved GFLOP/s", "% of GEMM peak (its dtype)"], rows)
  import importlib.metadata as md  # pylint: disable=import-outside-toplevel
  torch_build = md.version("torch") if have_torch else "not installed"
  body = (f"# Teacher train-step speed\n\nGenerated by `python -m benchmarks.teacher_speed {shlex.join(sys.argv[1:])}`"
          f" on {datetime.datetime.now():%Y-%m-%d %H:%M} in {time.time() - start:.0f} s.\n\n{speed.machine()}\n"
          f"- PyTorch peer: torch {torch_build}, {speed.THREADS} threads, OMP_WAIT_POLICY="
          f"{os.environ.get('OMP_WAIT_POLICY')}; HF attention implementation '{attn}'\n"
          f"- Memory allocator: {host.malloc_note()}\n{speed.conditions(load_start, cpu_start)}\n"
          f"Measured GEMM peak on this CPU, same process: **f32 {peak['f32']:.0f} GFLOP/s**, **bf16 x bf16 -> f32 "
          f"{peak['bf16_f32']:.0f} GFLOP/s**.\n\n{text}\n\nMedian of {args.rounds} rounds of {args.steps} steps, "
          "contenders alternating. Achieved GFLOP/s = XLA's cost-analysis FLOPs of the compiled step / its time; the "
          "% column divides by the GEMM peak of the dtype the step multiplies in.\n")
  Path(args.out).write_text(body)
  print(body)


if __name__ == "__main__":
  main()

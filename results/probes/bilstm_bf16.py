"""The BiLSTM layer (kd_jax/models/bilstm.py) with its six per-step products taking bf16 inputs and accumulating in
f32, against the layer as it is: forward and backward of 512 sequences of 128 steps (50-d inputs, 128 hidden), timed
alternately in one process (README, "Speed and size"). Both are bilstm.py as of commit b214648, before each step's
products were merged (read with git). Not part of kd_jax; a record of how bilstm_bf16.json was made:

  MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=1099511627776 python results/probes/bilstm_bf16.py
"""
import json
import sys
import subprocess
import time
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, ".")  # run from the repository root

N, L, D, H, ROUNDS = 512, 128, 50, 128, 4
AT = "b214648"  # the layer this probe measured (2026-11-30)
PRODUCTS = {"x2[k] @ w_in + h @ w_rec + bias": "mm(x2[k], w_in) + mm(h, w_rec) + bias",
            "d_pre @ transposed[k][1]": "mm(d_pre, transposed[k][1])",
            "d_w_in + x.T @ d_pre, d_w_rec + h_prev.T @ d_pre": "d_w_in + mm(x.T, d_pre), d_w_rec + mm(h_prev.T, d_pre)",
            "d_pre @ transposed[k][0]": "mm(d_pre, transposed[k][0])"}


def mm(a, b):
  return jnp.matmul(a.astype(jnp.bfloat16), b.astype(jnp.bfloat16), preferred_element_type=jnp.float32)


def _source() -> str:
  return subprocess.run(["git", "show", f"{AT}:kd_jax/models/bilstm.py"], capture_output=True, text=True,
                        check=True).stdout


def _module(name: str, code: str):
  mod = types.ModuleType(name)
  sys.modules[name] = mod  # its dataclasses look themselves up there
  exec(compile(code, name, "exec"), mod.__dict__)  # pylint: disable=exec-used
  return mod


def bf16_layer():
  """bilstm.py's source with each product through mm(), loaded as a module of its own."""
  code = _source()
  for a, b in PRODUCTS.items():
    assert code.count(a) == 1, a
    code = code.replace(a, b)
  mod = types.ModuleType("bilstm_bf16")
  mod.mm = mm
  sys.modules["bilstm_bf16"] = mod
  exec(compile(code, "bilstm_bf16", "exec"), mod.__dict__)  # pylint: disable=exec-used
  return mod


def main():
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(N, L, D)).astype(np.float32))
  lengths = jnp.asarray(rng.integers(L // 2, L + 1, size=N))

  def weights():
    return (jnp.asarray(rng.normal(size=(D, 4 * H)).astype(np.float32) * 0.1),
            jnp.asarray(rng.normal(size=(H, 4 * H)).astype(np.float32) * 0.1), jnp.zeros(4 * H))
  fw, bw = weights(), weights()

  def step(layer):
    def loss(x, fw, bw):
      hf, hb = layer.bilstm(x, lengths, fw, bw)
      return jnp.sum(hf.max(0)) + jnp.sum(hb.max(0))
    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))
  runs = {"f32": step(_module("bilstm_f32", _source())), "bf16 inputs, f32 accumulation": step(bf16_layer())}
  outs = {k: f(x, fw, bw) for k, f in runs.items()}  # compiles
  a, b = outs.values()
  err = float(jnp.linalg.norm(a[1][1][1] - b[1][1][1]) / jnp.linalg.norm(a[1][1][1]))
  ms = {k: [] for k in runs}
  for _ in range(ROUNDS):
    for k, f in runs.items():
      start = time.perf_counter()
      jax.block_until_ready(f(x, fw, bw))
      ms[k].append(round(1000 * (time.perf_counter() - start), 1))
  result = {"shape": {"N": N, "L": L, "D": D, "H": H}, "ms_per_forward_and_backward": ms,
            "recurrent_kernel_grad_relative_error": err}
  Path("results/probes/bilstm_bf16.json").write_text(json.dumps(result, indent=1))
  print(json.dumps(result, indent=1))


if __name__ == "__main__":
  main()

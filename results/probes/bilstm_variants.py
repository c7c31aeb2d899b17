"""The BiLSTM layer (kd_jax/models/bilstm.py as of commit aa202c3, read with git) against variants of its loops,
forward and backward of 512 sequences of 128 steps (50-d inputs, 128 hidden), compiled with configs/lstm_student.py's
XLA:CPU options and timed alternately in one process (README, "Speed and size"):
- "as is": that commit's _core;
- "dW over 2 steps": the backward loop takes two time steps an iteration and adds the stacked kernel's gradient
  once for both, one product with K = 2N instead of two with K = N;
- "unroll 2": the forward scan and the backward loop unrolled twice;
- "bf16 products": every per-step product with bf16 inputs and f32 accumulation (this Intel has AVX512_BF16).
Not part of kd_jax; a record of how bilstm_variants.json was made, from the repository root:

  MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=1099511627776 python results/probes/bilstm_variants.py
"""
import json
import subprocess
import sys
import time
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, ".")  # run from the repository root
from benchmarks import host, speed  # noqa: E402
from kd_jax import xla_cpu  # noqa: E402

N, L, D, H, ROUNDS = 512, 128, 50, 128, 8
AT = "aa202c3"  # the layer this probe measured (2026-12-02), before the bias joined the stacked kernel


def _layer_at_commit():
  code = subprocess.run(["git", "show", f"{AT}:kd_jax/models/bilstm.py"], capture_output=True, text=True,
                        check=True).stdout
  mod = types.ModuleType("bilstm_at")
  sys.modules["bilstm_at"] = mod  # its dataclasses look themselves up there
  exec(compile(code, "bilstm_at", "exec"), mod.__dict__)  # pylint: disable=exec-used
  return mod


bilstm = _layer_at_commit()
at = lambda a, t: jax.lax.dynamic_index_in_dim(a, t, keepdims=False)  # noqa: E731


def f32mm(a, b):
  return a @ b


def bf16mm(a, b):
  return jnp.matmul(a.astype(jnp.bfloat16), b.astype(jnp.bfloat16), preferred_element_type=jnp.float32)


def make_core(mm=f32mm, pair=False, unroll=1):
  """bilstm._core's function with the named changes (the forward and backward as bilstm.py writes them)."""

  @jax.custom_vjp
  def core(xs, valid_rev, weights):
    return fwd(xs, valid_rev, weights)[0]

  def fwd(xs, valid_rev, weights):
    n, hidden = xs[0].shape[1], weights[0][1].shape[0]
    stacked = bilstm._stacked(weights)  # pylint: disable=protected-access

    def step(carry, inputs):
      x2, valid = inputs
      new_carry, saved = [], []
      for k in range(2):
        (h, c), bias = carry[k], weights[k][2]
        i, f, g, o = bilstm._gates(mm(jnp.concatenate([x2[k], h], axis=-1), stacked[k]) + bias)  # pylint: disable=protected-access
        new_c = f * c + i * g
        new_h = o * jnp.tanh(new_c)
        if k == 1:
          new_h, new_c = jnp.where(valid[:, None], new_h, h), jnp.where(valid[:, None], new_c, c)
        new_carry.append((new_h, new_c))
        saved.append((new_h, new_c, i, f, g, o))
      return tuple(new_carry), tuple(saved)

    zeros = jnp.zeros((n, hidden), xs[0].dtype)
    _, saved = jax.lax.scan(step, ((zeros, zeros), (zeros, zeros)), (xs, valid_rev), unroll=unroll)
    return (saved[0][0], saved[1][0]), (xs, valid_rev, weights, saved)

  def bwd(res, d_out):
    xs, valid_rev, weights, saved = res
    length, n = xs[0].shape[:2]
    d_in = xs[0].shape[-1]
    zeros = jnp.zeros((n, weights[0][1].shape[0]), xs[0].dtype)
    stacked = bilstm._stacked(weights)  # pylint: disable=protected-access
    transposed = tuple(w.T for w in stacked)

    def one(k, t, d_h, d_c_next, d_xs):
      """One direction's step t: (d_h_prev, d_c_prev, d_pre, xh, d_xs)."""
      prev = jnp.maximum(t - 1, 0)
      hs, cs, gi, gf, gg, go = saved[k]
      h_prev = jnp.where(t == 0, zeros, at(hs, prev))
      c_prev = jnp.where(t == 0, zeros, at(cs, prev))
      i, f, g, o = at(gi, t), at(gf, t), at(gg, t), at(go, t)
      d_h = d_h + at(d_out[k], t)
      tanh_c = jnp.tanh(f * c_prev + i * g)
      d_c = d_c_next + d_h * o * (1 - tanh_c * tanh_c)
      d_pre = jnp.concatenate([d_c * g * i * (1 - i), d_c * c_prev * f * (1 - f), d_c * i * (1 - g * g),
                               d_h * tanh_c * o * (1 - o)], axis=-1)
      d_c_prev = d_c * f
      if k == 1:
        valid = at(valid_rev, t)[:, None]
        d_pre = jnp.where(valid, d_pre, 0)
      d_xh = mm(d_pre, transposed[k])
      d_x, d_h_prev = d_xh[:, :d_in], d_xh[:, d_in:]
      if k == 1:
        d_h_prev, d_c_prev = jnp.where(valid, d_h_prev, d_h), jnp.where(valid, d_c_prev, d_c_next)
      xh = jnp.concatenate([at(xs[k], t), h_prev], axis=-1)
      return d_h_prev, d_c_prev, d_pre, xh, jax.lax.dynamic_update_index_in_dim(d_xs, d_x, t, 0)

    def body(s, carry):
      new = []
      for k in range(2):
        d_h, d_c, d_w, d_bias, d_xs = carry[k]
        if pair:
          t = length - 1 - 2 * s
          d_h, d_c, p1, xh1, d_xs = one(k, t, d_h, d_c, d_xs)
          d_h, d_c, p2, xh2, d_xs = one(k, t - 1, d_h, d_c, d_xs)
          d_pre, xh = jnp.concatenate([p1, p2], 0), jnp.concatenate([xh1, xh2], 0)
        else:
          d_h, d_c, d_pre, xh, d_xs = one(k, length - 1 - s, d_h, d_c, d_xs)
        new.append((d_h, d_c, d_w + mm(xh.T, d_pre), d_bias + jnp.sum(d_pre, 0), d_xs))
      return tuple(new)

    init = tuple((zeros, zeros, jnp.zeros_like(w), jnp.zeros_like(bias), jnp.zeros_like(x))
                 for x, w, (_, _, bias) in zip(xs, stacked, weights))
    out = jax.lax.fori_loop(0, length // 2 if pair else length, body, init, unroll=unroll)
    return (out[0][4], out[1][4]), None, tuple((o[2][:d_in], o[2][d_in:], o[3]) for o in out)

  core.defvjp(fwd, bwd)
  return core


def main():
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(N, L, D)).astype(np.float32))
  lengths = jnp.asarray(rng.integers(L // 2, L + 1, size=N))

  def weights():
    return (jnp.asarray(rng.normal(size=(D, 4 * H)).astype(np.float32) * 0.1),
            jnp.asarray(rng.normal(size=(H, 4 * H)).astype(np.float32) * 0.1), jnp.zeros(4 * H))
  fw, bw = weights(), weights()
  options = xla_cpu.options({"xla_cpu_prefer_vector_width": 512}, jax.devices())

  def step(core):
    def loss(x, fw, bw):
      xt = jnp.swapaxes(x, 0, 1)
      valid_rev = (jnp.arange(L)[:, None] < lengths[None, :])[::-1]
      hf, hb = core((xt, xt[::-1]), valid_rev, (tuple(fw), tuple(bw)))
      return jnp.sum(hf.max(0)) + jnp.sum(hb.max(0))
    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)), compiler_options=options)
  cores = {"as is": bilstm._core, "dW over 2 steps": make_core(pair=True),  # pylint: disable=protected-access
           "unroll 2": make_core(unroll=2), "bf16 products": make_core(mm=bf16mm)}
  runs = {k: step(c) for k, c in cores.items()}
  outs = {k: f(x, fw, bw) for k, f in runs.items()}  # compiles
  ref = outs["as is"][1]
  errors = {k: max(float(jnp.linalg.norm(a - b) / jnp.linalg.norm(a))
                   for a, b in zip(jax.tree.leaves(ref), jax.tree.leaves(o[1]))) for k, o in outs.items()}
  ms = {k: [] for k in runs}
  start_load, cpu0 = speed.load(), host.cpu_times()
  for _ in range(ROUNDS):
    for k, f in runs.items():
      start = time.perf_counter()
      jax.block_until_ready(f(x, fw, bw))
      ms[k].append(round(1000 * (time.perf_counter() - start), 1))
  result = {"shape": {"N": N, "L": L, "D": D, "H": H}, "machine": speed.machine(),
            "conditions": speed.conditions(start_load, cpu0, speed.load()), "ms_per_forward_and_backward": ms,
            "median_ms": {k: float(np.median(v)) for k, v in ms.items()},
            "largest_gradient_relative_error_vs_as_is": errors}
  Path("results/probes/bilstm_variants.json").write_text(json.dumps(result, indent=1))
  print(json.dumps(result, indent=1))


if __name__ == "__main__":
  main()

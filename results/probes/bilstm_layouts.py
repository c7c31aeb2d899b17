"""The BiLSTM student's whole train step (benchmarks/speed.py's batch, AdamW, dropout on) with four layouts of the
layer's loops, beside the PyTorch peer, alternating within each round in one process (README, "Speed and size");
every layout computes the same function (its gradients are checked against the first before timing):
- "as it was": kd_jax/models/bilstm.py at commit 9658d5f, the two directions stepped side by side in one loop;
- "directions batched (kd_jax now)": bilstm.py as it is, the two directions a leading axis of size 2, so each step
  is one batched product forward and two backward instead of two and four, and one set of gate fusions over
  [2, N, 4H];
- "backward products after the loop": as it was, but the backward loop keeps only the recurrent product (d h_prev)
  and stores each step's gate gradients; the inputs' gradient and the kernels' are each one large product after it;
- "both projections outside the loops": that, and the inputs' projection (with the bias) made for all steps before
  the forward scan, which then multiplies only h by the recurrent kernel.
Not part of kd_jax; a record of how bilstm_layouts.json was made, from the repository root:

  MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=1099511627776 MALLOC_ARENA_MAX=1 python results/probes/bilstm_layouts.py
"""
import json
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, ".")  # run from the repository root
sys.path.insert(0, "results/probes")
from bilstm_step_ab import core_at, measure  # noqa: E402
from kd_jax.models import bilstm  # noqa: E402

ROUNDS, AT = 30, "9658d5f"  # the layer before its directions were batched (2026-12-02)
as_was = core_at(AT)
old = sys.modules[f"bilstm_{AT}"]  # its helpers: the stacked kernels per direction, the gates
at = lambda a, t: jax.lax.dynamic_index_in_dim(a, t, keepdims=False)  # noqa: E731


def hoisted_core(hoist_fwd: bool):
  """The layer as it was, with its backward's input and kernel products (and with `hoist_fwd` its forward input
  projection) outside the loops."""
  @jax.custom_vjp
  def core(xs, valid_rev, weights):
    return fwd(xs, valid_rev, weights)[0]

  def fwd(xs, valid_rev, weights):
    n, hidden = xs[0].shape[1], weights[0][1].shape[0]
    if hoist_fwd:
      pre_x = tuple(x @ w_in + b for x, (w_in, _, b) in zip(xs, weights))  # [L, N, 4H]
      w_rec = tuple(w for _, w, _ in weights)
    else:
      stacked = old._stacked(weights)
      ones = jnp.ones((n, 1), xs[0].dtype)

    def step(carry, inputs):
      x2, valid = inputs
      new_carry, saved = [], []
      for k in range(2):
        h, c = carry[k]
        if hoist_fwd:
          pre = x2[k] + h @ w_rec[k]
        else:
          pre = jnp.concatenate([x2[k], h, ones], axis=-1) @ stacked[k]
        i, f, g, o = old._gates(pre)
        new_c = f * c + i * g
        new_h = o * jnp.tanh(new_c)
        if k == 1:
          new_h, new_c = jnp.where(valid[:, None], new_h, h), jnp.where(valid[:, None], new_c, c)
        new_carry.append((new_h, new_c))
        saved.append((new_h, new_c, i, f, g, o))
      return tuple(new_carry), tuple(saved)

    zeros = jnp.zeros((n, hidden), xs[0].dtype)
    _, saved = jax.lax.scan(step, ((zeros, zeros), (zeros, zeros)), (pre_x if hoist_fwd else xs, valid_rev))
    return (saved[0][0], saved[1][0]), (xs, valid_rev, weights, saved)

  def bwd(res, d_out):
    xs, valid_rev, weights, saved = res
    length, n = xs[0].shape[:2]
    hidden = weights[0][1].shape[0]
    zeros = jnp.zeros((n, hidden), xs[0].dtype)
    w_rec_t = tuple(w.T for _, w, _ in weights)  # [4H, H]

    def body(s, carry):
      t = length - 1 - s
      prev = jnp.maximum(t - 1, 0)
      new = []
      for k in range(2):
        d_h, d_c_next, d_pres = carry[k]
        hs, cs, gi, gf, gg, go = saved[k]
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
        d_h_prev = d_pre @ w_rec_t[k]
        if k == 1:
          d_h_prev, d_c_prev = jnp.where(valid, d_h_prev, d_h), jnp.where(valid, d_c_prev, d_c_next)
        new.append((d_h_prev, d_c_prev, jax.lax.dynamic_update_index_in_dim(d_pres, d_pre, t, 0)))
      return tuple(new)

    init = tuple((zeros, zeros, jnp.zeros((length, n, 4 * hidden), xs[0].dtype)) for _ in range(2))
    out = jax.lax.fori_loop(0, length, body, init)
    d_xs, d_ws = [], []
    for k in range(2):
      w_in, _, _ = weights[k]
      d_pres = out[k][2].reshape(length * n, 4 * hidden)
      hs = saved[k][0]
      h_prev = jnp.concatenate([jnp.zeros((1, n, hidden), hs.dtype), hs[:-1]], 0).reshape(length * n, hidden)
      d_xs.append((d_pres @ w_in.T).reshape(length, n, -1))
      d_ws.append((xs[k].reshape(length * n, -1).T @ d_pres, h_prev.T @ d_pres, d_pres.sum(0)))
    return tuple(d_xs), None, tuple(d_ws)

  core.defvjp(fwd, bwd)
  return core


def gradient_errors(cores) -> dict:
  """Each core's largest relative gradient difference from the layer as it was (AT), on a small padded batch."""
  rng = np.random.default_rng(0)
  n, length, d, h = 16, 12, 8, 6
  x = jnp.asarray(rng.normal(size=(n, length, d)).astype(np.float32))
  lengths = jnp.asarray(rng.integers(0, length + 1, size=n))
  ws = [tuple(jnp.asarray(rng.normal(size=s).astype(np.float32) * 0.3) for s in ((d, 4 * h), (h, 4 * h), (4 * h,)))
        for _ in range(2)]
  mask = (jnp.arange(length)[:, None] < lengths[None, :])[:, :, None]

  def loss(core, x, ws):
    xt = jnp.swapaxes(x, 0, 1)
    hf, hb = core((xt, xt[::-1]), mask[::-1, :, 0], tuple(ws))
    return jnp.sum(jnp.where(mask, hf, -9).max(0)) + jnp.sum(jnp.where(mask[::-1], hb, -9).max(0))
  grad = lambda core: jax.grad(lambda x, ws: loss(core, x, ws), argnums=(0, 1))(x, ws)  # noqa: E731
  ref = jax.tree.leaves(grad(as_was))
  return {name: max(float(jnp.linalg.norm(a - b) / jnp.linalg.norm(a))
                    for a, b in zip(ref, jax.tree.leaves(grad(core)))) for name, core in cores.items()}


def main():
  cores = {"directions batched (kd_jax now)": bilstm._core,  # pylint: disable=protected-access
           "backward products after the loop": hoisted_core(False),
           "both projections outside the loops": hoisted_core(True)}
  errors = gradient_errors(cores)
  print(errors)
  assert max(errors.values()) < 1e-5, errors
  variants = [(f"as it was ({AT})", as_was, None)] + [(k, c, None) for k, c in cores.items()]
  head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
  out = {"command": "python results/probes/bilstm_layouts.py", "kd_jax_commit": head,
         "largest_gradient_relative_error_vs_as_it_was": errors,
         **measure(variants, ROUNDS)}
  Path("results/probes/bilstm_layouts.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
  main()

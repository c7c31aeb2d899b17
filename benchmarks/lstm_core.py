"""Where the BiLSTM student's train step loses to PyTorch: the BiLSTM layer alone, and one step of a scan split.

  python -m benchmarks.lstm_core --out results/LSTM_CORE.md      # under a minute on 2 CPU cores
  python -m benchmarks.lstm_core --out /tmp/core.md --quick      # checks the script

The BiLSTM benchmark (benchmarks/speed.py) times whole train steps. This one times the part that differs: the BiLSTM
layer over the benchmark's documents (512 sequences of 128 words, 50-d inputs, 128 hidden units per direction, as
configs/lstm_student.py), forward and forward + backward, in Flax (`nn.Bidirectional` over Flax's `OptimizedLSTMCell`,
and the student's `kd_jax/models/bilstm.py`) and in PyTorch (two `nn.LSTM`s, the backward one reading each sequence
reversed within its length, as the train-step peer). Then one step of the recurrence, in a `lax.scan` of 128 steps:
the recurrent product alone, the gate nonlinearities alone, and both, beside the same operations in eager PyTorch.

Same process, alternating contenders, medians (speed.compare); glibc keeps freed memory (benchmarks/host.py) unless
`--malloc=default`. PyTorch is the peer (`pip install torch==2.13.0`); without it its columns read "—".
"""

from __future__ import annotations

import argparse
import datetime
import shlex
import sys
import time
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import host, speed
from configs import lstm_student
from kd_jax import xla_cpu
from kd_jax.models import bilstm, students

SIZES = {"full": dict(batch=512, length=128, rounds=9), "quick": dict(batch=32, length=16, rounds=1)}
DIM, HIDDEN = 50, 128


def _pooled_loss(h, mask):
  """A loss of the shape the student's: max over time at valid positions (masked_max: its gradient goes to the
  position of the max, as PyTorch's does), then a scalar."""
  return jnp.sum(students.masked_max(h, mask) ** 2)


LAYERS = ("Flax's Bidirectional OptimizedLSTMCell", "kd_jax/models/bilstm.py (the student's)",
          "the student's, with its config's XLA:CPU options")
PASSES = ("forward", "forward + backward")


class _FlaxLayer(nn.Module):
  @nn.compact
  def __call__(self, x, lengths):
    cells = [nn.OptimizedLSTMCell(HIDDEN, name=f"OptimizedLSTMCell_{i}") for i in range(2)]
    h = nn.Bidirectional(nn.RNN(cells[0]), nn.RNN(cells[1]))(x, seq_lengths=lengths)
    return _pooled_loss(h, jnp.arange(x.shape[1])[None, :] < lengths[:, None])


class _StudentLayer(nn.Module):
  @nn.compact
  def __call__(self, x, lengths):
    weights = [bilstm.LSTMWeights(HIDDEN, name=f"OptimizedLSTMCell_{i}")(x.shape[-1]) for i in range(2)]
    hf, hb = bilstm.bilstm(x, lengths, *weights)
    mask = jnp.arange(x.shape[1])[None, :] < lengths[:, None]
    return jnp.sum(bilstm.pooled(hf, hb, mask, students.masked_max) ** 2)  # _pooled_loss, as the student pools


def flax_layer(x: np.ndarray, layer: str) -> dict:
  """Forward and forward + backward of one BiLSTM layer, as blocking callables."""
  model = (_FlaxLayer if layer == LAYERS[0] else _StudentLayer)()
  # The third row: compiled as the student's train step is, with configs/lstm_student.py's train.xla_cpu_options.
  opts = xla_cpu.options(lstm_student.get_config().train.xla_cpu_options, jax.devices()) if layer == LAYERS[2] else {}
  lengths = jnp.full((x.shape[0],), x.shape[1], jnp.int32)  # the student passes lengths; SciFact's fill the cap
  params = model.init(jax.random.key(0), x, lengths)
  loss = lambda p: model.apply(p, x, lengths)  # noqa: E731
  fwd, grad = (jax.jit(f, compiler_options=opts or None) for f in (loss, jax.grad(loss)))
  return dict(zip(PASSES, (lambda: jax.block_until_ready(fwd(params)), lambda: jax.block_until_ready(grad(params)))))


def torch_layer(x: np.ndarray) -> dict:
  import torch  # pylint: disable=import-outside-toplevel
  from benchmarks import torch_peers  # pylint: disable=import-outside-toplevel
  fwd_lstm, bwd_lstm = torch.nn.LSTM(DIM, HIDDEN, batch_first=True), torch.nn.LSTM(DIM, HIDDEN, batch_first=True)
  xt, lengths = torch.from_numpy(x), torch.full((x.shape[0],), x.shape[1])
  mask = torch.ones(x.shape[:2], dtype=torch.bool)

  def loss():
    back = torch_peers.reverse_valid(bwd_lstm(torch_peers.reverse_valid(xt, lengths))[0], lengths)
    return torch_peers.masked_max(torch.cat([fwd_lstm(xt)[0], back], -1), mask).pow(2).sum()

  def forward():
    with torch.no_grad():
      return float(loss())

  def backward():
    fwd_lstm.zero_grad()
    bwd_lstm.zero_grad()
    out = loss()
    out.backward()
    return float(out.detach())
  return dict(zip(PASSES, (forward, backward)))


def scan_parts(batch: int, length: int) -> dict:
  """One step of the recurrence split into its product and its gate nonlinearities, each in a 128-step lax.scan."""
  rng = np.random.default_rng(0)
  gates_in = jnp.asarray(rng.normal(size=(length, batch, 4 * HIDDEN)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(HIDDEN, 4 * HIDDEN)) * 0.1, jnp.float32)

  def cell(g, c):
    i, f, u, o = jnp.split(g, 4, axis=-1)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(u)
    return jax.nn.sigmoid(o) * jnp.tanh(c), c

  bodies = {
      "product": lambda h, c, x: ((x + h @ w)[:, :HIDDEN] * 0.01, c),
      "gate nonlinearities": lambda h, c, x: cell(x + jnp.tile(h, (1, 4)), c),
      "both (the LSTM step)": lambda h, c, x: cell(x + h @ w, c),
  }
  zeros = jnp.zeros((batch, HIDDEN), jnp.float32)
  out = {}
  for name, body in bodies.items():
    fn = jax.jit(lambda xs, body=body: jax.lax.scan(lambda hc, x: (body(*hc, x), None), (zeros, zeros), xs)[0][0])
    out[name] = lambda fn=fn: jax.block_until_ready(fn(gates_in))
  return out


def torch_parts(batch: int, length: int) -> dict:
  import torch  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)
  gates_in = torch.from_numpy(rng.normal(size=(length, batch, 4 * HIDDEN)).astype(np.float32))
  w = torch.from_numpy((rng.normal(size=(HIDDEN, 4 * HIDDEN)) * 0.1).astype(np.float32))

  def cell(g, c):
    i, f, u, o = g.chunk(4, 1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(u)
    return torch.sigmoid(o) * torch.tanh(c), c

  bodies = {
      "product": lambda h, c, x: ((x + h @ w)[:, :HIDDEN] * 0.01, c),
      "gate nonlinearities": lambda h, c, x: cell(x + h.repeat(1, 4), c),
      "both (the LSTM step)": lambda h, c, x: cell(x + h @ w, c),
  }

  def run(body):
    with torch.no_grad():
      h = c = torch.zeros(batch, HIDDEN)
      for x in gates_in:
        h, c = body(h, c, x)
    return float(h[0, 0])
  return {name: (lambda body=body: run(body)) for name, body in bodies.items()}


def _rows(ours: dict, peer: dict, rounds: int, per: float) -> list[list]:
  """[what, ours ms, PyTorch ms, PyTorch / ours] per contender pair, ms divided by `per`; '—' without PyTorch."""
  rows = []
  for what, fn in ours.items():
    t = speed.compare({"flax": fn, **({"torch": peer[what]} if peer else {})}, rounds=rounds)
    ms = lambda k: 1e3 * t[k] / per  # noqa: E731
    rows.append([what, ms("flax"), *((ms("torch"), t["torch"] / t["flax"]) if peer else ("—", "—"))])
  return rows


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out", default="results/LSTM_CORE.md")
  parser.add_argument("--quick", action="store_true", help="tiny sizes, one round (checks the script)")
  host.add_malloc_argument(parser)
  args = parser.parse_args(argv)
  if argv is None:  # a command line: restart under the steady allocator as the other PyTorch comparisons do
    host.restart_with_steady_malloc("benchmarks.lstm_core", args.malloc)
  if speed.torch is None:
    print(speed.TORCH_HINT)
  s = SIZES["quick" if args.quick else "full"]
  start, load_start, cpu_start = time.time(), speed.load(), host.cpu_times()
  x = np.random.default_rng(0).normal(size=(s["batch"], s["length"], DIM)).astype(np.float32)
  peer = torch_layer(x) if speed.torch else {}
  rows = []
  for layer in LAYERS:
    rows += [[f"{layer}: {r[0]}", *r[1:]] for r in _rows(flax_layer(x, layer), peer, s["rounds"], 1.0)]
  steps = _rows(scan_parts(s["batch"], s["length"]), torch_parts(s["batch"], s["length"]) if speed.torch else {},
                s["rounds"], s["length"])
  cmd = "python -m benchmarks.lstm_core " + shlex.join(sys.argv[1:] if argv is None else argv)
  shape = f"{s['batch']} sequences x {s['length']} steps, {DIM}-d inputs, {HIDDEN} hidden units"
  text = (
      f"# The BiLSTM layer: Flax vs PyTorch\n\nGenerated by `{cmd}` on {datetime.datetime.now():%Y-%m-%d %H:%M} in "
      f"{time.time() - start:.0f} s{' (quick sizes: checks the script)' if args.quick else ''}.\n\n"
      f"{speed.machine()}\n- Memory allocator: {host.malloc_note()}\n{speed.conditions(load_start, cpu_start)}\n"
      f"## 1. The BiLSTM layer, {shape} per direction\n\n`nn.Bidirectional` over Flax's `OptimizedLSTMCell` (with "
      "sequence lengths, as the student was until kd_jax/models/bilstm.py) and the student's layer (bilstm.py: the "
      "same parameters and function, both directions in one scan with a hand-written VJP), compiled with XLA's "
      "defaults and with the options configs/lstm_student.py sets for its train step (kd_jax/xla_cpu.py), against "
      "two PyTorch "
      "`nn.LSTM`s, the backward one reading each sequence reversed within its length; loss: the student's max over "
      "time, squared, summed. Milliseconds per call, medians.\n\n"
      + speed.table(["", "Flax ms", "PyTorch ms", "ours / PyTorch speed"], rows) + "\n\n"
      f"## 2. One step of the recurrence, {s['batch']} sequences\n\nForward only, milliseconds per step of a "
      f"{s['length']}-step `lax.scan` (JAX) or Python loop (eager PyTorch, which pays Python's overhead per "
      "operation). The product: hidden state [B, 128] times the recurrent weights [128, 512]; the gate "
      "nonlinearities: three sigmoids and two tanh over the step's gates and cell state.\n\n"
      + speed.table(["", "JAX ms/step", "PyTorch ms/step", "ours / PyTorch speed"], steps) + "\n")
  Path(args.out).parent.mkdir(parents=True, exist_ok=True)
  Path(args.out).write_text(text)
  print(text)
  print(f"Wrote {args.out}")


if __name__ == "__main__":
  main()

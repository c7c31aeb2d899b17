"""Training metrics: a JSONL log and TensorBoard event files in the stage folder, plus a console line."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import jax


# The console line; metrics.jsonl and TensorBoard get everything.
_SHOWN = ("loss", "distill", "hard", "grad_norm", "claims_per_s", "eta_s", "map", "mrr@10", "ndcg@10", "recall@1",
          "recall@5", "recall@10")


class Logbook:
  def __init__(self, workdir: Path):
    self._primary = jax.process_index() == 0
    self._jsonl = open(Path(workdir) / "metrics.jsonl", "a", encoding="utf-8") if self._primary else None
    self._tb = None
    if self._primary:
      from tensorboardX import SummaryWriter  # pylint: disable=import-outside-toplevel
      self._tb = SummaryWriter(str(Path(workdir) / "tensorboard"))

  def write(self, step: int, split: str, values: dict[str, float]) -> None:
    if not self._primary:
      return
    values = {k: float(v) for k, v in values.items()}
    self._jsonl.write(json.dumps({"step": step, "split": split, "time": round(time.time(), 3), **values}) + "\n")
    self._jsonl.flush()
    for k, v in values.items():
      self._tb.add_scalar(f"{split}/{k.replace('@', '_at_')}", v, step)  # TensorBoard rejects '@'
    shown = " ".join(f"{k}={v:.4g}" for k, v in values.items() if k in _SHOWN)
    logging.info("[%s] step %d %s", split, step, shown)

  def close(self) -> None:
    if self._primary:
      self._jsonl.close()
      self._tb.close()


def read(workdir: Path) -> list[dict]:
  path = Path(workdir) / "metrics.jsonl"
  return [json.loads(l) for l in path.read_text().splitlines() if l.strip()] if path.is_file() else []

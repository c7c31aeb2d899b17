"""Training metrics: a JSONL log and TensorBoard event files in the stage folder, plus a console line."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from kd_jax import multihost



# The console line; metrics.jsonl and TensorBoard get everything.
_SHOWN = ("loss", "distill", "hard", "grad_norm", "claims_per_s", "eta_s", "map", "mrr@10", "ndcg@10", "recall@1",
          "recall@5", "recall@10")


def _key(row: dict) -> tuple[int, str]:
  return row["step"], row["split"]


class Logbook:
  """Appends to `metrics.jsonl` so that a resumed run continues its log, holding one row per (step, split).

  A run killed after logging a step but before checkpointing it logs that step again when resumed. With
  `resume_step` (the checkpoint step the run continues from; 0 for a fresh run) rows after it are dropped on
  opening, and TensorBoard is told to purge them too; at 0 nothing of an earlier attempt is kept, since nothing
  of it was saved. Whatever `resume_step` says, writing a (step, split) that is already in the log replaces
  that row, so the log never holds two rows for one (step, split).
  """

  def __init__(self, workdir: Path, resume_step: int | None = None):
    self._primary = multihost.is_primary()
    self._path = Path(workdir) / "metrics.jsonl"
    self._jsonl, self._tb, self._keys = None, None, set()
    if not self._primary:
      return
    rows = _load(self._path)
    kept = rows if resume_step is None else [r for r in rows if resume_step > 0 and r["step"] <= resume_step]
    if len(kept) != len(rows) or len({_key(r) for r in kept}) != len(kept):
      kept = list({_key(r): r for r in kept}.values())  # a log from before this fix: keep each key's last row
      logging.info("%s: kept %d of %d rows (resuming at step %s)", self._path, len(kept), len(rows), resume_step)
      _replace(self._path, kept)
    self._keys = {_key(r) for r in kept}
    self._jsonl = open(self._path, "a", encoding="utf-8")
    from tensorboardX import SummaryWriter  # pylint: disable=import-outside-toplevel
    # purge_step hides the earlier attempt's events at or after it when TensorBoard reads the folder.
    purge = None if resume_step is None else resume_step + 1 if resume_step > 0 else 0
    self._tb = SummaryWriter(str(Path(self._path.parent) / "tensorboard"), purge_step=purge)

  def write(self, step: int, split: str, values: dict[str, float]) -> None:
    if not self._primary:
      return
    values = {k: float(v) for k, v in values.items()}
    row = {"step": step, "split": split, "time": round(time.time(), 3), **values}
    if _key(row) in self._keys:  # logged before by an attempt that did not checkpoint it: replace that row
      self._jsonl.close()
      _replace(self._path, [r for r in _load(self._path) if _key(r) != _key(row)])
      self._jsonl = open(self._path, "a", encoding="utf-8")
    self._keys.add(_key(row))
    self._jsonl.write(json.dumps(row) + "\n")
    self._jsonl.flush()
    for k, v in values.items():
      self._tb.add_scalar(f"{split}/{k.replace('@', '_at_')}", v, step)  # TensorBoard rejects '@'
    shown = " ".join(f"{k}={v:.4g}" for k, v in values.items() if k in _SHOWN)
    logging.info("[%s] step %d %s", split, step, shown)

  def close(self) -> None:
    """Closes the files; in a multi-host job the other processes wait here, so they may read the log after."""
    def close_files():
      if self._primary:
        self._jsonl.close()
        self._tb.close()
    multihost.primary_writes(f"the metrics log {self._path}", close_files)


def _load(path: Path) -> list[dict]:
  """The rows of a metrics file, skipping a line torn by a kill in the middle of a write."""
  rows = []
  if not path.is_file():
    return rows
  for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
    if not line.strip():
      continue
    try:
      rows.append(json.loads(line))
    except json.JSONDecodeError:
      logging.warning("%s:%d: dropping an unreadable (torn) row", path, lineno)
  return rows


def _replace(path: Path, rows: list[dict]) -> None:
  """Rewrites the file under a temporary name and renames it, so a kill never leaves it half-written."""
  tmp = path.with_name(path.name + ".tmp")
  tmp.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
  os.replace(tmp, path)


def read(workdir: Path) -> list[dict]:
  return _load(Path(workdir) / "metrics.jsonl")

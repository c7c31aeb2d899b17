"""Teacher soft labels, computed once per training candidate list and streamed into distillation.

Stored as a companion file keyed by claim id beside the teacher run
(`<teacher_dir>/scores/<prepared-data scores key>/<split>.npz`), together with the candidate rows they score:
a student whose prepared data differ (other candidates, other claims) gets a clear error, never
misaligned labels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from kd_jax import atomic
from kd_jax.data.prepare import Prepared


def path_for(teacher_dir: Path, prepared: Prepared, split: str) -> Path:
  """Scores stored under the prepared folder's own name (older runs), else under its scores key, which caches
  differing only in the students' word inputs share (`lookup` still checks every claim's candidates)."""
  own = Path(teacher_dir) / "scores" / prepared.root.name / f"{split}.npz"
  return own if own.is_file() else Path(teacher_dir) / "scores" / prepared.scores_key / f"{split}.npz"


def save(path: Path, claim_ids: np.ndarray, scores: np.ndarray, cand_index: np.ndarray) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  with atomic.open_for_write(path, "wb") as f:  # a reader never sees a half-written file
    np.savez(f, claim_id=claim_ids.astype(str), scores=scores.astype(np.float32), cand_index=cand_index)


def lookup(path: Path, source) -> Callable[[np.ndarray], np.ndarray]:
  """claim ids [B] -> teacher logits [B, K]; checks every example of `source` is covered and aligned."""
  if not path.is_file():
    raise FileNotFoundError(f"No teacher scores at {path}: run mode=score_candidates with this data config "
                            "(or the distill chain with distill.train_teacher_if_missing=True).")
  stored = np.load(path)
  row = {cid: i for i, cid in enumerate(stored["claim_id"].tolist())}
  for i in range(len(source)):
    ex = source[i]
    cid = ex["claim_id"].decode()
    if cid not in row or not np.array_equal(stored["cand_index"][row[cid]], ex["cand_index"]):
      raise ValueError(f"Teacher scores in {path} do not cover claim {cid} with its current candidates: "
                       "rerun mode=score_candidates for this data config.")
  scores = stored["scores"]
  return lambda ids: scores[[row[c.decode() if isinstance(c, bytes) else c] for c in ids]]

"""mode=score_candidates: the finished teacher's logits for every training candidate list, stored once beside it
and streamed into distillation."""

from __future__ import annotations

import logging
from pathlib import Path

from kd_jax import atomic, multihost, restored, teacher_scores
from kd_jax.data import prepare
from kd_jax.modes import stage


def score_candidates(tcfg, tdir: Path, split: str = "train") -> Path:
  """Runs the finished teacher in `tdir` over every `split` candidate list once and stores the logits."""
  stage.check_writable(tcfg.data)
  prepared = prepare.prepare(tcfg.data)
  path = teacher_scores.path_for(tdir, prepared, split)
  if path.is_file():
    logging.info("Teacher scores already stored in %s; reusing them.", path)
    return path
  atomic.ensure_writable(path.parent, "Teacher scores folder", "pass a writable --config.distill.teacher_dir")
  if not (tdir / "complete.json").is_file():
    raise stage.no_teacher(tdir)
  pred = restored.Restored.load(tcfg, tdir, prepared).predict_split(split)
  multihost.primary_writes(f"teacher scores {path}", lambda: teacher_scores.save(
      path, pred["claim_id"].astype(str), pred["scores"], pred["cand_index"]))
  logging.info("Stored teacher scores for %d %s claims in %s", len(pred["scores"]), split, path)
  return path


def run(config, workdir: str) -> Path:
  """The mode: with a student config, its teacher (distill.teacher_dir or <workdir>/teacher); with the teacher's
  own config, the stage it names."""
  if "distill" in config:
    tdir, tcfg = stage.teacher_config(config, workdir)
  else:
    tdir, tcfg = stage.stage_dir(config, workdir), config
  return score_candidates(tcfg, tdir)

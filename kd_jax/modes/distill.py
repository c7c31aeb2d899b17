"""mode=distill: the chain [teacher] -> [scores] -> student -> test evaluation; finished stages are reused."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from kd_jax import (losses, multihost, pseudo_claims, scored_negatives, sharding, summary, teacher_scores, train,
                    xla_cpu)
from kd_jax.data import pipeline, prepare
from kd_jax.models import build as build_lib
from kd_jax.models.size import count_params
from kd_jax.modes import stage
from kd_jax.modes import train_teacher as train_teacher_mode
from kd_jax.modes.evaluate import evaluate_stage
from kd_jax.modes.score_candidates import score_candidates
from kd_jax.modes.stage import stage_dir


def distill(config, workdir: str) -> dict:
  """The chain: [teacher] -> [scores] -> student -> test evaluation; finished stages are reused."""
  xla_cpu.check(config.train.get("xla_cpu_options"))  # a bad compiler option of the student's step: in a second
  tdir, tcfg = stage.teacher_config(config, workdir)
  stage.check_writable(config.data, stage_dir(config, workdir))  # before the teacher's hours, not after them
  scored_on = bool(config.distill.get("scored", {}).get("count", 0))
  if scored_on and config.distill.online:
    raise ValueError("distill.scored needs stored teacher scores: it cannot run with distill.online=True.")
  prepared = prepare.prepare(config.data)
  if not (tdir / "complete.json").is_file() and not teacher_scores.path_for(tdir, prepared, "train").is_file():
    if not config.distill.train_teacher_if_missing:
      raise stage.no_teacher(tdir)
    logging.info("No finished teacher in %s: training it first.", tdir)
    train_teacher_mode.train_teacher(tcfg, str(tdir.parent))
  else:
    logging.info("Using the finished teacher in %s.", tdir)
  config = _with_first_round(config, workdir)
  built = build_lib.build(config.model, prepared)
  out = stage_dir(config, workdir)
  source = _train_source(config, tdir, tcfg, prepared)
  scored = None
  if scored_on:
    scored = scored_negatives.ensure(config, out, prepared, tcfg, tdir)
    source = scored.source(prepared.source("train") if source is None else source)
  if config.distill.online:
    teacher_built = build_lib.build(tcfg.model, prepared)
    mesh = sharding.stage_mesh(config.mesh)
    tparams, _ = train.restore_params(tdir, teacher_built, tcfg, mesh)
    result = train.fit(config, out, prepared, built, _loss(config), teacher=(teacher_built, tparams),
                       train_source=source)
  else:
    path = score_candidates(tcfg, tdir)
    lookup = teacher_scores.lookup(path, prepared.source("train"))
    if scored is not None:
      lookup = scored.lookup(lookup)
    result = train.fit(config, out, prepared, built, _loss(config), teacher_scores=lookup, train_source=source)
  logging.info("Student %s (%s params): dev %s", config.name, f"{count_params(result.params):,}", result.metrics)
  result = evaluate_stage(config, workdir)
  teacher_eval = tdir / "eval_test.json"
  table = summary.render(result, json.loads(teacher_eval.read_text()) if teacher_eval.is_file() else None, out, tdir)
  if multihost.is_primary():
    print("\n" + table)
  return result


def _with_first_round(config, workdir: str):
  """With distill.scored on and no first-round stage named, the first round is this same student without scored
  negatives, trained first as <name>_round1 (reused once finished); the config returned names it."""
  s = config.distill.get("scored", {})
  if not s.get("count", 0) or s.get("stage"):
    return config
  first = config.copy_and_resolve_references()
  first.name = f"{config.name}_round1"
  first.distill.scored.count = 0
  if not (stage_dir(first, workdir) / "complete.json").is_file():
    logging.info("distill.scored names no first-round student: training %s first.", first.name)
    distill(first, workdir)
  config = config.copy_and_resolve_references()
  config.distill.scored.stage = first.name
  return config


def _train_source(config, tdir: Path, tcfg, prepared):
  """The labelled train split, or (distill.pseudo.count > 0) it mixed with teacher-labelled pseudo-claims."""
  p = config.distill.pseudo
  if not p.count:
    return None
  fake = pseudo_claims.ensure(tcfg, tdir, p, p.count)
  mixed = pipeline.MixedSource(prepared.source("train"), fake, p.fraction)
  logging.info("Training on %d labelled claims and %d pseudo-claims (%d + %d slots an epoch).",
               len(prepared.source("train")), len(fake), mixed.num_real, mixed.num_pseudo)
  return mixed


def _loss(config):
  d = config.distill
  return losses.distill_loss_fn(d.temperature, d.alpha, d.hard)

"""mode=train_teacher: fine-tune the cross-encoder on the training candidates (configs/teacher.py)."""

from __future__ import annotations

import logging

from kd_jax import losses, train
from kd_jax.data import prepare
from kd_jax.models import build as build_lib
from kd_jax.models.size import count_params
from kd_jax.modes import stage
from kd_jax.modes.stage import stage_dir


def train_teacher(config, workdir: str) -> dict:
  stage.check_writable(config.data, stage_dir(config, workdir))
  prepared = prepare.prepare(config.data)
  built = build_lib.build(config.model, prepared)
  out = stage_dir(config, workdir)
  result = train.fit(config, out, prepared, built, losses.hard_loss_fn)
  logging.info("Teacher (%s params) in %s, dev %s", f"{count_params(result.params):,}", out, result.metrics)
  return result.metrics

"""mode=index: a finished student encodes a whole collection once (`<stage>/index/<collection>/`), streamed and
resumable, as the calibrated search of that collection reads it (calibration.py: `-unk<share>` when search.unk_drop
takes the <unk> embedding out there)."""

from __future__ import annotations

import logging
from pathlib import Path

from kd_jax import calibration, collection, indexing, sharding
from kd_jax.models import lexical
from kd_jax.modes import stage
from kd_jax.modes.stage import stage_dir


def index_stage(config, workdir: str) -> Path:
  """Encodes a whole collection once with the stage's best student: `<stage>/index/<collection>/`, streamed and
  resumable."""
  out = stage_dir(config, workdir)
  source = stage.source_of(config)
  cal = calibration.of(config, own=collection.from_config(config) is None)
  root = indexing.index_root(out, source.name, stage.index_dtype(config), cal.unk_drop,
                             lexical.private_of(config.model))
  stage.check_writable(config.data, root)
  mesh = sharding.stage_mesh(config.mesh)
  built, params, inputs = stage.student(config, out, mesh)
  index = indexing.build_for(out, built, params, inputs, source, mesh, config.name, cal, stage.index_dtype(config))
  logging.info("Index of %s by %s: %s", source.name, config.name, index.root)
  return index.root

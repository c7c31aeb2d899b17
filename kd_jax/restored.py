"""A finished stage's best checkpoint, restored to score candidate lists: evaluation, the teacher's soft labels, its
pseudo-claim labels and its scores of a first round's negatives all read a stage the same way, here."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from kd_jax import evaluate, sharding, train
from kd_jax.models import build as build_lib


@dataclasses.dataclass
class Restored:
  """A finished stage's best checkpoint on a mesh, ready to score prepared candidate lists."""
  config: Any
  # What the model is built from: prepare.Prepared (which predict_split and predict_source read), or a stage's
  # stage_inputs.StageInputs to restore a student for search only.
  prepared: Any
  built: build_lib.Built
  mesh: Any
  params: Any
  predict: Any

  @classmethod
  def load(cls, config, stage: Path, prepared, mesh=None) -> Restored:
    """The best checkpoint in `stage`, on `mesh` (default: the config's own, sharding.stage_mesh)."""
    built = build_lib.build(config.model, prepared)
    mesh = sharding.stage_mesh(config.mesh) if mesh is None else mesh
    params, params_sh = train.restore_params(Path(stage), built, config, mesh)
    return cls(config, prepared, built, mesh, params, evaluate.make_predict(built, mesh, params_sh))

  def predict_split(self, split: str) -> dict:
    """Scores of every candidate list of `split` (evaluate.predict_split)."""
    return self.predict_source(self.prepared.source(split))

  def predict_source(self, source) -> dict:
    """Scores of any sequence of examples shaped like the prepared data's (evaluate.predict_source), scored against
    the prepared data the stage was loaded with."""
    return evaluate.predict_source(self.predict, self.params, source, self.prepared, self.config.train.eval_batch_size,
                                   self.mesh, self.built.tokens, self.built.pair_len)

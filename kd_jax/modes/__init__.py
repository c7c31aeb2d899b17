"""The modes `run.py` dispatches to, one module each, looked up by name in `MODES`.

run.py adds the experiments' modes (experiments/: reproduce, pseudo_table); kd_jax itself never imports them.
"""

from __future__ import annotations

from typing import Any, Callable

from kd_jax import multihost, sharding
from kd_jax.modes import distill, evaluate, index, pseudo_claims, score_candidates, search, train_teacher

Mode = Callable[[Any, str], Any]  # (config, workdir) -> the mode's result

MODES: dict[str, Mode] = {
    "train_teacher": train_teacher.train_teacher,
    "score_candidates": score_candidates.run,
    "pseudo_claims": pseudo_claims.run,
    "distill": distill.distill,
    "evaluate": evaluate.evaluate_stage,
    "index": index.index_stage,
    "search": search.search_stage,
}


def run(config, workdir: str, extra: dict[str, Mode] | None = None):
  """Runs `config.mode` (from MODES, or `extra`) after joining the multi-host job if the config asks for one."""
  table = {**MODES, **(extra or {})}
  if config.mode not in table:
    raise ValueError(f"Unknown mode {config.mode!r}: use one of {', '.join(table)}.")
  sharding.split_cpu(config.get("cpu_devices", 0))
  multihost.initialize(config.distributed)
  return table[config.mode](config, workdir)

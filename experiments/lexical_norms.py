"""Choosing how far documents' lexical norms are pulled toward the searched collection's median (`search.lex_norms`,
kd_jax/doc_norms.py), on top of the calibration experiments/calibration.py chose (each stage's saved `doc_norms` and
`stop_df`). Writes results/lexical_norms.json, results/lexical_norms.md (a section of RESULTS.md) and
results/lexical_norms.png.

  KD_JAX_DATA_DIR=../shared/data python -m experiments.lexical_norms --workdir=workdir

Stages are finished students under --workdir (search_grid.STAGES, one per seed: the main commands' CNN and BiLSTM,
in the workdirs the seed tables name); --stages names others. How the strength is chosen, and the hub correction on
top: experiments/search_grid.py.
"""

from __future__ import annotations

import dataclasses

from absl import app, flags

from experiments import calibration as calibration_experiment, search_grid
from kd_jax import calibration, doc_norms

STRENGTHS = (0.0, 0.25, 0.5, 0.75, 1.0)
SETTING = search_grid.Setting(
    name="lex_norms",
    # Each stage's saved calibration, lex_norms then set per strength; as measured, before unk_drop existed.
    base=lambda cfg, own: dataclasses.replace(calibration.of(cfg, own=own), unk_drop=0.0),
    title="Lexical norms calibrated for the collection searched",
    what="(kd_jax/doc_norms.py): on top of the calibration chosen above, each document's lexical-channel norm is "
         "pulled that far (in log space) toward the median of the collection searched (`search.lex_norms`).",
    axis="lex_norms strength (0: as trained)", plural="lexical strengths")


def main(argv):
  del argv
  strengths = sorted({doc_norms.check(x, "--strengths") for x in map(float, flags.FLAGS.strengths)})
  search_grid.run(SETTING, "lexical_norms", strengths)


def _define_flags() -> None:
  calibration_experiment.define_stage_flags("lexical_norms")
  search_grid.define_rows_from_flag()
  flags.DEFINE_list("strengths", [f"{s:g}" for s in STRENGTHS], "Lexical norm strengths to compare (0 = as trained).")


if __name__ == "__main__":
  _define_flags()
  app.run(main)

"""Choosing how much of the shared out-of-vocabulary embedding (`<unk>`) the towers read when encoding for a
collection (`search.unk_drop`, kd_jax/calibration.py), on top of today's calibration (configs/common.py's
`doc_norms`, `stop_df` and `lex_norms`), per student kind. Writes results/unknown_words_<kind>.json, .md (a section
of RESULTS.md) and .png:

  KD_JAX_DATA_DIR=../shared/data python -m experiments.unknown_words --workdir=workdir --kind=cnn
  KD_JAX_DATA_DIR=../shared/data python -m experiments.unknown_words --workdir=workdir --kind=lstm

Why: every word outside a student's vocabulary reads one learned row, `<unk>`. On SciFact that row stands for rare
technical terms; on FEVER's page titles, 57% of whose words are unknown to a SciFact student, it stands for most
names, and the BiLSTM's document vectors follow it. Stages (STAGES: both directions), the choice and the hub
correction on top: experiments/search_grid.py (each grid point is encoded anew: unk_drop changes what the towers
read). The configs/<kind>_student.py files carry the choices.
"""

from __future__ import annotations

import dataclasses

from absl import app, flags

from configs import common
from experiments import calibration as calibration_experiment, search_grid
from kd_jax import calibration, doc_norms

SHARES = (0.0, 0.5, 1.0)
SETTING = search_grid.Setting(
    name="unk_drop",
    # Today's search defaults for everything else (the dense and lexical norms, stop_df chosen before), whatever the
    # stage's config was saved with.
    base=lambda cfg, own: dataclasses.replace(calibration.of(common.base_config("search"), own=own), unk_drop=0.0),
    title="Unknown words out of the towers' inputs",
    what="(kd_jax/calibration.py): on top of the calibration and lexical norms chosen above, claims and documents "
         "are encoded with that share of the `<unk>` embedding row removed (`search.unk_drop`; 1: out-of-vocabulary "
         "words add nothing to what the towers read, while the lexical channel still matches them).",
    axis="unk_drop (0: as trained)", plural="unk_drop shares")


# Both directions: the SciFact students (3 seeds) searching FEVER-titles, and FEVER-titles students (one seed each,
# trained by the main configs with --config.data.name=fever_titles --config.data.doc_word_len=16
# --config.teacher.model.pair_len=48 --workdir=workdir/fever) searching SciFact.
STAGES = search_grid.STAGES + ("fever/cnn_student", "fever/lstm_student")
KINDS = {"cnn": "CNN", "lstm": "BiLSTM"}


def main(argv):
  del argv
  f = flags.FLAGS
  shares = sorted({doc_norms.check(x, "--shares", "0: as trained, 1: no <unk> embedding")
                   for x in map(float, f.shares)})
  setting = dataclasses.replace(SETTING, title=SETTING.title + (f": {KINDS[f.kind]} students" if f.kind else ""))
  search_grid.run(setting, "unknown_words", shares, STAGES, f.kind)


def _define_flags() -> None:
  calibration_experiment.define_stage_flags("unknown_words")
  search_grid.define_rows_from_flag()
  flags.DEFINE_list("shares", [f"{s:g}" for s in SHARES], "Shares of the <unk> embedding removed (0 = as trained).")
  # The share is chosen per student kind: it acts on what each tower reads, and the kinds part ways on it (a BiLSTM's
  # state follows <unk> through the text; a CNN's filters see a few words at a time).
  flags.DEFINE_enum("kind", "", ["", *KINDS], "Only the stages of this student kind (results/unknown_words_<kind>.*).")


if __name__ == "__main__":
  _define_flags()
  app.run(main)

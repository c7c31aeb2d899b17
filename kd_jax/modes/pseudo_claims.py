"""mode=pseudo_claims: teacher-labelled pseudo-claims (sentences of the collection), stored beside the teacher and
reused by distill when distill.pseudo.count > 0."""

from __future__ import annotations

from kd_jax import pseudo_claims
from kd_jax.modes import stage


def run(config, workdir: str) -> int:
  if "distill" not in config:
    raise ValueError("mode=pseudo_claims needs a student config (cnn_student.py, lstm_student.py): it labels "
                     "pseudo-claims with that config's teacher, sized by --config.distill.pseudo.count.")
  tdir, tcfg = stage.teacher_config(config, workdir)
  stage.check_writable(config.data, tdir / "pseudo")  # the teacher labels for minutes, then stores the set there
  return len(pseudo_claims.ensure(tcfg, tdir, config.distill.pseudo, config.distill.pseudo.count))

"""Student kinds by name (kd_jax/models/registry.py): a third kind defined outside kd_jax trains, searches and is
named in tables through its own module and config only; unknown kinds fail naming the known ones."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from configs import cnn_student, lstm_student
from experiments import reproduce
from kd_jax import losses, search, sharding, train
from kd_jax.data import prepare
from kd_jax.models import build as build_lib
from kd_jax.models import registry
from tests.support import tiny_student_config

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # trains, prepares real data or compiles large steps: seconds each
def test_a_student_defined_outside_kd_jax_trains_and_searches(data_dir, tmp_path):
  c = tiny_student_config.get_config("smoke")
  c.data.dir, c.data.cache_dir = str(data_dir), str(tmp_path / "cache")
  c.train.steps, c.train.eval_full_collection = 4, True
  prepared = prepare.prepare(c.data)
  built = build_lib.build(c.model, prepared)
  assert type(built.module).__name__ == "BagOfWordsStudent" and built.module.config.hidden == 32
  result = train.fit(c, tmp_path / "bow", prepared, built, losses.hard_loss_fn)
  assert 0 <= result.metrics["full_ndcg@10"] <= 1 and np.isfinite(result.metrics["ndcg@10"])
  mesh = sharding.make_mesh(c.mesh.data, c.mesh.model)  # where fit left the params
  scores, rows, ids = search.search_split(built, result.params, prepared, "test", mesh, k=5)
  assert rows.shape == (len(ids), 5) and (np.diff(scores, axis=1) <= 1e-6).all()
  assert registry.display_name("bow") == "Bag of words"
  # Stage reuse compares only the fields the kind reads, so a saved config with fields of other kinds still matches.
  saved = dict(c.model.to_dict(), widths=[1, 2], pooling="max")
  assert registry.model_fields(saved) == registry.model_fields(c.model.to_dict())
  assert registry.model_fields(dict(saved, hidden=64)) != registry.model_fields(c.model.to_dict())


def test_model_fields_keep_a_kinds_own_fields_only():
  cnn, lstm = cnn_student.get_config().model.to_dict(), lstm_student.get_config().model.to_dict()
  assert "widths" in registry.model_fields(cnn) and "hidden" not in registry.model_fields(cnn)
  old_cnn = dict(cnn, hidden=128, pooling="max")  # configs saved before per-kind fields carried both
  assert registry.model_fields(old_cnn) == registry.model_fields(cnn)
  assert registry.model_fields(dict(lstm, pooling="mean")) != registry.model_fields(lstm)


def test_unknown_kinds_and_modules_fail_naming_what_is_known(data_dir, tmp_path):
  c = cnn_student.get_config("smoke")
  c.data.dir, c.data.cache_dir = str(data_dir), str(tmp_path)
  prepared = prepare.prepare(c.data)
  c.model.kind = "gru"
  with pytest.raises(ValueError, match="known kinds are (bow, )?cnn, lstm"):
    build_lib.build(c.model, prepared)
  c.model.module = "no_such_package.student"
  with pytest.raises(ValueError, match="cannot be imported"):
    build_lib.build(c.model, prepared)


def test_reproduce_names_a_registered_kind():
  assert registry.display_name("lstm") == "BiLSTM" and registry.display_name("cnn") == "CNN"
  assert registry.display_name("not_registered") == "not_registered"  # tables made by other versions stay readable
  assert "BiLSTM alpha=0.25" in reproduce._settings_text(reproduce_config_for(("cnn", "lstm")))


def reproduce_config_for(kinds):
  from configs import reproduce as reproduce_config  # pylint: disable=import-outside-toplevel
  r = reproduce_config.get_config().reproduce
  r.students = kinds
  return r


@pytest.mark.slow  # trains, prepares real data or compiles large steps: seconds each
def test_run_py_rejects_an_unknown_kind_in_one_line(tmp_path):
  proc = subprocess.run([sys.executable, "run.py", "--config=configs/cnn_student.py", f"--workdir={tmp_path}",
                         "--config.model.kind=gru", "--config.mode=evaluate", "--config.name=x"],
                        cwd=REPO, capture_output=True, text=True, timeout=300)
  assert proc.returncode != 0
  assert "known kinds are cnn, lstm" in proc.stderr.strip().splitlines()[-1]

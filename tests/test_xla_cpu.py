"""The train step's XLA:CPU compiler options (kd_jax/xla_cpu.py): they reach the compiled step, leave its numbers
alone, stay off accelerators, and a bad one is a one-line error before anything loads or trains."""

import types

import jax
import numpy as np
import pytest

from configs import cnn_student, lstm_student
from kd_jax import losses, sharding, train, xla_cpu
from kd_jax.data import pipeline, prepare
from kd_jax.models import build as build_lib
from kd_jax.modes import distill


def test_a_bad_option_is_refused_in_one_line():
  for bad, named in (({"xla_cpu_bogus": 1}, "xla_cpu_bogus"), ({"xla_cpu_prefer_vector_width": "wide"}, "wide")):
    with pytest.raises(ValueError) as info:
      xla_cpu.options(bad, jax.devices())
    assert "\n" not in str(info.value) and named in str(info.value) and "train.xla_cpu_options" in str(info.value)


def test_options_are_left_out_on_accelerators_and_when_empty():
  gpus = [types.SimpleNamespace(platform="gpu")] * 2
  assert xla_cpu.options({"xla_cpu_bogus": 1}, gpus) == {}  # not even checked: XLA:GPU would not read them
  assert xla_cpu.options({}, jax.devices()) == {} and xla_cpu.options(None, jax.devices()) == {}
  assert cnn_student.get_config().train.xla_cpu_options.to_dict() == {}  # XLA's defaults for the CNN
  opts = lstm_student.get_config().train.xla_cpu_options
  assert xla_cpu.options(opts, sharding.make_mesh(1, 1)) == opts.to_dict() != {}


def test_distill_refuses_a_bad_option_before_it_reads_any_data(tmp_path):
  config = lstm_student.get_config()
  config.data.dir = str(tmp_path / "no_data_here")  # reading it would fail with another message
  config.data.cache_dir = str(tmp_path / "cache")
  config.train.xla_cpu_options = {"xla_cpu_bogus": 1}
  with pytest.raises(ValueError, match="train.xla_cpu_options .*XLA rejects"):
    distill.distill(config, str(tmp_path / "work"))


@pytest.mark.slow  # prepares real data and compiles the BiLSTM's step
def test_the_bilstm_step_takes_its_options_to_xla_and_computes_the_same(data_dir, tmp_path, monkeypatch):
  config = lstm_student.get_config("smoke")
  config.data.dir, config.data.cache_dir = str(data_dir), str(tmp_path / "cache")
  prepared = prepare.prepare(config.data)
  built = build_lib.build(config.model, prepared)
  mesh = sharding.make_mesh(1, 1)
  batch = pipeline.TrainBatches(prepared.source("train"), 8, 0, pipeline.gather_transform(prepared, built.tokens))[0]
  batch["teacher_scores"] = batch["bm25_scores"]
  batch = sharding.put_batch(batch, mesh)
  tx = train.make_optimizer(config.train)

  def step_for(opts):
    state, state_sh = train.init_state(built, tx, jax.random.key(0), mesh)
    step = train.jit_step(train.make_train_step(built, tx, losses.distill_loss_fn(2.0, 0.5, "listwise")), mesh,
                          state_sh, xla_cpu_options=opts)
    return step, state

  results = []
  for opts in ({}, config.train.xla_cpu_options):
    step, state = step_for(opts)
    state, metrics = step(state, batch, jax.random.key(1))
    results.append((jax.device_get(state["params"]), float(metrics["loss"])))
  np.testing.assert_allclose(results[1][1], results[0][1], rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-4), results[1][0], results[0][0])
  # What jit_step is given reaches XLA's compiler: with the early check out of the way, XLA itself refuses a bad one.
  monkeypatch.setattr(xla_cpu, "check", lambda options: None)
  step, state = step_for({"xla_cpu_bogus_option": 1})
  with pytest.raises(Exception, match="xla_cpu_bogus_option"):
    step.lower(state, batch, jax.random.key(1)).compile()

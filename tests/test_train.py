"""Sharded train steps (8 devices == 1 device), resumption, and the run.py chain on real SciFact."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from configs import cnn_student, lstm_student, teacher as teacher_config
from kd_jax import losses, sharding, teacher_scores, train
from kd_jax.data import candidates, datasets, pipeline, prepare
from kd_jax.models import build as build_lib

REPO = Path(__file__).resolve().parents[1]


def _config(module, data_dir, cache_dir, **train_overrides):
  c = module.get_config("smoke")
  c.data.dir = str(data_dir)
  c.data.cache_dir = str(cache_dir)
  for k, v in train_overrides.items():
    c.train[k] = v
  return c


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
  return tmp_path_factory.mktemp("cache")


def _one_step(config, prepared, mesh):
  built = build_lib.build(config.model, prepared)
  tx = train.make_optimizer(config.train)
  state, state_sh = train.init_state(built, tx, jax.random.key(0), mesh)
  loss_fn = losses.hard_loss_fn if built.kind == "teacher" else losses.distill_loss_fn(2.0, 0.5, "listwise")
  step = train.jit_step(train.make_train_step(built, tx, loss_fn), mesh, state_sh)
  batches = pipeline.TrainBatches(prepared.source("train"), 8, 0, pipeline.gather_transform(
      prepared, built.tokens, config.model.get("pair_len", 0)))
  batch = batches[0]
  batch["teacher_scores"] = batch["bm25_scores"]  # any fixed soft labels will do for equivalence
  state, metrics = step(state, sharding.put_batch(batch, mesh), jax.random.key(1))
  return jax.device_get(state["params"]), float(metrics["loss"])


@pytest.mark.parametrize("module,meshes", [
    (cnn_student, [(8, 1)]), (lstm_student, [(8, 1)]), (teacher_config, [(8, 1), (4, 2)])])
@pytest.mark.slow  # trains, prepares real data or compiles large steps: seconds each
def test_sharded_step_equals_single_device(module, meshes, data_dir, cache_dir):
  config = _config(module, data_dir, cache_dir)
  prepared = prepare.prepare(config.data)
  ref_params, ref_loss = _one_step(config, prepared, sharding.make_mesh(1, 1))
  for data, model in meshes:
    params, loss = _one_step(config, prepared, sharding.make_mesh(data, model))
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5, atol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5), params, ref_params)


@pytest.mark.slow  # trains, prepares real data or compiles large steps: seconds each
def test_killed_run_resumes_to_identical_params(data_dir, cache_dir, tmp_path):
  config = _config(cnn_student, data_dir, cache_dir, steps=8, checkpoint_every=4, eval_every=100)
  prepared = prepare.prepare(config.data)
  built = build_lib.build(config.model, prepared)
  straight = train.fit(config, tmp_path / "straight", prepared, built, losses.hard_loss_fn)
  train.fit(config, tmp_path / "killed", prepared, built, losses.hard_loss_fn, stop_after=4)
  assert not (tmp_path / "killed" / "complete.json").exists()
  resumed = train.fit(config, tmp_path / "killed", prepared, built, losses.hard_loss_fn)
  assert resumed.initial_metrics is None  # it continued, not restarted
  jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6),
               resumed.params, straight.params)


def _run(args, env_extra=None, check=True):
  env = dict(os.environ, **(env_extra or {}))
  proc = subprocess.run([sys.executable, str(REPO / "run.py"), *args], cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=900)
  if check and proc.returncode:
    raise AssertionError(f"run.py failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
  return proc


@pytest.mark.slow  # a minutes-long chain of stages
def test_smoke_chain_through_run_py(data_dir, smoke_chain, tmp_path):
  # The chain itself ran once in conftest's smoke_chain (as `run.py --config=configs/cnn_student.py:smoke` with
  # these flags); this test extends a copy of it with index, search, pseudo-claims and a second run.
  chain, cache_dir = smoke_chain
  shutil.copytree(chain, tmp_path, dirs_exist_ok=True)
  common = [f"--workdir={tmp_path}", f"--config.data.dir={data_dir}", f"--config.data.cache_dir={cache_dir}"]
  student = tmp_path / "cnn_student"
  for stage in (tmp_path / "teacher", student):
    assert (stage / "complete.json").is_file() and (stage / "checkpoints").is_dir()
    assert re.fullmatch(r".+ \(cpu, \d+ devices?\)", json.loads((stage / "complete.json").read_text())["machine"])
    assert any((stage / "tensorboard").iterdir())
  log = [json.loads(l) for l in (student / "metrics.jsonl").read_text().splitlines()]
  dev = [r for r in log if r["split"] == "dev"]
  assert dev[0]["step"] == 0 and dev[-1]["ndcg@10"] > dev[0]["ndcg@10"], dev
  result = json.loads((student / "eval_test.json").read_text())
  assert result["rerank"]["num_queries"] > 0 and 0 < result["params"] < 3_000_000
  assert result["full_collection"]["num_queries"] == result["rerank"]["num_queries"]
  scores = list((tmp_path / "teacher" / "scores").rglob("train.npz"))
  assert len(scores) == 1
  # The trained student indexes the collection once, then searches it from the stored vectors.
  _run(["--config=configs/cnn_student.py:smoke", "--config.mode=index", *common])
  # At home the student reads half the <unk> embedding row (search.unk_drop.own), so its index is named for it.
  # Its lexical buckets laid out as configs/cnn_student.py lays them out (model.lexical_private), so named for that too.
  private = cnn_student.get_config().model.lexical_private
  assert (student / "index" / f"scifact-unk0.5-private{private}" / "doc_vecs.npy").is_file()
  found = _run(["--config=configs/cnn_student.py:smoke", "--config.mode=search",
                "--config.search.query=Vitamin D deficiency increases cancer risk", *common])
  assert len(_hits(found)) == 10, found.stdout
  # Hybrid search: the weight dev chose for the calibrated student by default (search is calibrated); at weight 0
  # the ranking is BM25's own.
  assert set(result["hybrid"]) == {"linear", "zscore", "rrf", "gated", "coverage", "zcoverage"}
  assert set(result["calibrated"]["hybrid"]) == set(result["hybrid"])
  query = "Vitamin D deficiency increases cancer risk"
  fused = _run(["--config=configs/cnn_student.py:smoke", "--config.mode=search", "--config.search.hybrid=rrf",
                f"--config.search.query={query}", *common])
  assert "Calibrated search" in fused.stderr
  weight = result["calibrated"]["hybrid"]["rrf"]["full_collection"]["weight"]
  assert f"student weight {weight:.2f} (chosen on dev for the calibrated student)" in fused.stderr
  bm25_only = _run(["--config=configs/cnn_student.py:smoke", "--config.mode=search", "--config.search.hybrid=linear",
                    "--config.search.hybrid_weight=0", f"--config.search.query={query}", *common])
  config = _config(cnn_student, data_dir, cache_dir)
  coll = datasets.load(config.data).collection
  rows, _ = candidates.BM25Index(coll).search([query], 10)
  assert [l.split()[2] for l in _hits(bm25_only)] == [coll.ids[r] for r in rows[0]]
  # Pseudo-claims as a mode of their own: labelled by the finished teacher, stored beside it.
  _run(["--config=configs/cnn_student.py:smoke", "--config.mode=pseudo_claims", "--config.distill.pseudo.count=16",
        *common])
  meta = json.loads(next((tmp_path / "teacher" / "pseudo").glob("*/*/meta.json")).read_text())
  assert meta["count"] == 16 and meta["pool"] > 10_000
  empty = _run(["--config=configs/cnn_student.py:smoke", "--config.mode=search", "--config.search.query=qwxzv",
                *common], check=False)
  _one_line_error(empty, "No word of the claim")
  # Second run: every stage is reused, nothing retrained.
  again = _run(["--config=configs/cnn_student.py:smoke", *common])
  assert "Using the finished teacher" in again.stderr and "reusing them" in again.stderr
  assert "Resumed" in again.stderr


def _hits(proc) -> list[str]:
  """The result lines of mode=search ('  1.     3.141  <doc id>  <snippet>')."""
  return [l for l in proc.stdout.splitlines() if l.strip()[:3].strip().rstrip(".").isdigit()]


def _one_line_error(proc, *needles):
  assert proc.returncode != 0
  last = proc.stderr.strip().splitlines()[-1]
  for needle in needles:
    assert needle in last, proc.stderr[-2000:]


@pytest.mark.slow  # trains, prepares real data or compiles large steps: seconds each
def test_bad_input_gives_one_line_errors(data_dir, cache_dir, tmp_path):
  common = [f"--workdir={tmp_path}", f"--config.data.dir={data_dir}", f"--config.data.cache_dir={cache_dir}"]
  _one_line_error(_run(["--config=configs/cnn_student.py:smoke", "--config.train.no_such_key=1", *common],
                       check=False), "no_such_key")
  _one_line_error(_run(["--config=configs/cnn_student.py:smoke", "--config.distill.train_teacher_if_missing=False",
                        *common], check=False), "No finished teacher", "configs/teacher.py")
  _one_line_error(_run(["--config=configs/cnn_student.py:smoke", "--config.mesh.data=16", *common],
                       env_extra={"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}, check=False),
                  "needs 16 devices", "--config.mesh.data")
  config = _config(cnn_student, data_dir, cache_dir)
  prepared = prepare.prepare(config.data)
  with pytest.raises(FileNotFoundError, match="score_candidates"):
    teacher_scores.lookup(tmp_path / "none.npz", prepared.source("train"))
  _one_line_error(_run(["--config=configs/cnn_student.py:smoke", "--config.data.dir=/no/such/dir",
                        f"--workdir={tmp_path}"], check=False), "--config.data.dir")


@pytest.mark.slow  # trains, prepares real data or compiles large steps: seconds each
def test_online_teacher_equals_stored_scores(data_dir, cache_dir, tmp_path):
  """distill.online computes, inside the step, the same soft labels score_candidates stores."""
  from kd_jax import evaluate
  student_cfg = _config(cnn_student, data_dir, cache_dir)
  prepared = prepare.prepare(student_cfg.data)
  mesh = sharding.make_mesh(-1, 1)
  teacher = build_lib.build(student_cfg.teacher.model, prepared)
  tparams = teacher.init(jax.random.key(5))
  tsh = sharding.param_shardings(tparams, mesh)
  pair_len = student_cfg.teacher.model.pair_len
  pred = evaluate.predict_split(evaluate.make_predict(teacher, mesh, tsh), tparams, prepared, "train", 16, mesh,
                                "pairs", pair_len)
  path = tmp_path / "train.npz"
  teacher_scores.save(path, pred["claim_id"].astype(str), pred["scores"], pred["cand_index"])
  lookup = teacher_scores.lookup(path, prepared.source("train"))

  student = build_lib.build(student_cfg.model, prepared)
  tx = train.make_optimizer(student_cfg.train)
  loss_fn = losses.distill_loss_fn(2.0, 0.5, "listwise")
  distill_terms = []
  for online in (False, True):
    state, state_sh = train.init_state(student, tx, jax.random.key(0), mesh)
    tokens = "both" if online else "words"
    batch = pipeline.TrainBatches(prepared.source("train"), 8, 0, pipeline.gather_transform(
        prepared, tokens, pair_len, None if online else lookup))[0]
    step = train.jit_step(train.make_train_step(student, tx, loss_fn, teacher if online else None), mesh, state_sh,
                          tsh if online else None)
    extra = (jax.device_put(tparams, tsh),) if online else ()
    _, metrics = step(state, sharding.put_batch(batch, mesh), jax.random.key(1), *extra)
    distill_terms.append(float(metrics["distill"]))
  np.testing.assert_allclose(distill_terms[1], distill_terms[0], rtol=1e-4)


@pytest.mark.slow  # trains, prepares real data or compiles large steps: seconds each
def test_frozen_embeddings_stay_put(data_dir, cache_dir):
  """freeze_embeddings: no gradient reaches the table and weight decay does not shrink it either."""
  config = _config(cnn_student, data_dir, cache_dir)
  config.model.freeze_embeddings = True
  config.train.weight_decay = 0.5
  prepared = prepare.prepare(config.data)
  built = build_lib.build(config.model, prepared)
  mesh = sharding.make_mesh(1, 1)
  tx = train.make_optimizer(config.train)
  state, state_sh = train.init_state(built, tx, jax.random.key(0), mesh)
  before = np.asarray(state["params"]["encoder"]["tokens"]["embed"]["embedding"])
  kernel = np.asarray(state["params"]["encoder"]["proj"]["kernel"]) if "proj" in state["params"]["encoder"] \
      else None
  step = train.jit_step(train.make_train_step(built, tx, losses.hard_loss_fn), mesh, state_sh)
  batch = pipeline.TrainBatches(prepared.source("train"), 8, 0, pipeline.gather_transform(prepared, "words"))[0]
  for _ in range(3):
    state, _ = step(state, sharding.put_batch(batch, mesh), jax.random.key(1))
  np.testing.assert_array_equal(np.asarray(state["params"]["encoder"]["tokens"]["embed"]["embedding"]), before)
  if kernel is not None:
    assert not np.array_equal(np.asarray(state["params"]["encoder"]["proj"]["kernel"]), kernel)


def test_cpu_devices_split_the_host_before_jax_starts_and_refuse_after():
  # A fresh process without the tests' XLA_FLAGS: cpu_devices=2 gives two CPU devices; asking for another count once
  # JAX has run is a one-line ValueError, and XLA_FLAGS' own count wins.
  code = ("import jax, jax.numpy as jnp\nfrom kd_jax import sharding\nsharding.split_cpu(2)\n"
          "assert len(jax.devices('cpu')) == 2, jax.devices()\njnp.zeros(1).block_until_ready()\n"
          "sharding.split_cpu(2)\n"  # the same count again: nothing to do
          "try:\n  sharding.split_cpu(3)\nexcept ValueError as e:\n  print('refused:', e)\n")
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "refused: cpu_devices=3 must be set before JAX runs anything" in proc.stdout
  env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=3"
  code = "import jax\nfrom kd_jax import sharding\nsharding.split_cpu(2)\nprint(len(jax.devices('cpu')))\n"
  proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert proc.stdout.strip().endswith("3"), proc.stderr[-3000:]


def test_students_take_one_device_of_a_split_cpu_and_the_teacher_both():
  # stage_mesh: on a CPU that split_cpu divided, mesh.split_cpu_data > 0 sizes the data axis (the students' configs
  # set 1); an explicit mesh.data, a config saved before the field, and a device count from XLA_FLAGS are left alone.
  code = ("import ml_collections as mc\nfrom configs import cnn_student\nfrom kd_jax import sharding\n"
          "from kd_jax.modes import stage\nsharding.split_cpu(2)\n"
          "size = lambda **m: sharding.stage_mesh(mc.ConfigDict({'data': -1, 'model': 1, **m})).devices.size\n"
          "print(size(split_cpu_data=1), size(split_cpu_data=-1), size(data=2, split_cpu_data=1), size(),"
          " size(split_cpu_data=4))\n"
          # the chain: the student on one device, the teacher it trains or restores on both
          "c = cnn_student.get_config()\n_, t = stage.teacher_config(c, '/nonexistent')\n"
          "print(sharding.stage_mesh(c.mesh).devices.size, sharding.stage_mesh(t.mesh).devices.size)\n")
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.split() == ["1", "2", "2", "2", "2", "1", "2"], proc.stdout
  assert cnn_student.get_config().mesh.split_cpu_data == 1 and lstm_student.get_config().mesh.split_cpu_data == 1
  assert teacher_config.get_config().mesh.split_cpu_data == -1
  assert cnn_student.get_config().teacher.mesh.split_cpu_data == -1
  # This process's 8 devices come from XLA_FLAGS, not split_cpu: students shard over all of them, as tested here.
  cfg = cnn_student.get_config()
  assert sharding.stage_mesh(cfg.mesh).devices.size == len(jax.devices()) == 8

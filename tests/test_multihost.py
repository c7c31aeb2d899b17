"""Multi-host runs with real processes: 2 CPU processes on 127.0.0.1 (4 fake devices each) against 1 process with 8.

The 2-process run is the README's own block (section "Running on several hosts"), run as written with only its
folder and port replaced: it must give the single-process numbers with dropout on, write no shared file from
process 1, and its checkpoints must restore in 1 process (and a 1-process checkpoint in 2).
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import traverse_util

from configs import cnn_student
from kd_jax import sharding, train
from kd_jax.data import prepare
from kd_jax.models import build as build_lib

REPO = Path(__file__).resolve().parents[1]
SUPPORT = Path(__file__).resolve().parent / "support"  # sitecustomize.py: the write audit
pytestmark = pytest.mark.slow  # minutes of subprocess chains; `pytest -m "not slow"` skips them


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _env(cache: Path, devices: int | None = None, audit: Path | None = None, roots=()) -> dict:
  env = dict(os.environ, KD_JAX_CACHE=str(cache), JAX_PLATFORMS="cpu",
             PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
  env.setdefault("KD_JAX_DATA_DIR", str(REPO.parent / "shared" / "data"))
  if devices:
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  else:
    env.pop("XLA_FLAGS", None)  # the README block sets its own
  if audit:
    env.update(PYTHONPATH=f"{SUPPORT}{os.pathsep}{env.get('PYTHONPATH', '')}", KD_JAX_AUDIT_WRITES=str(audit),
               KD_JAX_AUDIT_ROOTS=os.pathsep.join(str(r) for r in roots))
  return env


def readme_block(workdir: Path, port: int) -> str:
  """The README's two-process block, with its folder and port replaced."""
  text = (REPO / "README.md").read_text()
  block = re.search(r"<!-- multihost-local -->\n```bash\n(.*?)```", text, re.S)
  assert block, "README.md lost its <!-- multihost-local --> block"
  script = block[1]
  assert "/tmp/kd_two_processes" in script and "127.0.0.1:12355" in script
  return script.replace("/tmp/kd_two_processes", str(workdir)).replace("127.0.0.1:12355", f"127.0.0.1:{port}")


def _run(cmd, env, timeout: int, **kwargs) -> subprocess.CompletedProcess:
  proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, **kwargs)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
  return proc


@pytest.fixture(scope="module")
def runs(tmp_path_factory, smoke_chain):
  """The smoke chain (teacher, scores, CNN student, evaluation) in 1 process with 8 devices (conftest's, shared with
  test_train), and as the README's 2-process block; each built its own data cache."""
  root = tmp_path_factory.mktemp("multihost")
  one, cache_one = smoke_chain
  two = root / "two"
  audit = root / "audit"
  audit.mkdir()
  proc = _run(["bash", "-c", readme_block(two, _free_port())],
              _env(root / "cache_two", audit=audit, roots=(two, root / "cache_two")), timeout=1200)
  # `wait` does not report a failed process: its missing output does.
  assert (two / "cnn_student" / "eval_test.json").is_file(), proc.stdout[-3000:] + proc.stderr[-5000:]
  return cache_one, one, two, audit


def _eval(run: Path) -> dict:
  return json.loads((run / "cnn_student" / "eval_test.json").read_text())


def test_two_processes_give_the_single_process_numbers_with_dropout_on(runs, data_dir):
  cache_one, one, two, _ = runs
  config = json.loads((two / "cnn_student" / "config.json").read_text())
  assert config["distributed"]["num_processes"] == 2 and config["model"]["dropout_rate"] > 0
  assert json.loads((two / "teacher" / "config.json").read_text())["model"]["dropout_rate"] > 0
  a, b = _eval(one), _eval(two)
  for key in ("rerank", "full_collection"):
    assert a[key] == b[key], key
  # Fusions by score equal exactly. Reciprocal-rank fusion reads only ranks, so two documents the student scores
  # within the parameters' reduction-order noise (below) may swap and move one claim's ranking: each figure, a mean
  # over claims of a per-claim value in [0, 1], may then differ by at most 1 / (number of claims).
  rank_based = {"rrf"}
  assert {m: v for m, v in a["hybrid"].items() if m not in rank_based} == {
      m: v for m, v in b["hybrid"].items() if m not in rank_based}
  claims = a["full_collection"]["num_queries"]
  for m in rank_based & set(a["hybrid"]):
    x, y = (traverse_util.flatten_dict(run["hybrid"][m]) for run in (a, b))
    assert x.keys() == y.keys(), m
    for key, value in x.items():
      assert abs(value - y[key]) <= 1 / claims + 1e-12, (m, key, value, y[key])
  # Training curves: the same losses to float tolerance at every logged step. The float32 loss is summed in another
  # order over two processes' shards than over one process's; on an AMD EPYC (Zen 5) that moved a 31.66 loss by
  # 1.8e-5 relative, so 1e-4 (the evaluation figures above stay exactly equal).
  for stage in ("teacher", "cnn_student"):
    rows = [[json.loads(line) for line in (run / stage / "metrics.jsonl").open()] for run in (one, two)]
    assert [(r["step"], r["split"]) for r in rows[0]] == [(r["step"], r["split"]) for r in rows[1]]
    for x, y in zip(*rows):
      np.testing.assert_allclose(x.get("loss", x.get("ndcg@10")), y.get("loss", y.get("ndcg@10")), rtol=1e-4)
  # The 2-process checkpoint restores in this one process (8 devices), as the 1-process run's parameters.
  c = cnn_student.get_config("smoke")
  c.data.dir, c.data.cache_dir = str(data_dir), str(cache_one)
  prepared = prepare.prepare(c.data)
  built = build_lib.build(c.model, prepared)
  mesh = sharding.make_mesh()
  params = [jax.device_get(train.restore_params(run / "cnn_student", built, c, mesh)[0]) for run in (one, two)]
  # atol 5e-4, a quarter of one step at learning rate 2e-3: Adam divides by sqrt(v), so a rare word's embedding
  # row, whose gradients are tiny, moves by about the learning rate whatever their size, and reduction-order noise
  # in them shows up as a fraction of a step (4e-5 to 2e-4 after 12 steps, in 2 of 1M values). The losses above
  # agree to 1e-5 at every logged step, and the evaluations exactly.
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-4, atol=5e-4), *params)


def test_only_process_0_writes_the_files_processes_share(runs):
  _, _, two, audit = runs
  reports = [json.loads(p.read_text()) for p in audit.glob("*.json")]
  by_id = {next(a.split("=")[1] for a in r["argv"] if a.startswith("--config.distributed.process_id=")): r
           for r in reports if any("process_id" in a for a in r["argv"])}
  assert set(by_id) == {"0", "1"}
  assert any("eval_test.json" in path for _, path in by_id["0"]["writes"])  # the audit sees process 0's writes
  # Process 1 writes nothing but its own shards of Orbax checkpoints.
  stray = [(event, path) for event, path in by_id["1"]["writes"] if "/checkpoints/" not in path]
  assert not stray, stray
  assert not list(two.rglob("*.tmp*")), "a temporary file was left behind"


def test_a_checkpoint_written_by_one_process_restores_in_two(runs, tmp_path):
  cache_one, one, _, _ = runs
  copy = tmp_path / "copy"
  shutil.copytree(one, copy)
  (copy / "cnn_student" / "eval_test.json").unlink()
  script = readme_block(copy, _free_port()).replace("process_id=$i", "process_id=$i --config.mode=evaluate")
  proc = _run(["bash", "-c", script], _env(cache_one), timeout=900)
  assert (copy / "cnn_student" / "eval_test.json").is_file(), proc.stderr[-5000:]
  a, b = _eval(one), _eval(copy)
  for key in ("rerank", "full_collection", "hybrid"):
    assert a[key] == b[key], key


def _launch(workdir: Path, cache: Path, port: int, process_id: int, log: Path) -> subprocess.Popen:
  cmd = [sys.executable, "run.py", "--config=configs/cnn_student.py:smoke", f"--workdir={workdir}",
         "--config.distributed.enabled=True", f"--config.distributed.coordinator_address=127.0.0.1:{port}",
         "--config.distributed.num_processes=2", f"--config.distributed.process_id={process_id}"]
  return subprocess.Popen(cmd, cwd=REPO, env=_env(cache, devices=4), stdout=log.open("w"), stderr=subprocess.STDOUT)


@pytest.mark.parametrize("victim", [0, 1])
def test_a_killed_process_stops_the_other_within_a_minute(victim, runs, tmp_path):
  cache_one = runs[0]
  port = _free_port()
  procs = [_launch(tmp_path / "run", cache_one, port, i, tmp_path / f"p{i}.log") for i in (0, 1)]
  try:
    metrics = tmp_path / "run" / "teacher" / "metrics.jsonl"
    deadline = time.time() + 300
    while not (metrics.is_file() and '"train"' in metrics.read_text()):  # killed in the middle of training
      assert time.time() < deadline and all(p.poll() is None for p in procs), (tmp_path / "p0.log").read_text()[-3000:]
      time.sleep(0.5)
    procs[victim].send_signal(signal.SIGKILL)
    killed = time.time()
    survivor = procs[1 - victim]
    code = survivor.wait(timeout=90)
    assert time.time() - killed < 60
    assert code != 0
    log = (tmp_path / f"p{1 - victim}.log").read_text()
    # The death reaches the survivor either through the coordination service (heartbeats) or, when the kill lands
    # inside a collective, through Gloo's TCP transport failing mid-message; both end the survivor.
    assert any(m in log for m in ("another task died", "detected fatal errors", "gloo::", "Connection closed by peer",
                                  "Connection reset by peer")), log[-3000:]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()


_FAILED_WRITE = textwrap.dedent("""
    import sys
    import ml_collections
    from kd_jax import multihost
    pid, port = int(sys.argv[1]), sys.argv[2]
    multihost.initialize(ml_collections.ConfigDict(dict(
        enabled=True, coordinator_address="127.0.0.1:" + port, num_processes=2, process_id=pid,
        initialization_timeout_s=60, heartbeat_timeout_s=30)))
    multihost.primary_writes("a first file", lambda: None)
    def fail():
      raise OSError("No space left on device")
    try:
      multihost.primary_writes("the teacher scores", fail)
    except Exception as e:
      print(f"process {pid}: {type(e).__name__}: {e}")
      sys.exit(3)
    """)


def _two_processes(code: str, env: dict) -> tuple[list[int], list[str]]:
  """Runs `code` (Python, argv: process id, coordinator port) as processes 0 and 1 of one job: (exit codes,
  outputs)."""
  port = str(_free_port())
  procs = [subprocess.Popen([sys.executable, "-c", code, str(i), port], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True) for i in (0, 1)]
  out = [p.communicate(timeout=120)[0] for p in procs]
  return [p.returncode for p in procs], out


def test_a_failed_write_on_process_0_is_an_error_on_every_process(tmp_path):
  codes, out = _two_processes(_FAILED_WRITE, _env(tmp_path, devices=1))
  assert codes == [3, 3], out
  assert "process 0: OSError: No space left on device" in out[0]
  assert "process 1: RuntimeError: Process 0 failed to write the teacher scores: OSError: No space left" in out[1]


_PUT = textwrap.dedent("""
    import sys
    import jax
    import ml_collections
    import numpy as np
    from jax.experimental import multihost_utils
    from jax.sharding import NamedSharding, PartitionSpec as P
    from kd_jax import multihost, sharding
    pid, port = int(sys.argv[1]), sys.argv[2]
    multihost.initialize(ml_collections.ConfigDict(dict(
        enabled=True, coordinator_address="127.0.0.1:" + port, num_processes=2, process_id=pid,
        initialization_timeout_s=60, heartbeat_timeout_s=30)))
    def no_check(*args, **kwargs):
      raise AssertionError("a cross-process equality check (an all-gather of the whole array)")
    multihost_utils.assert_equal = no_check  # what jax.device_put runs here before placing a host array
    mesh = sharding.make_mesh()
    x = np.arange(8 * 3, dtype=np.float32).reshape(8, 3)
    for spec in (P("data", None), P()):
      y = sharding.put(x, NamedSharding(mesh, spec))
      assert not y.is_fully_addressable and y.shape == x.shape
      for shard in y.addressable_shards:
        np.testing.assert_array_equal(np.asarray(shard.data), x[shard.index])
      np.testing.assert_array_equal(multihost_utils.process_allgather(y, tiled=True), x)
    tree = sharding.put_tree({"w": jax.numpy.ones((4, 2))}, {"w": NamedSharding(mesh, P("data", None))})
    assert float(jax.jit(lambda t: t["w"].sum(), out_shardings=NamedSharding(mesh, P()))(tree)) == 8.0
    print(f"process {pid}: placed")
    """)


def test_host_arrays_become_global_arrays_without_a_cross_process_check(tmp_path):
  """sharding.put places an array every process holds whole by cutting each process's own shards, where
  jax.device_put would first all-gather it to compare the processes' copies (most of a two-process evaluation's
  time, over its document chunks)."""
  codes, out = _two_processes(_PUT, _env(tmp_path, devices=2))
  assert codes == [0, 0], out
  assert all(f"process {i}: placed" in o for i, o in enumerate(out)), out


def test_importing_kd_jax_and_its_configs_leaves_the_backend_alone():
  """jax.distributed.initialize() must come before anything starts the JAX backend."""
  code = ("from jax._src import xla_bridge as xb\n"
          "import run, kd_jax.modes, experiments.reproduce, experiments.pseudo_table, experiments.results_md\n"
          "from configs import cnn_student, lstm_student, teacher, reproduce, pseudo_table\n"
          "[m.get_config() for m in (cnn_student, lstm_student, teacher, reproduce, pseudo_table)]\n"
          "assert not xb._backends, 'an import started the JAX backend'\n")
  _run([sys.executable, "-c", code], _env(Path("/tmp"), devices=1), timeout=120)

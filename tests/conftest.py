"""Test setup: 8 fake CPU devices (set before JAX is imported) and the data directory."""

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# Must precede any `import jax`: sharded tests compare an 8-device mesh against 1 device.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One persistent XLA compilation cache for the session, shared with the run.py and multi-host processes the tests start
# (they inherit the environment): the suite compiles the same steps, searches and evaluations many times over, in and
# across processes. A cached executable is the one XLA built, so no number changes. Every compile is kept, however
# short: most of the suite's are under a second, and there are thousands.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="kd_jax_test_xla_")
  atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _data_dir() -> Path:
  return Path(os.environ.get("KD_JAX_DATA_DIR", REPO.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def data_dir() -> Path:
  path = _data_dir()
  if not (path / "scifact" / "corpus.jsonl").is_file():
    pytest.fail(f"Real data not found at {path}; set KD_JAX_DATA_DIR to the folder holding scifact/ and fever/.")
  return path


@pytest.fixture(scope="session")
def smoke_chain(tmp_path_factory, data_dir) -> tuple[Path, Path]:
  """The main command's smoke chain (teacher, scores, CNN student, evaluation) through run.py in a fresh process on
  the tests' 8 devices, run once for the tests that read it (multi-host equality, scored negatives' finished stages)
  or extend a copy of it (index, search, resume, collections): about 70-100 s on 2 cores. Returns (workdir, data
  cache); treat both as read-only."""
  root = tmp_path_factory.mktemp("smoke_chain")
  workdir, cache = root / "work", root / "cache"
  env = dict(os.environ, KD_JAX_DATA_DIR=str(data_dir), KD_JAX_CACHE=str(cache), JAX_PLATFORMS="cpu",
             XLA_FLAGS="--xla_force_host_platform_device_count=8")
  proc = subprocess.run([sys.executable, str(REPO / "run.py"), "--config=configs/cnn_student.py:smoke",
                         f"--workdir={workdir}", f"--config.data.dir={data_dir}", f"--config.data.cache_dir={cache}"],
                        cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
  if proc.returncode:
    pytest.fail(f"the smoke chain failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
  return workdir, cache

"""Test setup: 8 fake CPU devices (set before JAX is imported) and the data directory."""

import os
from pathlib import Path

# Must precede any `import jax`: sharded tests compare an 8-device mesh against 1 device.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

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

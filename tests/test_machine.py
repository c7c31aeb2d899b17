"""kd_jax/machine.py: the machine a run names in what it writes (stages record it in complete.json)."""

import re
from pathlib import Path

import jax

from kd_jax import machine, sharding


def test_cpu_name_is_procs_model_name_and_describe_counts_the_devices():
  info = Path("/proc/cpuinfo")
  models = {l.split(":", 1)[1].strip() for l in info.read_text().splitlines() if l.startswith("model name")}
  assert machine.cpu_name() in models or not models
  n = len(jax.devices())
  assert machine.describe() == f"{machine.cpu_name()} (cpu, {n} device{'s' if n > 1 else ''})"
  assert re.fullmatch(r".+ \(cpu, \d+ devices?\)", machine.describe())


def test_kind_reads_back_what_describe_wrote():
  assert machine.kind(machine.describe()) == machine.cpu_name()
  assert machine.kind("TPU v5 lite (tpu, 8 devices)") == "TPU v5 lite"


def test_describe_counts_a_meshs_devices():
  assert machine.describe(sharding.make_mesh(1, 1)) == f"{machine.cpu_name()} (cpu, 1 device)"
  assert machine.describe(sharding.make_mesh(2, 1)) == f"{machine.cpu_name()} (cpu, 2 devices)"

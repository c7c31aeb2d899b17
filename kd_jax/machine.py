"""The machine a run trains on, named in what it writes: XLA's arithmetic differs between CPUs (and accelerators),
so one recipe and seed train to other figures on each, and a result is read with the machine that made it."""

from __future__ import annotations

import platform
from pathlib import Path

import jax


def cpu_name() -> str:
  """The CPU's model name from /proc/cpuinfo (platform.processor() where there is none)."""
  info = Path("/proc/cpuinfo")
  for line in info.read_text().splitlines() if info.is_file() else ():
    if line.startswith("model name"):
      return line.split(":", 1)[1].strip()
  return platform.processor() or "unknown"


def describe(mesh=None) -> str:
  """The devices a stage computes on (its `mesh`'s; default: all this process has): 'AMD EPYC (cpu, 2 devices)',
  'TPU v5 lite (tpu, 8 devices)'. A student on one device of a CPU split in two names 1 (sharding.stage_mesh)."""
  devices = list(mesh.devices.flat) if mesh is not None else jax.devices()
  first = devices[0]
  kind = cpu_name() if first.platform == "cpu" else first.device_kind
  return f"{kind} ({first.platform}, {len(devices)} device{'s' if len(devices) > 1 else ''})"


def kind(description: str) -> str:
  """The CPU or accelerator named by a `describe()` string: 'AMD EPYC (cpu, 2 devices)' -> 'AMD EPYC'."""
  return description.split(" (")[0]

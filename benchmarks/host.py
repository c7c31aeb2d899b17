"""The machine a benchmark ran on, as every benchmark names it in its results."""

from __future__ import annotations

import platform
from pathlib import Path


def cpu_name() -> str:
  """The CPU's model name from /proc/cpuinfo (platform.processor() where there is none)."""
  info = Path("/proc/cpuinfo")
  for line in info.read_text().splitlines() if info.is_file() else ():
    if line.startswith("model name"):
      return line.split(":", 1)[1].strip()
  return platform.processor() or "unknown"

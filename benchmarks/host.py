"""The machine a benchmark ran on, as every benchmark names it, and the allocator setting it runs under."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from kd_jax.machine import cpu_name  # noqa: F401  (the benchmarks name their CPU as kd_jax's stages do)


# glibc's malloc hands large freed blocks back to the OS (anything over 32 MB always goes through mmap/munmap, and the
# heap's top is trimmed), so a framework that frees its step's buffers and allocates them again pays a page fault for
# every 4 KiB of them, every step. PyTorch's CPU allocator does this. Measured on AMD EPYC, 2 cores: the PyTorch
# BiLSTM peer's train step 0.77 s by default, 0.33 s with freed memory kept. So comparisons run with freed memory
# kept for reuse: neither contender is timed paying for the allocator.
# XLA allocates each execution's buffers from its worker threads, which glibc serves from per-thread arenas, and an
# arena other than the main one maps any block over 64 MB with mmap whatever MALLOC_MMAP_MAX_ says (strace: the
# BiLSTM layer's 545 MB of buffers mapped and unmapped on every call, page faults a tenth of its time in perf). One
# arena, the main one, keeps those too: the BiLSTM's train step 0.96-1.09 s -> 0.89-0.91 s on an Intel Xeon
# (results/probes/bilstm_step_bias.json), PyTorch's peer 0.78-0.79 s -> 0.81 s.
STEADY_MALLOC = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(1 << 40), "MALLOC_ARENA_MAX": "1"}


def malloc_setting() -> str:
  """'steady' when this process runs with STEADY_MALLOC (glibc reads it at start-up), else 'default'."""
  return "steady" if all(os.environ.get(k) == v for k, v in STEADY_MALLOC.items()) else "default"


def malloc_note() -> str:
  if malloc_setting() == "steady":
    return ("glibc malloc keeps freed memory for reuse (" + " ".join(f"{k}={v}" for k, v in STEADY_MALLOC.items())
            + "): no contender pays page faults for re-allocating its buffers each step")
  return "glibc malloc defaults: large freed buffers go back to the OS, and are page-faulted in again when re-allocated"


def add_malloc_argument(parser) -> None:
  """The `--malloc` option of every benchmark timing a PyTorch peer (its value goes to restart_with_steady_malloc)."""
  parser.add_argument("--malloc", choices=("steady", "default"), default="steady",
                      help="steady: restart with glibc keeping freed memory (benchmarks/host.py); default: as started")


def restart_with_steady_malloc(module: str, setting: str = "steady") -> None:
  """Replaces this process with `python -m module <same arguments>` under STEADY_MALLOC, unless it already runs so or
  `setting` (the --malloc option) is 'default'."""
  if setting == "steady" and malloc_setting() != "steady":
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, "-m", module, *sys.argv[1:]], {**os.environ, **STEADY_MALLOC})


def cpu_times(stat: str | None = None) -> tuple[int, int]:
  """(all CPU time, time stolen by the hypervisor), in clock ticks since boot, from /proc/stat's first line (or
  `stat`, its text). On a cloud VM, steal is time this machine's vCPUs were ready to run while the host ran others: a
  run that lost much of it timed a slower machine than its header names."""
  if stat is None:
    stat = Path("/proc/stat").read_text() if Path("/proc/stat").is_file() else ""
  first = stat.split("\n", 1)[0].split()
  if not first or first[0] != "cpu":
    return 0, 0
  # user nice system idle iowait irq softirq steal [guest guest_nice]: guest time is already counted in user.
  ticks = [int(v) for v in first[1:9]]
  return sum(ticks), ticks[7] if len(ticks) > 7 else 0


def steal_note(start: tuple[int, int], end: tuple[int, int]) -> str:
  """The share of all CPU time between two cpu_times() readings that the hypervisor stole."""
  total, stolen = end[0] - start[0], end[1] - start[1]
  if total <= 0:
    return "CPU time stolen by the hypervisor during the run: not readable here"
  return f"CPU time stolen by the hypervisor during the run: {100 * stolen / total:.1f}% (/proc/stat)"

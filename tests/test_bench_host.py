"""benchmarks/host.py and speed.load: a benchmark restarts itself under the steady allocator setting with its
arguments kept, and the load line names processes busy now, not on average."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import host

REPO = Path(__file__).resolve().parents[1]


def test_restart_with_steady_malloc_keeps_arguments_and_sets_glibc_env(tmp_path):
  (tmp_path / "probe_restart.py").write_text(
      "import os, sys\n"
      "from benchmarks import host\n"
      "host.restart_with_steady_malloc('probe_restart')\n"
      "print(host.malloc_setting(), sys.argv[1:], os.environ['MALLOC_MMAP_MAX_'])\n")
  env = {k: v for k, v in os.environ.items() if k not in host.STEADY_MALLOC}
  env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(REPO)])
  out = subprocess.run([sys.executable, "-m", "probe_restart", "--out", "x y"], env=env, capture_output=True,
                       text=True, check=True).stdout.split("\n")
  assert out[0] == "steady ['--out', 'x y'] 0"
  host.restart_with_steady_malloc("never_started", "default")  # --malloc=default: this process goes on as it is


def test_malloc_setting_reads_the_environment(monkeypatch):
  for k in host.STEADY_MALLOC:
    monkeypatch.delenv(k, raising=False)
  assert host.malloc_setting() == "default" and "defaults" in host.malloc_note()
  for k, v in host.STEADY_MALLOC.items():
    monkeypatch.setenv(k, v)
  assert host.malloc_setting() == "steady" and "MALLOC_MMAP_MAX_=0" in host.malloc_note()
  assert "MALLOC_ARENA_MAX=1" in host.malloc_note()  # XLA's buffers come from its worker threads' arenas


def test_load_names_a_process_busy_now_and_not_one_that_is_paused():
  from benchmarks import speed  # pylint: disable=import-outside-toplevel
  spin = subprocess.Popen([sys.executable, "-c", "while 1: pass"])  # named within the line's first 70 characters
  try:
    time.sleep(0.5)
    assert "-c while 1: pass`" in speed.load(window=1.0)
    spin.send_signal(signal.SIGSTOP)  # lifetime %CPU (what ps reports) would still call it busy
    assert "while 1: pass" not in speed.load(window=1.0)
  finally:
    spin.kill()
    spin.wait()


def test_cpu_steal_is_read_from_proc_stat_and_reported_as_a_share():
  before = host.cpu_times("cpu  100 10 50 800 5 0 5 30 7 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n")
  after = host.cpu_times("cpu  150 10 70 900 5 0 5 90 9 0\n")
  assert before == (1000, 30) and after == (1230, 90)  # guest time (9th column on) is already inside user
  assert host.steal_note(before, after).startswith("CPU time stolen by the hypervisor during the run: 26.1%")
  assert "not readable" in host.steal_note((0, 0), (0, 0)) and host.cpu_times("") == (0, 0)
  live = host.cpu_times()
  assert live[0] > 0 and 0 <= live[1] <= live[0]  # this machine's own counters

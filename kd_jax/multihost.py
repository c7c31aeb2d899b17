"""Several processes, one job: connecting them, and the one rule for files they share.

A multi-host job (a TPU pod slice, a GPU or CPU cluster) runs one process per host, all executing the same
program. Every file that one process writes and another reads (the prepared-data cache, teacher scores, the
pseudo-claim store, an index, results, metrics, a stage's config and completion marker) goes through
`primary_writes`: process 0 writes it, every other process waits for the outcome before going on, and a failed
write on process 0 reaches every process as an error rather than leaving them waiting. Checkpoints are the one
exception: Orbax coordinates its own multi-process writes.

The coordination uses the key-value store of JAX's distributed runtime (not device collectives), so a dead peer
surfaces through the runtime's heartbeat within `distributed.heartbeat_timeout_s` instead of a hang.
"""

from __future__ import annotations

import itertools
import json
import logging
from typing import Callable, TypeVar

import jax

T = TypeVar("T")

# Calls are numbered in program order, which is the same on every process: the n-th shared write of process 0
# is the n-th wait of the others.
_calls = itertools.count()


def initialize(dc) -> None:
  """Connects this process to the others when `dc.enabled` (the `distributed` config), before any JAX call
  touches a backend (jax.distributed.initialize() refuses to run after that).

  With `dc.coordinator_address` empty, JAX detects the cluster itself (TPU VMs, SLURM, Open MPI, ...); otherwise
  `num_processes` and `process_id` say who this process is.
  """
  if not dc.enabled or jax.distributed.is_initialized():
    return
  # Collectives between processes on CPUs (the tests' 2 local processes, CPU clusters) need an implementation;
  # accelerators use their own interconnect and ignore this.
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  given = {}
  if dc.coordinator_address:
    if dc.num_processes < 1 or not 0 <= dc.process_id < dc.num_processes:
      raise ValueError(f"distributed.coordinator_address is set, so distributed.num_processes (got "
                       f"{dc.num_processes}) must be >= 1 and distributed.process_id (got {dc.process_id}) in "
                       f"0..num_processes-1.")
    given = dict(coordinator_address=dc.coordinator_address, num_processes=dc.num_processes,
                 process_id=dc.process_id)
  jax.distributed.initialize(**given, initialization_timeout=dc.initialization_timeout_s,
                             heartbeat_timeout_seconds=dc.heartbeat_timeout_s)
  logging.info("Process %d of %d (%d local devices, %d in all)", jax.process_index(), jax.process_count(),
               jax.local_device_count(), jax.device_count())


def is_primary() -> bool:
  return jax.process_index() == 0


def primary_writes(what: str, write: Callable[[], T], timeout_s: float = 6 * 3600) -> T | None:
  """Runs `write` on process 0 only; the others wait until it has finished, then continue (and may read).

  Returns `write()`'s value on process 0 and None elsewhere. If `write` raises on process 0, it raises there and
  every other process raises a RuntimeError naming `what` and the error. With one process this is `write()`.

  Every process must make the same calls in the same order: a decision such as "the file exists already, skip
  it" belongs inside `write`, where only process 0 makes it. Processes that disagree fail naming both writes.
  """
  if jax.process_count() == 1:
    return write()
  client = _client()
  key = f"kd_jax/shared_write/{next(_calls)}"
  if is_primary():
    try:
      result = write()
    except BaseException as e:
      client.key_value_set(key, json.dumps({"what": what, "error": f"{type(e).__name__}: {e}"[:2000]}))
      raise
    client.key_value_set(key, json.dumps({"what": what, "error": ""}))
    return result
  try:
    status = json.loads(client.blocking_key_value_get(key, int(timeout_s * 1000)))
  except Exception as e:  # the runtime's own error: a timeout, or the coordinator gone
    raise RuntimeError(f"Process {jax.process_index()} gave up waiting for process 0 to write {what}: {e}") from e
  if status["what"] != what:
    raise RuntimeError(f"Processes diverged: process 0 wrote {status['what']} where process {jax.process_index()} "
                       f"expected {what}.")
  if status["error"]:
    raise RuntimeError(f"Process 0 failed to write {what}: {status['error']}")
  return None


def _client():
  from jax._src import distributed  # pylint: disable=import-outside-toplevel
  if distributed.global_state.client is None:
    raise RuntimeError("Several JAX processes but no distributed client: pass --config.distributed.enabled=True.")
  return distributed.global_state.client

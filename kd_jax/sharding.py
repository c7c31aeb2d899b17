"""The device mesh and where arrays live on it.

Axes: `data` (batch rows) and `model` (parameters split along one dimension, FSDP-style, for a teacher too
big to replicate). Built with `Mesh` directly: `jax.make_mesh` now defaults to Explicit axis types, which
ordinary Linen models reject.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


_split = {"devices": 0}  # what split_cpu made of this process's CPU (0: it did not split it)


def split_cpu(devices: int) -> None:
  """Presents the host CPU as `devices` XLA devices (0: JAX's default, one), before JAX starts its backends.

  A data-parallel step then runs one shard per device, and XLA:CPU runs each device's elementwise work on its own
  core, where one device leaves much of it on one: the teacher's 256-token step is 1.13x faster as 2 devices on
  2 cores (results/TEACHER_SPEED.md). TPU and GPU backends are unaffected. A device count already set in
  XLA_FLAGS (the tests' 8 fake devices) wins.
  """
  if devices <= 0 or "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
    return
  try:
    jax.config.update("jax_num_cpu_devices", devices)
  except RuntimeError as e:  # JAX already ran an operation: too late to change the device count
    if len(jax.devices("cpu")) != devices:
      raise ValueError(f"cpu_devices={devices} must be set before JAX runs anything (it already has "
                       f"{len(jax.devices('cpu'))} CPU devices); pass it on the command line, or set 0.") from e
  _split["devices"] = devices


def stage_mesh(mesh_cfg) -> Mesh:
  """A stage's mesh from its `config.mesh`: make_mesh(data, model), except that on a CPU split_cpu divided
  (one process, mesh.data left at -1) it takes `mesh.split_cpu_data` devices along `data` when that is > 0.

  The split serves the teacher, whose big elementwise work it spreads over the cores; the students' steps are
  faster on one device of it (configs/cnn_student.py: CNN 1.26x, BiLSTM 1.29x on the AMD EPYC), so their configs
  set 1. Accelerators, multi-process jobs, a device count from XLA_FLAGS (the tests' 8 devices) and an explicit
  mesh.data are left as they ask.
  """
  data, wanted = mesh_cfg.data, mesh_cfg.get("split_cpu_data", -1)
  if (wanted > 0 and data == -1 and _split["devices"] > 0 and jax.process_count() == 1
      and jax.default_backend() == "cpu"):
    data = min(wanted, len(jax.devices()))
  return make_mesh(data, mesh_cfg.model)


def make_mesh(data: int = -1, model: int = 1) -> Mesh:
  """A (data, model) mesh; data=-1 takes every device not used by `model`."""
  devices = jax.devices()
  if model < 1 or len(devices) % model:
    raise ValueError(f"mesh.model={model} must divide the {len(devices)} visible devices.")
  data = len(devices) // model if data == -1 else data
  if data < 1 or data * model > len(devices):
    raise ValueError(f"A mesh of data={data} x model={model} needs {data * model} devices but {len(devices)} are "
                     "visible: lower --config.mesh.data/--config.mesh.model (-1 = all devices).")
  return Mesh(np.asarray(devices[: data * model]).reshape(data, model), ("data", "model"))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P("data"))


def param_shardings(tree, mesh: Mesh, min_size: int = 2**18):
  """Splits each large leaf over `model` along its largest divisible dimension; small leaves replicate.

  With model=1 everything is replicated (plain data parallelism). Optimizer moments mirror the params'
  shapes, so calling this on the whole train state shards them the same way.
  """
  n = mesh.shape["model"]

  def spec(leaf) -> NamedSharding:
    shape = getattr(leaf, "shape", ())
    if n == 1 or np.prod(shape, dtype=np.int64) < min_size:
      return replicated(mesh)
    dims = sorted(range(len(shape)), key=lambda d: -shape[d])
    for d in dims:
      if shape[d] % n == 0:
        return NamedSharding(mesh, P(*[("model" if i == d else None) for i in range(len(shape))]))
    return replicated(mesh)

  return jax.tree.map(spec, tree)


def local_rows(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """This process's contiguous block of a batch every process holds whole (evaluation), so the global
  array assembled by `put_batch` keeps the batch's row order."""
  p, n = jax.process_index(), jax.process_count()
  if n == 1:
    return batch
  rows = len(next(iter(batch.values())))
  return {k: v[p * rows // n:(p + 1) * rows // n] for k, v in batch.items()}


def put(x: np.ndarray, sharding: NamedSharding) -> jax.Array:
  """A host array that every process holds whole (the same values, computed alike) as a global array laid out by
  `sharding`. `jax.device_put` does the same, but when the sharding spans several processes it first all-gathers
  the whole array to check that every process passed equal values: over a two-process evaluation's document chunks
  and search inputs that check took 49 of its 86 s (cProfile). Here each process cuts its own devices' shards."""
  if sharding.is_fully_addressable or (isinstance(x, jax.Array) and not x.is_fully_addressable):
    return jax.device_put(x, sharding)  # on one process, or already global (a reshard, which checks nothing)
  x = np.asarray(x)  # a process-local jax.Array too (freshly initialised parameters)
  return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])


def put_tree(tree, shardings):
  """`put` over a pytree and its matching tree of shardings."""
  return jax.tree.map(put, tree, shardings)


def put_batch(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """Host batch -> global arrays split over `data`. Each process passes its own rows (multi-host)."""
  sharding = batch_sharding(mesh)
  out = {}
  for k, v in batch.items():
    if v.dtype.kind in "SUO":  # ids and other strings stay on the host
      continue
    out[k] = jax.make_array_from_process_local_data(sharding, v)
  return out

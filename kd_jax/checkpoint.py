"""Checkpoints of a run directory: the latest N training states, the best one, and their JSON meta.

Layout of `<dir>`: `checkpoints/<step>/{state,meta,checksums}`, one Orbax manager whose preservation policy keeps
the latest `max_to_keep` saves and the save with the best `best_metric` (its metrics are stored with the step, so
the best-by-dev is committed together with the save, and multi-process saves never run two managers' barriers at
once). Run folders from before this layout also hold `best/<step>/...`; it is still read. The state is any
pytree of jax Arrays (e.g. `{"step", "params", "opt_state"}`); restoring takes an abstract target
whose shardings say where every leaf lands, so a run saved on 8 devices resumes on 1 and vice versa.

Every save also stores a CRC32 of each array (`<step>/checksums`), checked on restore: TensorStore does not
check array bytes, so a flipped bit in a data file would otherwise restore silently as wrong numbers. A corrupt
latest save is skipped with a warning for the one before it (so is one whose files Orbax or TensorStore cannot read,
e.g. truncated); with no intact save left, restoring fails. Before reading any array, a restore compares the save's
tree of array names and shapes with the target's, so a checkpoint of another model fails with the first difference.
"""

from __future__ import annotations

import json
import logging
import zlib
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

PyTree = Any
_log = logging.getLogger(__name__)
_STATE, _META, _SUMS = "state", "meta", "checksums"


class CheckpointCorruptError(ValueError):
  """No save of a run directory holds the arrays it was written with."""


class CheckpointMismatchError(ValueError):
  """A save holds other arrays (names or shapes) than the restore target: the checkpoints of another model."""

  def __init__(self, directory: Path, mismatches: list[str]):
    self.directory, self.mismatches = directory, mismatches
    super().__init__(f"{directory} holds checkpoints of another model (first mismatch: {mismatches[0]}): point "
                     "--workdir/--config.name at the right run.")


class _Corrupt(Exception):
  """One save failed its checksum; restore moves on to an earlier save."""


def abstract_like(tree: PyTree, shardings: PyTree | jax.sharding.Sharding | None = None) -> PyTree:
  """ShapeDtypeStruct pytree of `tree` (arrays or `jax.eval_shape` output) placed on `shardings`.

  `shardings` is a pytree matching `tree`, one Sharding for every leaf, or None to keep each
  leaf's own sharding (a concrete array's, or a ShapeDtypeStruct's if it has one).
  """

  def leaf(x: Any, sharding: jax.sharding.Sharding | None) -> jax.ShapeDtypeStruct:
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
      x = jnp.asarray(x)  # Python scalars: take the dtype JAX would give them.
    if sharding is None:
      sharding = getattr(x, "sharding", None)
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)

  if shardings is None or isinstance(shardings, jax.sharding.Sharding):
    return jax.tree.map(lambda x: leaf(x, shardings), tree)
  return jax.tree.map(leaf, tree, shardings)


def _json_number(value: Any) -> Any:
  """Metrics often arrive as 0-d jax/numpy arrays, which orbax cannot write as JSON."""
  return value.item() if isinstance(value, (jax.Array, np.ndarray, np.generic)) else value


def _leaf_name(path: tuple) -> str:
  """`opt_state.0.mu.params.w`, the same for a namedtuple field and the dict key Orbax's metadata gives it."""
  return ".".join(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path)


def _host(x: Any) -> np.ndarray:
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    x = multihost_utils.process_allgather(x, tiled=True)  # every process calls save/restore, as Orbax needs
  return np.ascontiguousarray(np.asarray(x))


def checksums(state: PyTree) -> dict[str, list]:
  """{leaf name: [crc32 of its bytes, dtype, shape]}, independent of how the leaves are sharded."""
  out = {}
  for path, x in jax.tree_util.tree_flatten_with_path(state)[0]:
    a = _host(x)
    out[_leaf_name(path)] = [zlib.crc32(a.reshape(-1).view(np.uint8)), str(a.dtype), list(a.shape)]
  return out


def _verify(state: PyTree, saved: dict[str, list]) -> None:
  """Raises _Corrupt naming the first leaf whose bytes differ from the save's (leaves restored under another
  dtype or shape cannot be compared and are skipped)."""
  for name, (crc, dtype, shape) in sorted(checksums(state).items()):
    if name in saved and saved[name][1:] == [dtype, shape] and saved[name][0] != crc:
      raise _Corrupt(f"array {name} does not match its checksum")


def _display_name(path: tuple) -> str:
  return _leaf_name(path).replace(".", "/")


def _shapes(tree: PyTree) -> dict[str, tuple]:
  """{leaf name: shape} of arrays, ShapeDtypeStructs or Orbax's ArrayMetadata (its leaves)."""
  tree = getattr(tree, "tree", tree)  # Orbax's TreeMetadata wraps the saved tree
  return {_display_name(path): tuple(x.shape) for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def mismatches(saved: PyTree, target: PyTree) -> list[str]:
  """Every leaf where a save's tree (its item metadata) and a restore target differ in name or shape, sorted."""
  have, want = _shapes(saved), _shapes(target)
  out = []
  for name in sorted(have.keys() | want.keys()):
    if name not in have:
      out.append(f"{name} is not in the save")
    elif name not in want:
      out.append(f"{name} is saved but not expected")
    elif have[name] != want[name]:
      out.append(f"{name} has shape {list(have[name])} saved, {list(want[name])} expected")
  return out


# TensorStore's status codes for bytes that are missing, cut short or undecodable (a damaged or truncated file).
_DAMAGE_CODES = ("DATA_LOSS", "OUT_OF_RANGE", "NOT_FOUND")


def _bad_json_file(step_dir: Path) -> Path | None:
  """The first of a save's small JSON files (Orbax's _METADATA, _CHECKPOINT_METADATA, ...) that does not parse."""
  for path in sorted(step_dir.rglob("*")):
    if not path.is_file() or "ocdbt" in path.name or path.parent.name == "d" or path.suffix == ".txt":
      continue
    try:
      json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError):
      return path
  return None


def _reason(e: Exception, step_dir: Path) -> str | None:
  """Why a save is unreadable, or None when `e` is not about damaged files (e.g. a target of another shape).

  Orbax wraps TensorStore's error (a plain Exception whose text is a page-long spec) around the useful one, so the
  whole chain is searched; a JSON error names no file, so the unparsable file is looked up.
  """
  if isinstance(e, _Corrupt):
    return str(e)
  if isinstance(e, json.JSONDecodeError):
    bad = _bad_json_file(step_dir)
    return f"{bad if bad else 'a metadata file'} is not valid JSON ({e})"[:300]
  seen = e
  while seen is not None:
    text = str(seen).strip()
    if text.startswith(_DAMAGE_CODES) or "DATA_LOSS" in text:
      return text.splitlines()[0][:300]
    seen = seen.__cause__ or seen.__context__
  return None


def _manager(path: Path, options: ocp.CheckpointManagerOptions) -> ocp.CheckpointManager:
  # Explicit handlers (not just names) so `item_metadata` can describe a save without a target.
  handlers = {_STATE: ocp.StandardCheckpointHandler(), _META: ocp.JsonCheckpointHandler(),
              _SUMS: ocp.JsonCheckpointHandler()}
  return ocp.CheckpointManager(path, options=options, item_handlers=handlers)


class Checkpointer:
  """Periodic (latest `max_to_keep`) and best-by-metric checkpoints of one run directory.

  Saves are asynchronous: `save` returns once arrays are copied off the devices and writes them
  in the background; `wait()` blocks until written, `close()` waits and releases the managers.
  Usable as a context manager.
  """

  def __init__(self, directory: str | Path, max_to_keep: int = 3, best_metric: str | None = None):
    # Orbax wants absolute paths; create=False so that opening a missing run (e.g. a mistyped
    # teacher path) leaves no empty folders behind; the first save creates them.
    self.directory = Path(directory).expanduser().resolve()
    self.best_metric = best_metric
    policies = [ocp.checkpoint_managers.LatestN(n=max_to_keep)]
    best_fn = None
    if best_metric is not None:
      best_fn = lambda metrics: float(metrics[best_metric])  # noqa: E731
      policies.append(ocp.checkpoint_managers.BestN(get_metric_fn=best_fn, reverse=False, n=1,
                                                    keep_checkpoints_without_metrics=False))
    # `best_fn` ranks saves for `best_step()`; the policies decide what is kept (higher is better).
    self._latest = _manager(self.directory / "checkpoints", ocp.CheckpointManagerOptions(
        create=False, best_fn=best_fn, best_mode="max",
        preservation_policy=ocp.checkpoint_managers.AnyPreservationPolicy(policies)))
    legacy = self.directory / "best"
    self._legacy_best = (_manager(legacy, ocp.CheckpointManagerOptions(create=False, read_only=True))
                         if legacy.is_dir() else None)
    self._corrupt: set[int] = set()  # steps a restore found corrupt; deleted by the next save

  def save(self, step: int, state: PyTree, meta: dict, metrics: dict | None = None) -> None:
    """Saves `state` and `meta` at `step`, with `metrics` (e.g. the dev evaluation) when given: a save with the
    best `best_metric` so far is kept beyond the latest N."""
    metrics = None if metrics is None else {k: _json_number(v) for k, v in metrics.items()}
    if metrics is not None and self.best_metric is not None and self.best_metric not in metrics:
      metrics = None  # nothing to rank it by
    self._drop_corrupt()
    args = ocp.args.Composite(**{_STATE: ocp.args.StandardSave(state), _META: ocp.args.JsonSave(meta),
                                 _SUMS: ocp.args.JsonSave(checksums(state))})
    if not self._latest.save(step, args=args, metrics=metrics):
      # Orbax skips steps at or before its latest save (e.g. a resumed run saving its start step).
      _log.warning("Checkpoint step %d not saved in %s: not after latest step %s",
                   step, self._latest.directory, self._latest.latest_step())

  def _drop_corrupt(self) -> None:
    """Deletes the corrupt saves a restore stepped back from: Orbax would skip re-saving their steps."""
    for step in sorted(self._corrupt & set(self._latest.all_steps())):
      _log.warning("Deleting corrupt checkpoint step %d in %s", step, self._latest.directory)
      self._latest.delete(step)
    self._corrupt.clear()

  def latest_step(self) -> int | None:
    return self._latest.latest_step()

  def best_step(self) -> int | None:
    """The kept save with the best `best_metric`, or None (a run folder of the old layout: its `best/` save)."""
    return self._best()[1]

  def _best(self) -> tuple[ocp.CheckpointManager, int | None]:
    if self.best_metric is not None:
      self._latest.wait_until_finished()
      step = self._latest.best_step()
      if step is not None:
        return self._latest, step
    if self._legacy_best is not None:
      return self._legacy_best, self._legacy_best.latest_step()
    return self._latest, None

  def _resolve(self, step: int | None, best: bool) -> tuple[ocp.CheckpointManager, int]:
    manager = self._best()[0] if best else self._latest
    # Restore does not wait for this process's own pending async saves, which may not be on disk yet.
    manager.wait_until_finished()
    if step is None:
      step = self.best_step() if best else self.latest_step()
    if step is None:
      raise FileNotFoundError(
        f"No checkpoint in {manager.directory}: train it first "
        f"(python run.py --config=... --workdir={self.directory}) or point the config at a finished run"
      )
    if step not in manager.all_steps():
      raise FileNotFoundError(f"No checkpoint for step {step} in {manager.directory}; saved steps: "
                              f"{sorted(manager.all_steps())}")
    return manager, step

  def restore(self, target: PyTree, step: int | None = None, best: bool = False) -> tuple[PyTree, dict]:
    """Restores (state, meta); `target` leaves (ShapeDtypeStruct or arrays) give shape, dtype, sharding.

    `step=None` takes the latest save, or the best with `best=True`. A target whose tree structure or shapes
    differ from the saved ones raises CheckpointMismatchError (a ValueError).
    """
    restored = self._restore_intact(step, best, lambda saved: abstract_like(target), with_meta=True)
    return restored[_STATE], restored[_META]

  def restore_part(self, key: str, target: PyTree, rest_sharding: jax.sharding.Sharding,
                   best: bool = False) -> PyTree:
    """Restores `state[key]` (e.g. the params) onto `target` without knowing the rest of the saved state.

    The other entries (e.g. an optimizer state whose structure depends on the run's optimizer settings) are
    read from the save's own metadata onto `rest_sharding` and dropped: a finished teacher loads into a
    student run whatever optimizer it was trained with.
    """
    def full(saved: PyTree) -> PyTree:
      # `key` is always asked for, so a save without it reports a mismatch rather than a KeyError.
      rest = {k: jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=rest_sharding), v)
              for k, v in saved.items() if k != key}
      return {**rest, key: abstract_like(target)}

    return self._restore_intact(None, best, full)[_STATE][key]

  def _restore_intact(self, step: int | None, best: bool, target_for: Callable[[PyTree], PyTree],
                      with_meta: bool = False) -> dict[str, Any]:
    """Restores the state (onto `target_for(the save's state metadata)`) and, `with_meta`, the meta from `step`,
    or (step None, latest saves) from the newest save that is readable and passes its checksums.

    Only the latest-N saves step back: an explicit step or the single best save is used as asked or not at all.
    """
    manager, first = self._resolve(step, best)
    steps = [first] if step is not None or best else sorted((s for s in manager.all_steps() if s <= first),
                                                            reverse=True)
    problems = []
    for i, s in enumerate(steps):
      try:
        return self._restore_checked(manager, s, target_for, with_meta)
      except Exception as e:  # pylint: disable=broad-except
        reason = _reason(e, Path(str(manager.directory)) / str(s))
        if reason is None:
          raise
        problems.append(f"step {s}: {reason}")
        if manager is self._latest:
          self._corrupt.add(s)
        if i + 1 < len(steps):
          _log.warning("Checkpoint step %d in %s is corrupt (%s); restoring step %d instead", s, manager.directory,
                       reason, steps[i + 1])
    raise CheckpointCorruptError(f"No intact checkpoint in {manager.directory} ({'; '.join(problems)}): delete the "
                                 "corrupt step folders and resume from an earlier save, or train again in a new "
                                 "--workdir.")

  def _restore_checked(self, manager: ocp.CheckpointManager, step: int, target_for: Callable[[PyTree], PyTree],
                       with_meta: bool) -> dict[str, Any]:
    items = manager.item_metadata(step)  # inside the fallback: a truncated _METADATA makes this save unreadable
    target = target_for(items[_STATE])
    # Checked before reading: Orbax would report another model's tree as a page-long dump of both trees.
    wrong = mismatches(items[_STATE], target)
    if wrong:
      raise CheckpointMismatchError(self.directory, wrong)
    args = {_STATE: ocp.args.StandardRestore(target), **({_META: ocp.args.JsonRestore()} if with_meta else {})}
    # Saves from before checksums were stored have no `checksums` item; they are restored unchecked.
    has_sums = _SUMS in items.keys()
    restored = manager.restore(step, args=ocp.args.Composite(
        **args, **({_SUMS: ocp.args.JsonRestore()} if has_sums else {})))
    if has_sums:
      _verify(restored[_STATE], restored[_SUMS])
    return restored

  def read_meta(self, step: int | None = None, best: bool = False) -> dict:
    """The JSON meta of a save, without reading (or knowing the shape of) its state."""
    manager, step = self._resolve(step, best)
    return manager.restore(step, args=ocp.args.Composite(**{_META: ocp.args.JsonRestore()}))[_META]

  def wait(self) -> None:
    """Blocks until every pending asynchronous save is on disk."""
    self._latest.wait_until_finished()

  def close(self) -> None:
    self.wait()
    self._latest.close()
    if self._legacy_best is not None:
      self._legacy_best.close()

  def __enter__(self) -> Checkpointer:
    return self

  def __exit__(self, *exc: object) -> None:
    self.close()


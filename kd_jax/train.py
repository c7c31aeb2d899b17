"""One sharded train step and one resumable loop, shared by the teacher and both students.

The step is a pure function `(state, batch, rng[, teacher_params]) -> (state, metrics)`, jitted with
`in_shardings`/`out_shardings` over the (data, model) mesh and donating the state. The state is a plain
pytree `{step, params, opt_state}` so Orbax saves and restores it onto any mesh.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from kd_jax import (atomic, checkpoint, doc_crop, evaluate, list_sampling, machine, mined_negatives, multihost,
                    negatives, search, sharding, stage_inputs, xla_cpu)
from kd_jax.data import pipeline
from kd_jax.data.prepare import Prepared
from kd_jax.logbook import Logbook
from kd_jax.models import registry
from kd_jax.models.build import Built

# XLA's CPU collectives (the 8 fake devices of the tests) abort when too many steps are queued without a sync.
SYNC_EVERY = 10


def decay_mask(params):
  """Weight decay on weight matrices only: not on biases, LayerNorm scales or embedding tables (a frozen
  embedding would otherwise still shrink, since decay does not depend on the gradient)."""
  def keep(path, leaf):
    return leaf.ndim >= 2 and not any("embed" in str(getattr(k, "key", k)).lower() for k in path)
  return jax.tree_util.tree_map_with_path(keep, params)


def make_optimizer(tc) -> optax.GradientTransformation:
  """AdamW with linear warmup, cosine decay to 1% and global-norm clipping."""
  schedule = optax.warmup_cosine_decay_schedule(0.0, tc.learning_rate, tc.warmup_steps,
                                                max(tc.steps, tc.warmup_steps + 1), end_value=tc.learning_rate * 0.01)
  return optax.chain(optax.clip_by_global_norm(tc.grad_clip),
                     optax.adamw(schedule, weight_decay=tc.weight_decay, mask=decay_mask))


def make_train_step(built: Built, tx, loss_fn: Callable, teacher: Built | None = None, list_size: int = 0,
                    in_batch: bool = False, doc_crop_at: tuple[float, int] = (0.0, 0)) -> Callable:
  """The pure step. With `teacher` (online distillation) its frozen logits replace the stored scores.

  `list_size` > 0 trains on that many of each claim's candidates: its golds plus random negatives, drawn anew at
  every step (list_sampling.py). `in_batch`, or random negatives in the batch (`neg_words`), widen the students'
  hard-label list beyond the claim's candidates (negatives.py). `doc_crop_at` (probability, shortest window)
  crops that share of the students' training documents to random windows (doc_crop.py).
  """
  def step(state, batch, rng, teacher_params=None):
    rng = jax.random.fold_in(rng, state["step"])
    if list_size:
      rng, sample_rng = jax.random.split(rng)
      batch = list_sampling.subsample(batch, sample_rng, list_size)
    if doc_crop_at[0] > 0:
      rng, crop_rng = jax.random.split(rng)
      batch = doc_crop.crop_batch(batch, crop_rng, *doc_crop_at)
    if teacher is not None:
      batch = dict(batch, teacher_scores=jax.lax.stop_gradient(teacher.logits(teacher_params, batch)))

    def objective(params):
      if not (in_batch or "neg_words" in batch):
        return loss_fn(built.logits(params, batch, rng, train=True), batch)
      own, wide = built.wide_logits(params, batch, rng, in_batch)
      neg_index = batch.get("neg_index")
      extra = negatives.extra_doc_index(batch["cand_index"], neg_index, in_batch)
      labels, mask = negatives.wide_targets(batch["cand_index"], batch["cand_labels"], batch["cand_mask"], extra,
                                            negatives.extra_is_real(batch["cand_mask"], neg_index, in_batch))
      return loss_fn(own, dict(batch, wide_logits=wide, wide_labels=labels, wide_mask=mask))

    (loss, parts), grads = jax.value_and_grad(objective, has_aux=True)(state["params"])
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    new_state = {"step": state["step"] + 1, "params": optax.apply_updates(state["params"], updates),
                 "opt_state": opt_state}
    return new_state, {"loss": loss, "grad_norm": optax.tree.norm(grads), **parts}
  return step


def init_state(built: Built, tx, rng, mesh):
  """Initial state placed on the mesh, and its shardings."""
  params = built.init(rng)
  state = {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": tx.init(params)}
  shardings = sharding.param_shardings(state, mesh)
  return sharding.put_tree(state, shardings), shardings


def jit_step(step_fn: Callable, mesh, state_shardings, teacher_shardings=None,
             xla_cpu_options=None) -> Callable:
  """`xla_cpu_options`: the config's train.xla_cpu_options, applied on a CPU mesh only (kd_jax/xla_cpu.py)."""
  rep, data = sharding.replicated(mesh), sharding.batch_sharding(mesh)
  in_sh = (state_shardings, data, rep) + ((teacher_shardings,) if teacher_shardings is not None else ())
  return jax.jit(step_fn, in_shardings=in_sh, out_shardings=(state_shardings, rep), donate_argnums=0,
                 compiler_options=xla_cpu.options(xla_cpu_options, mesh) or None)


def check_batch_sizes(config, mesh) -> None:
  n = mesh.shape["data"]
  for name in ("batch_size", "eval_batch_size"):
    if config.train[name] % n:
      raise ValueError(f"train.{name}={config.train[name]} must be divisible by the mesh's data axis ({n} "
                       "devices): change it or --config.mesh.data.")


@dataclasses.dataclass
class FitResult:
  params: Any
  metrics: dict[str, float]  # the final dev evaluation
  initial_metrics: dict[str, float] | None  # dev evaluation before the first step (fresh runs only)


def fit(config, workdir: Path, prepared: Prepared, built: Built, loss_fn: Callable,
        teacher_scores: Callable | None = None, teacher: tuple[Built, Any] | None = None,
        stop_after: int | None = None, train_source=None) -> FitResult:
  """Trains `built` to `config.train.steps`, resuming from `workdir`'s latest checkpoint when present.

  `train_source` replaces the prepared train split (e.g. a `pipeline.MixedSource` with pseudo-claims).
  `stop_after` ends the loop early after that many steps (as if the run were killed), for tests.
  """
  tc = config.train
  workdir = Path(workdir)
  if tc.eval_every % tc.checkpoint_every:
    logging.warning("train.eval_every=%d is not a multiple of train.checkpoint_every=%d: only steps that are both "
                    "evaluated and checkpointed can become the best-by-dev checkpoint.", tc.eval_every,
                    tc.checkpoint_every)
  atomic.ensure_writable(workdir, "Output folder")
  mesh = sharding.stage_mesh(config.mesh)
  logging.info("Training on a %s mesh of %s devices", dict(mesh.shape), mesh.devices.flat[0].platform)
  check_batch_sizes(config, mesh)
  xla_cpu.options(tc.get("xla_cpu_options"), mesh)  # a bad option fails here, before the first checkpoint is read
  tx = make_optimizer(tc)
  init_rng, step_rng = jax.random.split(jax.random.key(config.seed))
  state, state_sh = init_state(built, tx, init_rng, mesh)
  ckpt = checkpoint.Checkpointer(workdir, max_to_keep=tc.keep_checkpoints, best_metric=tc.best_metric)
  start = 0
  if ckpt.latest_step() is not None:
    if not config.resume:
      raise ValueError(f"{workdir} already holds checkpoints: pass --config.resume=True to continue, or a new "
                       "--workdir.")
    try:
      state, _ = ckpt.restore(checkpoint.abstract_like(state, state_sh))
    except checkpoint.CheckpointMismatchError as e:
      raise other_model_error(workdir, config, e) from e
    start = int(state["step"])
    logging.info("Resumed %s at step %d", workdir, start)

  def write_config():
    workdir.mkdir(parents=True, exist_ok=True)
    atomic.write_text(workdir / "config.json", config.to_json_best_effort(indent=2))
  multihost.primary_writes(f"{workdir / 'config.json'}", write_config)
  stage_inputs.save(workdir, prepared, config.data)  # the stage reads text without the prepared-data cache

  teacher_built, teacher_params, teacher_sh = None, None, None
  tokens = built.tokens
  if teacher is not None:
    teacher_built, teacher_params = teacher
    teacher_sh = sharding.param_shardings(teacher_params, mesh)
    teacher_params = sharding.put_tree(teacher_params, teacher_sh)
    tokens = "both"
  pair_len = built.pair_len or (teacher[0].pair_len if teacher is not None else 0)  # the pairs a teacher reads
  neg = config.get("distill", {}).get("negatives", {})  # students only (the teacher reads pairs)
  transform = pipeline.gather_transform(prepared, tokens, pair_len, teacher_scores, neg.get("random", 0), config.seed)
  source = prepared.source("train") if train_source is None else train_source
  batches = pipeline.TrainBatches(source, tc.batch_size, config.seed, transform, jax.process_index(),
                                  jax.process_count())
  miner = None
  if neg.get("mined", {}).get("count", 0):
    m = neg.mined
    miner = mined_negatives.Miner(workdir, prepared, built, mesh, count=m.count, depth=m.depth, skip=m.skip,
                                  refresh_every=m.refresh_every, seed=config.seed)
    miner.resume(start)
  crop = config.get("distill", {}).get("doc_crop", {})
  step_fn = jit_step(make_train_step(built, tx, loss_fn, teacher_built, tc.get("list_size", 0),
                                     neg.get("in_batch", False), (crop.get("prob", 0.0), crop.get("min_words", 0))),
                     mesh, state_sh, teacher_sh, tc.get("xla_cpu_options"))
  predict = evaluate.make_predict(built, mesh, state_sh["params"])
  log = Logbook(workdir, resume_step=start)

  def dev_metrics():
    pred = evaluate.predict_split(predict, state["params"], prepared, tc.eval_split, tc.eval_batch_size, mesh,
                                  built.tokens, built.pair_len)
    out = evaluate.rerank_metrics(pred)
    if tc.get("eval_full_collection") and built.tokens == "words":
      # What a student is for is searching the whole collection; with best_metric=full_ndcg@10 the checkpoint kept
      # is the one that searches best, not the one that reranks best.
      scores, rows, ids = search.search_split(built, state["params"], prepared, tc.eval_split, mesh)
      full = search.full_collection_metrics(scores, rows, ids, prepared.doc_ids, prepared.qrels[tc.eval_split])
      out.update({f"full_{k}": full[k] for k in ("ndcg@10", "recall@10", "recall@100")})
    return out

  initial = None
  if start == 0 and tc.get("eval_at_start", True):
    initial = dev_metrics()
    log.write(0, tc.eval_split, initial)
  metrics, end = {}, tc.steps if stop_after is None else min(tc.steps, start + stop_after)
  extra = (teacher_params,) if teacher is not None else ()
  stream, tick, ticked_step = batches.iterate(start), time.time(), start
  pending = None
  for step in range(start, end):
    batch = next(stream)
    if miner is not None:
      miner.refresh_if_due(step, state["params"])
      batch = miner.add(batch)
    state, pending = step_fn(state, sharding.put_batch(batch, mesh), step_rng, *extra)
    done = step + 1
    if done % min(tc.log_every, SYNC_EVERY) == 0 or done == end:
      values = jax.device_get(pending)  # also the device sync the CPU collectives need
      if done % tc.log_every == 0 or done == end:
        rate = (done - ticked_step) / max(time.time() - tick, 1e-9)
        eta = (end - done) / rate
        log.write(done, "train", {**values, "steps_per_s": rate, "claims_per_s": rate * tc.batch_size,
                                  "eta_s": eta})
        tick, ticked_step = time.time(), done
    is_eval = done % tc.eval_every == 0 or done == tc.steps
    if is_eval:
      metrics = dev_metrics()
      log.write(done, tc.eval_split, metrics)
    if done % tc.checkpoint_every == 0 or done == end:
      ckpt.save(done, state, {"step": done, "name": config.name}, metrics if is_eval else None)
  if pending is not None:
    jax.block_until_ready(pending)
  if not metrics:
    metrics = dev_metrics()
  ckpt.close()
  log.close()
  if end == tc.steps:
    multihost.primary_writes(f"{workdir / 'complete.json'}", lambda: atomic.write_text(
        workdir / "complete.json", json.dumps({"steps": tc.steps, tc.eval_split: metrics,
                                               "machine": machine.describe(mesh)}, indent=2)))
  return FitResult(params=state["params"], metrics=metrics, initial_metrics=initial)


def restore_params(workdir: Path, built: Built, config, mesh, best: bool = True):
  """Params of a finished (or interrupted) run, placed on `mesh`; the best-by-dev checkpoint if kept.

  Only the params are matched against the model: the run's optimizer state is whatever it was trained with.
  """
  abstract = jax.eval_shape(built.init, jax.random.key(0))
  shardings = sharding.param_shardings(abstract, mesh)
  ckpt = checkpoint.Checkpointer(workdir, best_metric=config.train.best_metric)
  try:
    use_best = best and ckpt.best_step() is not None
    if not use_best and ckpt.latest_step() is None:
      raise FileNotFoundError(f"No checkpoint in {workdir}: train it first, or point the config at a finished run.")
    params = ckpt.restore_part("params", checkpoint.abstract_like(abstract, shardings), sharding.replicated(mesh),
                               best=use_best)
  except checkpoint.CheckpointMismatchError as e:
    raise other_model_error(workdir, config, e) from e
  finally:
    ckpt.close()
  return params, shardings


def describe_model(kind: str | None) -> str:
  """'a teacher', 'a CNN student', 'a BiLSTM student' (for messages; registry display names)."""
  if kind == "teacher":
    return "a teacher"
  if not kind:
    return f"a model of kind {kind!r}"
  return f"a {registry.display_name(kind)} student"


def saved_model_kind(run_dir: Path) -> str | None:
  """model.kind in the config.json a run saved beside its checkpoints, or None if it has none (or it is unreadable)."""
  try:
    return json.loads((Path(run_dir) / "config.json").read_text())["model"]["kind"]
  except (OSError, ValueError, KeyError, TypeError):
    return None


def other_model_error(run_dir: Path, config, e: checkpoint.CheckpointMismatchError) -> ValueError:
  """The one-line error for checkpoints that do not fit `config.model`, naming the model the folder holds."""
  first = next((m for m in e.mismatches if m.startswith("params/")), e.mismatches[0])
  saved, wanted = saved_model_kind(run_dir), config.model.kind
  if saved is None:
    what = f"the config asks for {describe_model(wanted)}"
  elif saved != wanted:
    what = f"this folder holds {describe_model(saved)}, the config asks for {describe_model(wanted)}"
  else:
    what = f"this folder holds {describe_model(saved)} with other model settings (see its config.json)"
  return ValueError(f"{run_dir} holds checkpoints of another model (first mismatch: {first}); {what}: point "
                    "--workdir/--config.name at the right run.")

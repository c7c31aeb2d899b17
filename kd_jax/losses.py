"""Losses over each claim's candidate list: the teacher's soft labels and the gold labels.

Every function takes `[batch, K]` logits/labels and a `[batch, K]` bool `mask` of real candidates.
Padded candidates contribute nothing and get exactly zero gradient, whatever values they hold.
Every term is first reduced per claim (row) and then averaged over rows, so each claim weighs the
same however many candidates survived padding; `row_weights` (`[batch]`, default ones) reweights claims.
"""

from __future__ import annotations

from typing import Callable, Literal

import jax
import jax.numpy as jnp
import optax

Array = jax.Array
HardLoss = Literal["listwise", "pointwise"]


def _as_float(x: Array) -> Array:
  x = jnp.asarray(x)
  return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _masked_log_softmax(logits: Array, mask: Array) -> Array:
  """log_softmax over valid candidates; padded entries hold a huge negative and must be masked again."""
  # A finite fill (not -inf) keeps all-padding rows finite; where() also cuts any NaN/inf stored in
  # padded slots out of both the forward pass and the gradient.
  filled = jnp.where(mask, logits, 0.5 * jnp.finfo(logits.dtype).min)
  return jax.nn.log_softmax(filled, axis=-1)


def _row_mean(values: Array, rows: Array, row_weights: Array | None) -> Array:
  """Weighted mean of `values` [batch] over the rows where `rows` is True; 0 when there are none."""
  weights = jnp.ones_like(values) if row_weights is None else _as_float(row_weights)
  weights = jnp.where(rows, weights, 0.0)
  total = jnp.sum(weights * jnp.where(rows, values, 0.0))
  denom = jnp.sum(weights)
  return total / jnp.where(denom > 0, denom, 1.0)


def _distill_rows(student_logits: Array, teacher_logits: Array, mask: Array, temperature: float) -> Array:
  """Per-row `T**2 * KL(softmax(teacher/T) || softmax(student/T))` over valid candidates, [batch]."""
  log_s = _masked_log_softmax(_as_float(student_logits) / temperature, mask)
  log_t = _masked_log_softmax(_as_float(teacher_logits) / temperature, mask)
  # Zero both factors (not only their product) on padded slots: the product rule would otherwise
  # send 0 * (huge) into the gradient.
  p_t = jnp.where(mask, jnp.exp(log_t), 0.0)
  diff = jnp.where(mask, log_t - log_s, 0.0)
  return temperature**2 * jnp.sum(p_t * diff, axis=-1)


def _listwise_rows(student_logits: Array, labels: Array, mask: Array) -> tuple[Array, Array]:
  """Per-row softmax cross-entropy against the gold docs (mass split equally), and has-gold rows."""
  gold = (labels > 0) & mask
  n_gold = jnp.sum(gold, axis=-1)
  log_s = _masked_log_softmax(_as_float(student_logits), mask)
  target = gold / jnp.maximum(n_gold, 1)[..., None]
  loss = -jnp.sum(jnp.where(gold, target * log_s, 0.0), axis=-1)
  return loss, n_gold > 0


def _pointwise_rows(student_logits: Array, labels: Array, mask: Array) -> tuple[Array, Array]:
  """Per-row mean sigmoid cross-entropy over valid candidates, and rows with >= 1 valid candidate."""
  logits = jnp.where(mask, _as_float(student_logits), 0.0)
  bce = optax.sigmoid_binary_cross_entropy(logits, (labels > 0).astype(logits.dtype))
  n_valid = jnp.sum(mask, axis=-1)
  loss = jnp.sum(jnp.where(mask, bce, 0.0), axis=-1) / jnp.maximum(n_valid, 1)
  return loss, n_valid > 0


def listwise_hard_loss(student_logits: Array, labels: Array, mask: Array,
                       row_weights: Array | None = None) -> Array:
  """Softmax cross-entropy over candidates, target = gold docs (`labels > 0`) sharing mass equally.

  Rows with no gold among their valid candidates are left out of the mean (0 if no row has gold).
  """
  loss, rows = _listwise_rows(student_logits, labels, mask)
  return _row_mean(loss, rows, row_weights)


def pointwise_hard_loss(student_logits: Array, labels: Array, mask: Array,
                        row_weights: Array | None = None) -> Array:
  """Binary sigmoid cross-entropy per valid candidate (target `labels > 0`).

  Averaged over each row's valid candidates, then over rows (equal to the plain mean over valid
  candidates whenever rows hold equally many).
  """
  loss, rows = _pointwise_rows(student_logits, labels, mask)
  return _row_mean(loss, rows, row_weights)


def distillation_loss(student_logits: Array, teacher_logits: Array, mask: Array, temperature: float,
                      row_weights: Array | None = None) -> Array:
  """Hinton distillation: `T**2 * KL(softmax(teacher/T) || softmax(student/T))` over valid candidates.

  The `T**2` keeps gradient magnitudes comparable across temperatures. Mean over rows with at least
  one valid candidate. Gradients reach `teacher_logits` too; callers pass stored or frozen scores.
  """
  loss = _distill_rows(student_logits, teacher_logits, mask, temperature)
  return _row_mean(loss, jnp.any(mask, axis=-1), row_weights)


def combined_loss(student_logits: Array, teacher_logits: Array, labels: Array, mask: Array,
                  temperature: float, alpha: float, hard: HardLoss = "listwise",
                  hard_row_mask: Array | None = None,
                  row_weights: Array | None = None,
                  hard_logits: Array | None = None, hard_labels: Array | None = None,
                  hard_mask: Array | None = None) -> tuple[Array, dict[str, Array]]:
  """The paper's `alpha * distill + (1 - alpha) * hard`, mixed per row, and its parts for logging.

  A row without a hard target (`hard_row_mask` False, e.g. a teacher-labelled pseudo-claim, or no gold
  among its candidates for the listwise loss) contributes its distillation term alone, as with alpha=1.
  When every row has a hard target, the total equals `alpha * parts['distill'] + (1 - alpha) * parts['hard']`.
  `hard_logits`/`hard_labels`/`hard_mask` ([batch, K + C], negatives.py) give the hard term a wider list than
  the teacher scored: the claim's candidates plus extra negatives; the distillation term keeps `[batch, K]`.
  Returns `(total, {'distill': mean over valid rows, 'hard': mean over hard rows})`.
  """
  if hard_logits is None:
    hard_logits, hard_labels, hard_mask = student_logits, labels, mask
  if hard == "listwise":
    hard_loss, has_target = _listwise_rows(hard_logits, hard_labels, hard_mask)
  elif hard == "pointwise":
    hard_loss, has_target = _pointwise_rows(hard_logits, hard_labels, hard_mask)
  else:
    raise ValueError(f"hard must be 'listwise' or 'pointwise', got {hard!r}")
  distill = _distill_rows(student_logits, teacher_logits, mask, temperature)
  valid_rows = jnp.any(mask, axis=-1)
  hard_rows = valid_rows & has_target
  if hard_row_mask is not None:
    hard_rows = hard_rows & jnp.asarray(hard_row_mask, bool)
  per_row = jnp.where(hard_rows, alpha * distill + (1.0 - alpha) * hard_loss, distill)
  total = _row_mean(per_row, valid_rows, row_weights)
  parts = {"distill": _row_mean(distill, valid_rows, row_weights),
           "hard": _row_mean(hard_loss, hard_rows, row_weights)}
  return total, parts


# Objectives over a batch dict: what the train step calls as `loss_fn(logits, batch) -> (loss, parts)`.

def hard_loss_fn(logits, batch):
  """Teacher objective: listwise softmax cross-entropy against the gold documents."""
  loss = listwise_hard_loss(logits, batch["cand_labels"], batch["cand_mask"])
  return loss, {"hard": loss}


def distill_loss_fn(temperature: float, alpha: float, hard: str) -> Callable:
  """Student objective: `alpha * T^2 KL(teacher || student) + (1 - alpha) * hard`; pseudo rows distil only."""
  def fn(logits, batch):
    return combined_loss(logits, batch["teacher_scores"], batch["cand_labels"], batch["cand_mask"],
                         temperature=temperature, alpha=alpha, hard=hard, hard_row_mask=~batch["is_pseudo"],
                         hard_logits=batch.get("wide_logits"), hard_labels=batch.get("wide_labels"),
                         hard_mask=batch.get("wide_mask"))
  return fn

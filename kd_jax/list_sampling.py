"""Training lists sampled from each claim's candidates: every gold document plus random negatives.

Why: the teacher's step costs grow with list length x pair length. Reading long pairs (256+ tokens) and seeing
each training claim several times fits a CPU only if each step scores a short list; sampling a new set of hard
(BM25 top-K) negatives at every visit keeps the whole pool in play over the epochs.

Runs inside the jitted step from the step's rng, so a resumed run samples exactly the lists it would have.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

# Per-candidate batch fields ([B, K, ...]) that follow the sampled positions.
_PER_CANDIDATE = ("pair_ids", "pair_types", "pair_mask", "cand_labels", "cand_mask", "cand_index", "bm25_scores",
                  "teacher_scores", "doc_words")


def sample_positions(rng: jax.Array, labels: jax.Array, mask: jax.Array, size: int) -> jax.Array:
  """[B, size] candidate positions per row: gold (labels > 0) first, then valid negatives in random order.

  Padded candidates come last, so they are drawn only when a row has fewer than `size` valid candidates
  (they stay masked). A row with more than `size` golds keeps a random `size` of them.
  """
  u = jax.random.uniform(rng, labels.shape)
  valid = mask.astype(bool)
  priority = u + 2.0 * (valid & (labels > 0)) + 1.0 * valid  # gold in [3, 4), negative [1, 2), padding [0, 1)
  return jax.lax.top_k(priority, size)[1]


def subsample(batch: dict, rng: jax.Array, size: int) -> dict:
  """The batch with its per-candidate fields gathered at `sample_positions` (K -> size)."""
  k = batch["cand_labels"].shape[1]
  if size <= 0 or size >= k:
    return batch
  pos = sample_positions(rng, batch["cand_labels"], batch["cand_mask"], size)
  out = dict(batch)
  for name in _PER_CANDIDATE:
    if name in batch:
      v = batch[name]
      idx = pos.reshape(pos.shape + (1,) * (v.ndim - 2))
      out[name] = jnp.take_along_axis(v, idx, axis=1)
  return out

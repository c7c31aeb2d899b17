"""Negatives beyond each claim's own candidate list, for the students' hard-label term.

Training only on each claim's 16 BM25 candidates never teaches a student to keep the rest of the collection down,
and that is what full-collection search needs. Two cheap sources of more negatives, both documents the step
already holds or can encode at little cost:
- in-batch: every other claim's candidates (hard negatives: BM25 found them for a similar claim);
- random: `R` documents per row drawn uniformly from the collection (easy negatives, but they are the ones that
  teach "a long document is not relevant to everything", i.e. against hubs).

The wide score matrix is [B, K + C]: the claim's own K candidates, then the C extra documents shared by the batch.
`wide_targets` labels and masks its columns from document row ids alone, so it is a pure function, tested against
NumPy. The distillation term stays on the own K columns: only those pairs were scored by the teacher.
"""

from __future__ import annotations

import zlib

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


def extra_doc_index(cand_index: Array, neg_index: Array | None, in_batch: bool) -> Array:
  """Collection rows [C] of the extra columns, in the order `scores_with_negatives` scores them."""
  parts = [cand_index.reshape(-1)] if in_batch else []
  if neg_index is not None:
    parts.append(neg_index.reshape(-1))
  return jnp.concatenate(parts) if parts else jnp.zeros((0,), cand_index.dtype)


def wide_targets(cand_index: Array, cand_labels: Array, cand_mask: Array, extra_index: Array,
                 extra_valid: Array) -> tuple[Array, Array]:
  """Labels and mask [B, K + C] of the wide score matrix.

  Own columns keep their labels and mask. An extra column is a negative of row b unless it repeats a document of
  b's own list (that document is already scored there, gold or not) or an earlier extra column (each document
  counts once in the softmax); `extra_valid` [C] marks real documents (padded candidates are not).
  """
  c = extra_index.shape[0]
  own_mask = cand_mask.astype(bool)
  in_own = jnp.any((extra_index[None, :, None] == cand_index[:, None, :]) & own_mask[:, None, :], axis=-1)  # [B, C]
  same = extra_index[:, None] == extra_index[None, :]
  earlier = jnp.tril(same, k=-1) & extra_valid[None, :]
  first = ~jnp.any(earlier, axis=1)  # [C]: no valid extra column before it holds the same document
  extra_mask = extra_valid[None, :] & first[None, :] & ~in_own
  labels = jnp.concatenate([cand_labels, jnp.zeros((cand_labels.shape[0], c), cand_labels.dtype)], axis=1)
  mask = jnp.concatenate([own_mask, extra_mask], axis=1)
  return labels, mask


def extra_is_real(cand_mask: Array, neg_index: Array | None, in_batch: bool) -> Array:
  """[C] True for the extra columns that are real documents (padded candidates are not)."""
  parts = [cand_mask.reshape(-1).astype(bool)] if in_batch else []
  if neg_index is not None:
    parts.append(neg_index.reshape(-1) >= 0)
  return jnp.concatenate(parts) if parts else jnp.zeros((0,), bool)


def row_rng(seed: int, claim_id, epoch, *stream: int) -> np.random.Generator:
  """The generator of one batch row's draws, keyed by (seed, claim, epoch[, stream]): the same for a claim however
  the batch is split over processes, and new at every epoch (a resumed run draws what it would have)."""
  key = claim_id.decode() if isinstance(claim_id, bytes) else str(claim_id)
  return np.random.default_rng([seed, zlib.crc32(key.encode()), int(epoch), *stream])


def random_rows(seed: int, claim_ids: np.ndarray, epochs: np.ndarray, count: int, num_docs: int) -> np.ndarray:
  """[B, count] collection rows drawn uniformly per (seed, claim, epoch) (`row_rng`)."""
  out = np.empty((len(claim_ids), count), np.int32)
  for i, (cid, epoch) in enumerate(zip(claim_ids, epochs)):
    out[i] = row_rng(seed, cid, epoch).integers(0, num_docs, count)
  return out

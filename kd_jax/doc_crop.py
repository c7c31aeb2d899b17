"""Length-varied training documents: random windows of each document's words.

Why: a student's document vector grows with the words it reads, and on SciFact almost every document fills the
128-word cut, so training never shows it a short document. On a collection of short documents (FEVER titles,
single sentences) the few longer ones then score high for every claim: hubs (README, "Searching the whole
collection"). Cropping a share of training documents to a random window (length uniform between `min_words` and
the document's length, start uniform) shows the student every length, with the teacher's label of the whole
document (as sampled passages do).

Runs inside the jitted step from the step's rng, so a resumed run crops exactly as the killed one would have.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def crop(ids: jax.Array, rng: jax.Array, prob: float, min_words: int) -> jax.Array:
  """`ids` [..., L] word ids (words first, then 0 padding) with each row, at probability `prob`, replaced by a random
  window of its words moved to the front: length uniform in [min(max(min_words, 1), n), n] for a row of n words,
  start uniform in [0, n - length]. Other rows, and empty ones, are unchanged."""
  if prob <= 0.0:
    return ids
  length_cap = ids.shape[-1]
  rows = ids.reshape(-1, length_cap)
  n = (rows > 0).sum(-1)
  k_do, k_len, k_start = jax.random.split(rng, 3)
  do = jax.random.bernoulli(k_do, prob, n.shape)
  lo = jnp.minimum(max(min_words, 1), n)  # a cropped document keeps at least one word
  # floor(u * count) of a uniform u in [0, 1) is uniform over 0 .. count - 1; the minimum guards u's rounding.
  length = lo + jnp.minimum((jax.random.uniform(k_len, n.shape) * (n - lo + 1)).astype(n.dtype), n - lo)
  start = jnp.minimum((jax.random.uniform(k_start, n.shape) * (n - length + 1)).astype(n.dtype), n - length)
  pos = jnp.arange(length_cap)
  window = jnp.take_along_axis(rows, jnp.clip(start[:, None] + pos, 0, length_cap - 1), axis=-1)
  window = jnp.where(pos < length[:, None], window, jnp.zeros((), rows.dtype))
  return jnp.where(do[:, None], window, rows).reshape(ids.shape)


def crop_batch(batch: dict, rng: jax.Array, prob: float, min_words: int) -> dict:
  """The batch with its candidate documents (`doc_words`) and extra negatives (`neg_words`) cropped."""
  if prob <= 0.0:
    return batch
  out = dict(batch)
  for name, key in zip(("doc_words", "neg_words"), jax.random.split(rng)):
    if name in batch:
      out[name] = crop(batch[name], key, prob, min_words)
  return out

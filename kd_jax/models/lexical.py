"""Lexical channel: learned term weights over hashed word ids, matched inside the students' dot product.

BM25's strength is exact matches of rare terms, which a 50-d embedding averaged into a 256-d vector blurs. Here
each position of a text gets a non-negative weight from the tower's own per-position features (a learned,
context-dependent term importance, as in uniCOIL/SPLADE), and a text's lexical vector holds, at its words'
buckets, the largest weight of each word. The dot product of a claim's and a document's lexical vectors is then
the sum, over the words they share, of the two weights: a learned exact-match score. Appended to the dense vector,
it keeps search one matrix product over vectors computed once per document.

Words are hashed to `dim` buckets (not given one dimension each) so vectors stay a fixed, modest width; two words
sharing a bucket in one claim-document pair add a false match, rare at dim >= 4096 (a 100-word document fills
~2% of 4096 buckets). Rare for one pair, but not for a collection: a document whose word shares its bucket with a
word found in a quarter of all claims ("ups" of "Grown Ups 2" with "was" on FEVER) matches all those claims, a hub.
With `private` > 0 the ids below it (the vocabulary ranks words by frequency, so the most frequent words) get a
bucket each and every other id hashes into the remaining `dim - private`: a frequent word then shares its bucket
with no other, and rare words only with each other. The buckets are a layout, not parameters (the term weights come
from the towers' features), so a trained student can be searched at any `private`.

Padding and `<unk>` (id 1, every out-of-vocabulary word when data.oov_buckets = 0) weigh 0: matching unknown words
with each other says nothing; hashed out-of-vocabulary rows (oov_buckets > 0) do match.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array
_GOLDEN = 0x9E3779B1  # Knuth's multiplicative hash constant (2^32 / golden ratio, odd)


def check_dim(dim: int) -> None:
  if dim < 0 or (dim and dim & (dim - 1)):
    raise ValueError(f"model.lexical_dim must be 0 (off) or a power of two, got {dim}")


def check_private(dim: int, private: int) -> None:
  if private < 0 or (private and private >= dim):
    raise ValueError(f"model.lexical_private must be 0 (every word hashed) or below model.lexical_dim ({dim}), "
                     f"got {private}")


def private_of(model_config) -> int:
  """The layout a model config asks for (model.lexical_private; 0 for configs saved before it existed)."""
  return int(model_config.get("lexical_private", 0))


def buckets(ids: Array, dim: int, private: int = 0) -> Array:
  """Word ids [...] -> buckets in [0, dim). private 0: the top log2(dim) bits of id * golden (mod 2^32). Else ids
  below `private` are their own bucket and the others go to private + (the top 24 bits of that hash) mod
  (dim - private)."""
  check_dim(dim)
  check_private(dim, private)
  h = ids.astype(jnp.uint32) * jnp.uint32(_GOLDEN)
  if private:
    shared = jnp.uint32(private) + (h >> jnp.uint32(8)) % jnp.uint32(dim - private)
    return jnp.where(ids < private, ids.astype(jnp.uint32), shared).astype(jnp.int32)
  bits = dim.bit_length() - 1
  return (h >> jnp.uint32(32 - bits)).astype(jnp.int32) if bits else jnp.zeros_like(ids, jnp.int32)


def lexical_vectors(ids: Array, weights: Array, dim: int, private: int = 0) -> Array:
  """ids [N, L] and weights [N, L] (>= 0) -> [N, dim]: per bucket, the largest weight of the words hashed there.

  Max, not sum: a word repeated ten times is not ten times as relevant (BM25 saturates term frequency too), and a
  long document does not outscore a short one by repetition. Padding and `<unk>` positions count 0.
  """
  valid = ids > 1
  w = jnp.where(valid, weights, 0.0)
  rows = jnp.arange(ids.shape[0])[:, None]
  return jnp.zeros((ids.shape[0], dim), w.dtype).at[rows, buckets(ids, dim, private)].max(w)


class TermWeights(nn.Module):
  """Per-position features [N, L, F] -> non-negative term weights [N, L] (softplus of a linear map)."""

  @nn.compact
  def __call__(self, feats: Array) -> Array:
    return nn.softplus(nn.Dense(1, name="dense")(feats)[..., 0])

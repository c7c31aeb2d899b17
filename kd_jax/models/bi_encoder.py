"""The teacher's pretrained weights used as they were trained: all-MiniLM-L6-v2 as a bi-encoder.

Claim and document are encoded apart (`[CLS] text [SEP]`), mean-pooled over real tokens and compared by cosine,
as sentence-transformers does. A reference row for the teacher: what cross-attention training adds over the
same weights used zero-shot.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from kd_jax.models.teacher import BertEncoder, TeacherConfig


def with_specials(ids: np.ndarray, max_len: int, cls_id: int = 101, sep_id: int = 102) -> tuple[np.ndarray, ...]:
  """0-padded WordPiece rows [n, L] -> (`[CLS] ids [SEP]` truncated to `max_len`, attention mask), int32."""
  n = len(ids)
  lengths = np.minimum((ids != 0).sum(1), max_len - 2)
  out = np.zeros((n, max_len), np.int32)
  out[:, 0] = cls_id
  width = min(ids.shape[1], max_len - 2)
  body = np.where(np.arange(width)[None] < lengths[:, None], ids[:, :width], 0)
  out[:, 1:1 + width] = body
  out[np.arange(n), 1 + lengths] = sep_id
  return out, (np.arange(max_len)[None] < (2 + lengths)[:, None]).astype(np.int32)


def mean_pool_normalised(hidden: jax.Array, mask: jax.Array) -> jax.Array:
  """Mean of the real tokens' vectors [n, H], scaled to unit length."""
  m = mask[..., None].astype(hidden.dtype)
  pooled = (hidden * m).sum(1) / jnp.maximum(m.sum(1), 1.0)
  return pooled / jnp.maximum(jnp.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12)


def make_encoder(config: TeacherConfig):
  """Jitted (encoder params, ids [n, L], mask [n, L]) -> unit vectors [n, H]."""
  module = BertEncoder(config)

  @jax.jit
  def encode(params, ids, mask):
    return mean_pool_normalised(module.apply({"params": params}, ids, jnp.zeros_like(ids), mask), mask)
  return encode


def encode(encode_fn, params, ids: np.ndarray, max_len: int, batch_size: int = 64) -> np.ndarray:
  """Unit vectors [n, H] for 0-padded WordPiece rows, in fixed-size batches (one compile)."""
  full, mask = with_specials(ids, max_len)
  out = []
  for start in range(0, len(full), batch_size):
    x, m = full[start:start + batch_size], mask[start:start + batch_size]
    pad = batch_size - len(x)
    x, m = np.pad(x, ((0, pad), (0, 0))), np.pad(m, ((0, pad), (0, 0)))
    out.append(np.asarray(encode_fn(params, x, m))[: batch_size - pad])
  return np.concatenate(out)

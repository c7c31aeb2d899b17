"""Claim-independent students: a claim tower and a document tower whose vectors meet only in `score`.

Because a document's vector never sees the claim, the whole collection can be encoded once and searched
with a matrix product, which is the point of distilling the cross-attention teacher into these models.

Token ids are int32 `[..., L]` with 0 = padding (trailing) and 1 = out-of-vocabulary; mask = ids != 0.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, ClassVar, Literal, get_args

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from kd_jax.models import bilstm, fast_ops, lexical, registry

Array = jax.Array
PAD_ID = 0
OOV_ID = 1


Scoring = Literal["dot", "cosine", "doc_cosine"]
SCORINGS = get_args(Scoring)  # what DualEncoder accepts, in the order its error names them


@dataclasses.dataclass(frozen=True, kw_only=True)
class StudentConfig:
  """Fields shared by both students."""
  vocab_size: int
  embed_dim: int = 50  # GloVe 6B 50-d
  freeze_embeddings: bool = False
  shared_towers: bool = True  # False: separate claim and document encoders
  out_dim: int = 256
  # cosine: of the dense part only (the lexical channel stays a dot). doc_cosine: only the document's dense part is
  # scaled to unit length, so no document outscores the others for every claim by its norm (a hub), while the
  # claim's norm still weighs its dense part against the lexical channel.
  scoring: Scoring = "dot"
  # Raw cosines lie in [-1, 1], far too flat for a softmax over candidates; the scale is learned.
  cosine_scale_init: float = 10.0
  dropout_rate: float = 0.1
  dropout_rng: str = "threefry"  # or 'hash': decisions from a cheap hash of each position (fast_ops.hash_bits)
  # >0: vectors also carry this many hashed buckets of learned term weights (models/lexical.py), so the dot product
  # adds a learned exact-match score; a power of two. Vectors are then out_dim + lexical_dim wide.
  lexical_dim: int = 0
  # >0: the vocabulary's `lexical_private` most frequent ids get a lexical bucket each, the rest hash into the others,
  # so no common claim word shares its bucket with a document's word (models/lexical.py). A layout, not parameters.
  lexical_private: int = 0
  # False: hashed out-of-vocabulary ids (data.oov_buckets) get no embedding rows (the builder sizes the table to the
  # vocabulary and they read <unk>'s row), so only the lexical channel tells them apart: rare words match exactly at
  # no parameter cost.
  embed_oov: bool = True


@dataclasses.dataclass(frozen=True, kw_only=True)
class CNNConfig(StudentConfig):
  widths: tuple[int, ...] = (1, 2, 3, 5)
  num_filters: int = 128  # per width


@dataclasses.dataclass(frozen=True, kw_only=True)
class BiLSTMConfig(StudentConfig):
  hidden: int = 128  # per direction
  pooling: Literal["max", "mean"] = "max"


@jax.custom_vjp
def masked_max(x: Array, mask: Array) -> Array:
  """Max over axis -2 of `x` [..., L, F] at valid positions; zeros for an all-padding sequence.

  The gradient reaches the position(s) holding the max. Autodiff of `jnp.max` would also count ties and divide
  by their number, three more passes over [..., L, F] (about a third of the CNN's train step on CPU); here a tie
  passes the full gradient to each tied position. Ties of real-valued activations have probability zero, except
  ReLU's zeros, whose gradient ReLU itself stops.
  """
  return _masked_max_fwd(x, mask)[0]


def _masked_max_fwd(x: Array, mask: Array):
  filled = jnp.where(mask[..., None], x, jnp.finfo(x.dtype).min)
  top = jnp.max(filled, axis=-2)
  any_valid = jnp.any(mask, axis=-1)[..., None]
  # Residuals: `x` itself (not `filled`, which would be one more [..., L, F] array to write) and the mask.
  return jnp.where(any_valid, top, 0.0), (x, top, any_valid, mask)


def _masked_max_bwd(res, g):
  x, top, any_valid, mask = res
  at_max = (x == top[..., None, :]) & mask[..., None] & any_valid[..., None]
  return jnp.where(at_max, g[..., None, :], 0.0).astype(x.dtype), np.zeros(mask.shape, jax.dtypes.float0)


masked_max.defvjp(_masked_max_fwd, _masked_max_bwd)


def masked_mean(x: Array, mask: Array) -> Array:
  """Mean over axis -2 of `x` [..., L, F] at valid positions; zeros for an all-padding sequence."""
  total = jnp.sum(jnp.where(mask[..., None], x, 0.0), axis=-2)
  return total / jnp.maximum(jnp.sum(mask, axis=-1), 1)[..., None].astype(x.dtype)


class Embed(nn.Module):
  """Word embeddings with padded positions zeroed, so the pad row's values never matter."""
  config: StudentConfig

  @nn.compact
  def __call__(self, ids: Array) -> tuple[Array, Array]:
    mask = ids != PAD_ID
    # Ids past the table (hashed out-of-vocabulary words without rows of their own, embed_oov=False) read <unk>.
    rows = jnp.where(ids >= self.config.vocab_size, OOV_ID, ids)
    x = nn.Embed(self.config.vocab_size, self.config.embed_dim, name="embed")(rows)
    if self.config.freeze_embeddings:
      x = jax.lax.stop_gradient(x)
    return jnp.where(mask[..., None], x, 0.0), mask


class CNNEncoder(nn.Module):
  """One tower: embeddings -> parallel 1-D convolutions + ReLU -> masked max over time -> projection."""
  config: CNNConfig

  @nn.compact
  def __call__(self, ids: Array, deterministic: bool = True) -> Array:
    cfg = self.config
    x, mask = Embed(cfg, name="tokens")(ids)
    x = fast_ops.dropout(self, x, cfg.dropout_rate, deterministic, rng=cfg.dropout_rng)
    # 'SAME' pads by a width-only amount, and padded positions are zero on input, so a valid position's
    # window reads the same zeros whether the sequence ends or trailing padding follows: padding-invariant.
    convs = [nn.relu(nn.Conv(cfg.num_filters, (w,), padding="SAME", name=f"conv{w}")(x)) for w in cfg.widths]
    z = jnp.concatenate([masked_max(c, mask) for c in convs], axis=-1)
    z = fast_ops.dropout(self, z, cfg.dropout_rate, deterministic, rng=cfg.dropout_rng)
    return with_lexical(cfg, ids, nn.Dense(cfg.out_dim, name="proj")(z), lambda: jnp.concatenate(convs, axis=-1))


class BiLSTMEncoder(nn.Module):
  """One tower: embeddings -> BiLSTM (stops at each sequence's length) -> masked pooling -> projection."""
  config: BiLSTMConfig

  @nn.compact
  def __call__(self, ids: Array, deterministic: bool = True) -> Array:
    cfg = self.config
    x, mask = Embed(cfg, name="tokens")(ids)
    x = fast_ops.dropout(self, x, cfg.dropout_rate, deterministic, rng=cfg.dropout_rng)
    lengths = jnp.sum(mask, axis=-1).astype(jnp.int32)
    # Both directions in one scan with a hand-written VJP (bilstm.py): Flax's Bidirectional OptimizedLSTMCells'
    # function and parameters. Named as Flax named those cells, so checkpoints of either load into the other.
    weights = [bilstm.LSTMWeights(cfg.hidden, name=f"OptimizedLSTMCell_{i}")(x.shape[-1]) for i in range(2)]
    hf, hb = bilstm.bilstm(x, lengths, *weights)
    if cfg.pooling not in ("max", "mean"):
      raise ValueError(f"pooling must be 'max' or 'mean', got {cfg.pooling!r}")
    pool = masked_max if cfg.pooling == "max" else masked_mean
    z = bilstm.pooled(hf, hb, mask, pool)
    z = fast_ops.dropout(self, z, cfg.dropout_rate, deterministic, rng=cfg.dropout_rng)
    return with_lexical(cfg, ids, nn.Dense(cfg.out_dim, name="proj")(z), lambda: bilstm.batch_major(hf, hb))


def with_lexical(cfg: StudentConfig, ids: Array, dense: Array, feats: Callable[[], Array]) -> Array:
  """The dense vectors [N, out_dim], followed by the lexical channel's [N, lexical_dim] when it is on; `feats`
  gives the tower's per-position features [N, L, F] that weigh each word. Call inside the tower's compact method."""
  if not cfg.lexical_dim:
    return dense
  weights = lexical.TermWeights(name="term_weights")(feats())
  return jnp.concatenate([dense, lexical.lexical_vectors(ids, weights, cfg.lexical_dim, cfg.lexical_private)], axis=-1)


def _encode_flat(tower: Callable[..., Array], ids: Array, deterministic: bool) -> Array:
  """Runs a tower on ids [..., L] by flattening the leading dims; returns [..., D]."""
  lead = ids.shape[:-1]
  vecs = tower(ids.reshape(-1, ids.shape[-1]), deterministic=deterministic)
  return vecs.reshape(*lead, vecs.shape[-1])


def _l2_normalize(x: Array, eps: float = 1e-12) -> Array:
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), eps))


class DualEncoder(nn.Module):
  """Two towers (or one, shared) plus the dot/cosine scorer; subclasses name the tower type."""
  config: StudentConfig
  encoder_cls: ClassVar[type[nn.Module]]  # the tower, set by subclasses

  def setup(self):
    if self.config.scoring not in SCORINGS:
      raise ValueError(f"scoring must be one of {', '.join(SCORINGS)}, got {self.config.scoring!r}")
    lexical.check_dim(self.config.lexical_dim)
    if self.config.lexical_dim:
      lexical.check_private(self.config.lexical_dim, self.config.lexical_private)
    if self.config.shared_towers:
      self.encoder = self.encoder_cls(self.config)
    else:
      self.claim_encoder = self.encoder_cls(self.config)
      self.doc_encoder = self.encoder_cls(self.config)
    if self.config.scoring != "dot":
      self.cosine_scale = self.param("cosine_scale", nn.initializers.constant(self.config.cosine_scale_init), ())

  def encode_claims(self, claim_ids: Array, deterministic: bool = True) -> Array:
    """Claim ids [..., Lc] -> vectors [..., out_dim]."""
    tower = self.encoder if self.config.shared_towers else self.claim_encoder
    return _encode_flat(tower, claim_ids, deterministic)

  def encode_docs(self, doc_ids: Array, deterministic: bool = True) -> Array:
    """Document ids [..., Ld] -> vectors [..., out_dim]."""
    tower = self.encoder if self.config.shared_towers else self.doc_encoder
    return _encode_flat(tower, doc_ids, deterministic)

  def score(self, claim_vecs: Array, doc_vecs: Array) -> Array:
    """Claims [B, D] against per-claim candidates [B, K, D] -> [B, K], or a shared matrix [N, D] -> [B, N]."""
    if doc_vecs.ndim not in (2, 3):
      raise ValueError(f"doc_vecs must be [B, K, D] or [N, D], got shape {doc_vecs.shape}")
    if self.config.scoring != "dot":
      # Only the dense part is normalised (and scaled): the lexical channel's dot product is its match score.
      d = self.config.out_dim
      claim_dense = claim_vecs[..., :d] if self.config.scoring == "doc_cosine" else _l2_normalize(claim_vecs[..., :d])
      claim_vecs = jnp.concatenate([self.cosine_scale * claim_dense, claim_vecs[..., d:]], -1)
      doc_vecs = jnp.concatenate([_l2_normalize(doc_vecs[..., :d]), doc_vecs[..., d:]], -1)
    return jnp.einsum("bd,bkd->bk" if doc_vecs.ndim == 3 else "bd,nd->bn", claim_vecs, doc_vecs)

  def __call__(self, claim_ids: Array, doc_ids: Array, deterministic: bool = True) -> Array:
    """Claims [B, Lc] and their candidates [B, K, Ld] -> scores [B, K]. Creates every parameter on init."""
    return self.score(self.encode_claims(claim_ids, deterministic), self.encode_docs(doc_ids, deterministic))

  def scores_with_negatives(self, claim_ids: Array, doc_ids: Array, neg_ids: Array | None, in_batch: bool,
                            deterministic: bool = True) -> tuple[Array, Array]:
    """Scores of each claim's own candidates [B, K], and of its own candidates followed by the batch's extra
    documents [B, K + C]: every claim's candidates (in_batch, C += B*K) and every row's random negatives
    `neg_ids` [B, R, Ld] (C += B*R). Each document is encoded once; negatives.wide_targets labels the columns."""
    claims = self.encode_claims(claim_ids, deterministic)
    docs = self.encode_docs(doc_ids, deterministic)
    own = self.score(claims, docs)
    pool = [docs.reshape(-1, docs.shape[-1])] if in_batch else []
    if neg_ids is not None:
      pool.append(self.encode_docs(neg_ids.reshape(-1, neg_ids.shape[-1]), deterministic))
    if not pool:
      return own, own
    return own, jnp.concatenate([own, self.score(claims, jnp.concatenate(pool))], axis=1)


class CNNStudent(DualEncoder):
  """Claim-independent CNN dual encoder (`config: CNNConfig`)."""
  encoder_cls: ClassVar[type[nn.Module]] = CNNEncoder


class BiLSTMStudent(DualEncoder):
  """Claim-independent BiLSTM dual encoder (`config: BiLSTMConfig`)."""
  encoder_cls: ClassVar[type[nn.Module]] = BiLSTMEncoder


def with_embeddings(params: Any, matrix: np.ndarray | Array) -> dict:
  """Copy of `params` (the variables dict or its 'params' entry) with every embedding table set to `matrix`.

  With separate towers both the claim and the document tables are replaced.
  """
  flat, paths = _embedding_tables(params)
  for path in paths:
    if tuple(flat[path].shape) != tuple(np.shape(matrix)):
      raise ValueError(f"embedding {'/'.join(path)} has shape {flat[path].shape}, matrix has {np.shape(matrix)}")
    flat[path] = jnp.asarray(matrix, dtype=flat[path].dtype)
  return traverse_util.unflatten_dict(flat)


def scale_unknown(params: Any, factor: float) -> dict:
  """Copy of `params` with the `<unk>` row (OOV_ID, which every out-of-vocabulary word without a row of its own reads)
  of every embedding table times `factor`: at 0, unknown words add nothing to the towers' inputs."""
  flat, paths = _embedding_tables(params)
  for path in paths:
    flat[path] = jnp.asarray(flat[path]).at[OOV_ID].multiply(factor)
  return traverse_util.unflatten_dict(flat)


def _embedding_tables(params: Any) -> tuple[dict, list[tuple]]:
  """(flattened `params`, the paths of its word-embedding tables: the claim and document towers' when separate)."""
  flat = traverse_util.flatten_dict(params)
  paths = [p for p in flat if p[-2:] == ("embed", "embedding")]
  if not paths:
    raise ValueError("no embedding table ('embed'/'embedding') found in params")
  return flat, paths


registry.register_student("cnn", "CNN", CNNConfig, CNNStudent)
registry.register_student("lstm", "BiLSTM", BiLSTMConfig, BiLSTMStudent)

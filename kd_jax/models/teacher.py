"""Cross-attention teacher: a post-LN BERT encoder in Linen and a [CLS] relevance head on top.

Submodule names follow Hugging Face BERT (`embeddings/word_embeddings`, `layer_3/attention/query`, ...)
so that `hf_weights.py` maps a checkpoint with a short table.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any


@dataclasses.dataclass(frozen=True)
class TeacherConfig:
  """BERT hyper-parameters (defaults: all-MiniLM-L6-v2). `dtype` is the compute dtype; params stay float32."""
  vocab_size: int = 30522
  hidden_size: int = 384
  num_layers: int = 6
  num_heads: int = 12
  intermediate_size: int = 1536
  max_position_embeddings: int = 512
  type_vocab_size: int = 2
  layer_norm_eps: float = 1e-12
  dropout_rate: float = 0.1
  initializer_range: float = 0.02
  dtype: Dtype = jnp.float32

  @classmethod
  def from_hf(cls, hf: dict[str, Any], **overrides: Any) -> TeacherConfig:
    """Builds the config from a Hugging Face BERT `config.json` dict; `overrides` set e.g. `dtype`."""
    # Other activations / relative positions would load without error and then compute something else.
    if hf.get("hidden_act", "gelu") != "gelu":
      raise ValueError(f"Only exact (erf) 'gelu' BERT models are supported, got hidden_act={hf['hidden_act']!r}")
    if hf.get("position_embedding_type", "absolute") != "absolute":
      raise ValueError(f"Only absolute position embeddings are supported, got {hf['position_embedding_type']!r}")
    fields = dict(
        vocab_size=hf["vocab_size"], hidden_size=hf["hidden_size"], num_layers=hf["num_hidden_layers"],
        num_heads=hf["num_attention_heads"], intermediate_size=hf["intermediate_size"],
        max_position_embeddings=hf["max_position_embeddings"], type_vocab_size=hf.get("type_vocab_size", 2),
        layer_norm_eps=hf.get("layer_norm_eps", 1e-12), dropout_rate=hf.get("hidden_dropout_prob", 0.1),
        initializer_range=hf.get("initializer_range", 0.02))
    return cls(**{**fields, **overrides})


def _dense(c: TeacherConfig, features: int, name: str) -> nn.Dense:
  # BERT's N(0, 0.02) init rather than lecun: the from-scratch ablation should start like BERT does.
  return nn.Dense(features, dtype=c.dtype, kernel_init=nn.initializers.normal(c.initializer_range), name=name)


def _layer_norm(c: TeacherConfig, name: str) -> nn.LayerNorm:
  return nn.LayerNorm(epsilon=c.layer_norm_eps, dtype=c.dtype, name=name)


class Embeddings(nn.Module):
  """Word + position + token-type embeddings, LayerNorm, dropout."""
  config: TeacherConfig

  @nn.compact
  def __call__(self, input_ids: jax.Array, token_type_ids: jax.Array, deterministic: bool) -> jax.Array:
    c = self.config
    def embed(n: int, name: str) -> nn.Embed:
      return nn.Embed(n, c.hidden_size, dtype=c.dtype, embedding_init=nn.initializers.normal(c.initializer_range),
                      name=name)
    positions = jnp.arange(input_ids.shape[1])[None]
    x = (embed(c.vocab_size, "word_embeddings")(input_ids)
         + embed(c.max_position_embeddings, "position_embeddings")(positions)
         + embed(c.type_vocab_size, "token_type_embeddings")(token_type_ids))
    x = _layer_norm(c, "LayerNorm")(x)
    return nn.Dropout(c.dropout_rate)(x, deterministic=deterministic)


class SelfAttention(nn.Module):
  """Multi-head self-attention whose keys are masked by `attention_mask` (1 = token, 0 = padding)."""
  config: TeacherConfig

  @nn.compact
  def __call__(self, x: jax.Array, attention_mask: jax.Array, deterministic: bool) -> jax.Array:
    c = self.config
    b, length, _ = x.shape
    head_dim = c.hidden_size // c.num_heads
    q, k, v = (_dense(c, c.hidden_size, n)(x).reshape(b, length, c.num_heads, head_dim)
               for n in ("query", "key", "value"))
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(jnp.float32) / jnp.sqrt(head_dim).astype(jnp.float32)
    # Softmax in float32 even for bf16 compute; `where` with the dtype's min (not an additive -1e9) cannot
    # overflow, and a row with every key masked comes out uniform rather than NaN.
    scores = jnp.where(attention_mask[:, None, None, :] > 0, scores, jnp.finfo(scores.dtype).min)
    probs = nn.Dropout(c.dropout_rate)(jax.nn.softmax(scores, axis=-1).astype(c.dtype), deterministic=deterministic)
    return jnp.einsum("bhqk,bkhd->bqhd", probs, v).reshape(b, length, c.hidden_size)


class Layer(nn.Module):
  """One post-LN transformer block: attention -> residual + LN -> erf-GELU FFN -> residual + LN."""
  config: TeacherConfig

  @nn.compact
  def __call__(self, x: jax.Array, attention_mask: jax.Array, deterministic: bool) -> jax.Array:
    c = self.config
    drop = nn.Dropout(c.dropout_rate, deterministic=deterministic)
    a = SelfAttention(c, name="attention")(x, attention_mask, deterministic)
    x = _layer_norm(c, "attention_LayerNorm")(x + drop(_dense(c, c.hidden_size, "attention_output")(a)))
    h = nn.gelu(_dense(c, c.intermediate_size, "intermediate")(x), approximate=False)
    return _layer_norm(c, "output_LayerNorm")(x + drop(_dense(c, c.hidden_size, "output")(h)))


class BertEncoder(nn.Module):
  """BERT encoder: token ids [B, L] -> hidden states [B, L, H] in `config.dtype`."""
  config: TeacherConfig

  @nn.compact
  def __call__(self, input_ids: jax.Array, token_type_ids: jax.Array, attention_mask: jax.Array,
               deterministic: bool = True) -> jax.Array:
    c = self.config
    if input_ids.shape[1] > c.max_position_embeddings:
      # JAX clamps out-of-range gathers, so an over-long input would silently reuse the last position.
      raise ValueError(f"Sequence length {input_ids.shape[1]} exceeds max_position_embeddings "
                       f"{c.max_position_embeddings}")
    x = Embeddings(c, name="embeddings")(input_ids, token_type_ids, deterministic)
    for i in range(c.num_layers):
      x = Layer(c, name=f"layer_{i}")(x, attention_mask, deterministic)
    return x


class CrossEncoder(nn.Module):
  """Teacher: `[CLS] claim [SEP] document [SEP]` -> one float32 relevance logit per pair, shape [B]."""
  config: TeacherConfig

  @nn.compact
  def __call__(self, input_ids: jax.Array, token_type_ids: jax.Array, attention_mask: jax.Array,
               deterministic: bool = True) -> jax.Array:
    c = self.config
    h = BertEncoder(c, name="encoder")(input_ids, token_type_ids, attention_mask, deterministic)
    cls = nn.Dropout(c.dropout_rate)(h[:, 0], deterministic=deterministic)
    return _dense(c, 1, "score")(cls)[:, 0].astype(jnp.float32)

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

from kd_jax.models import fast_ops

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
  # 'bf16_f32': every multiply takes bf16 inputs and accumulates in f32 (fast_ops.py); 'float32': plain f32.
  matmul: str = "float32"
  dropout_bits: int = 32  # random bits per dropout decision: 32 (Flax), or 16 / 8 (cheaper masks)
  dropout_rng: str = "threefry"  # or 'hash': decisions from a cheap hash of the element index (fast_ops.hash_bits)
  # Dropout on attention probabilities: L^2 decisions per head and layer, most of the mask cost at long lengths.
  attention_dropout_rate: float = 0.1
  # Relevance head: 'cls' (a linear score of BERT's [CLS] vector), 'mean' (of the pair's mean token vector, the
  # pooling all-MiniLM-L6-v2 was trained with) or 'seg_cosine' (scaled cosine of the claim's and the document's
  # mean token vectors in the joint pass: meaningful before training, for a bi-encoder checkpoint).
  head: str = "cls"

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
        attention_dropout_rate=hf.get("attention_probs_dropout_prob", 0.1),
        initializer_range=hf.get("initializer_range", 0.02))
    return cls(**{**fields, **overrides})


# Fields that choose how the teacher computes, not the shapes of its weights: a checkpoint serves any of them.
RUNTIME_FIELDS = ("dtype", "dropout_rate", "initializer_range", "matmul", "dropout_bits", "dropout_rng",
                  "attention_dropout_rate", "head")


def _dense(c: TeacherConfig, features: int, name: str) -> nn.Dense:
  # BERT's N(0, 0.02) init rather than lecun: the from-scratch ablation should start like BERT does.
  dot = fast_ops.mixed_dot_general if c.matmul == "bf16_f32" else None
  return nn.Dense(features, dtype=c.dtype, kernel_init=nn.initializers.normal(c.initializer_range), name=name,
                  dot_general=dot)


def _dropout(module: nn.Module, x: jax.Array, deterministic: bool, rate: float | None = None) -> jax.Array:
  c = module.config
  return fast_ops.dropout(module, x, c.dropout_rate if rate is None else rate, deterministic, c.dropout_bits,
                          c.dropout_rng)


def _layer_norm(c: TeacherConfig, name: str) -> nn.LayerNorm:
  return nn.LayerNorm(epsilon=c.layer_norm_eps, dtype=c.dtype, name=name)


def _gelu(x: jax.Array) -> jax.Array:
  """Exact (erf) GELU, written as BERT/HF write it. `nn.gelu(approximate=False)` computes the same function
  through erfc, which XLA:CPU evaluates about 4x slower (forward and backward): 150 ms of a 256-token step."""
  return 0.5 * x * (1.0 + jax.lax.erf(x * jnp.asarray(0.5**0.5, x.dtype)))


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
    return _dropout(self, x, deterministic)


class SelfAttention(nn.Module):
  """Multi-head self-attention whose keys are masked by `attention_mask` (1 = token, 0 = padding)."""
  config: TeacherConfig

  @nn.compact
  def __call__(self, x: jax.Array, attention_mask: jax.Array, deterministic: bool) -> jax.Array:
    c = self.config
    b, length, _ = x.shape
    head_dim = c.hidden_size // c.num_heads
    # Head-major [B, heads, L, d]: batched products with leading batch dims, which XLA:CPU runs for every dtype
    # combination (a bf16 x bf16 -> f32 product with batch dims elsewhere has no CPU kernel).
    q, k, v = (_dense(c, c.hidden_size, n)(x).reshape(b, length, c.num_heads, head_dim).transpose(0, 2, 1, 3)
               for n in ("query", "key", "value"))
    einsum = fast_ops.einsum_fn(c.matmul)
    # Scaling the [L, d] queries costs L/d times less than scaling the [L, L] scores.
    scores = einsum("bhqd,bhkd->bhqk", q * (1.0 / head_dim**0.5), k).astype(jnp.float32)
    # Softmax in float32 even for bf16 compute; `where` with the dtype's min (not an additive -1e9) cannot
    # overflow, and a row with every key masked comes out uniform rather than NaN.
    scores = jnp.where(attention_mask[:, None, None, :] > 0, scores, jnp.finfo(scores.dtype).min)
    # softmax(s) @ v with the division moved after the product: dividing the [L, d] output by each row's sum
    # replaces dividing the [L, L] probabilities (forward and backward), the largest elementwise cost of the
    # step at 256 tokens. Dropping the unnormalised weights drops the same probabilities.
    weights = jnp.exp(scores - jax.lax.stop_gradient(scores.max(axis=-1, keepdims=True)))
    total = weights.sum(axis=-1, keepdims=True)
    dropped = _dropout(self, weights.astype(c.dtype), deterministic, c.attention_dropout_rate)
    out = (einsum("bhqk,bhkd->bhqd", dropped, v).astype(jnp.float32) / total).astype(c.dtype)
    return out.transpose(0, 2, 1, 3).reshape(b, length, c.hidden_size)


class Layer(nn.Module):
  """One post-LN transformer block: attention -> residual + LN -> erf-GELU FFN -> residual + LN."""
  config: TeacherConfig

  @nn.compact
  def __call__(self, x: jax.Array, attention_mask: jax.Array, deterministic: bool) -> jax.Array:
    c = self.config
    a = SelfAttention(c, name="attention")(x, attention_mask, deterministic)
    a = _dropout(self, _dense(c, c.hidden_size, "attention_output")(a), deterministic)
    x = _layer_norm(c, "attention_LayerNorm")(x + a)
    h = _gelu(_dense(c, c.intermediate_size, "intermediate")(x))
    h = _dropout(self, _dense(c, c.hidden_size, "output")(h), deterministic)
    return _layer_norm(c, "output_LayerNorm")(x + h)


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
    if c.head == "seg_cosine":
      # Cosine of the claim's and the document's mean token vectors within the joint pass, scaled: with the
      # bi-encoder's weights it ranks by meaning before any training, and cross-attention refines it. Segments
      # come from token types (pack_pairs: 0 = [CLS] claim [SEP], 1 = document [SEP]); a pair without type-1
      # tokens scores 0. The scale starts at sentence-transformers' 20 and, at fine-tuning learning rates, barely
      # moves: in effect a fixed temperature.
      def seg_mean(seg):
        m = ((attention_mask > 0) & (token_type_ids == seg))[..., None].astype(jnp.float32)
        v = (h.astype(jnp.float32) * m).sum(1) / jnp.maximum(m.sum(1), 1.0)
        return v / jnp.maximum(jnp.linalg.norm(v, axis=-1, keepdims=True), 1e-6)
      scale = self.param("score_scale", nn.initializers.constant(20.0), ())
      return scale * (seg_mean(0) * seg_mean(1)).sum(-1)
    if c.head == "cls":
      pooled = h[:, 0]
    elif c.head == "mean":
      m = attention_mask[..., None].astype(h.dtype)
      pooled = (h * m).sum(1) / jnp.maximum(m.sum(1), 1)
    else:
      raise ValueError(f"head must be 'cls', 'mean' or 'seg_cosine', got {c.head!r}")
    pooled = _dropout(self, pooled, deterministic)
    return _dense(c, 1, "score")(pooled)[:, 0].astype(jnp.float32)

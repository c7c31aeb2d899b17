"""Config -> (Linen module, initial params, batch -> candidate logits [B, K]) for the teacher and students.

The training loop, the scorer and the evaluator only see this interface, so one loop serves all three models.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from kd_jax import pretrained
from kd_jax.data.prepare import Prepared
from kd_jax.models import hf_weights, registry, students
from kd_jax.models.teacher import CrossEncoder, TeacherConfig

# Embedded out-of-vocabulary rows beyond this are a configuration slip (2^20 hashed ids meant for the lexical channel).
_MAX_OOV_ROWS = 1 << 16


@dataclasses.dataclass(frozen=True)
class Built:
  kind: str
  module: Any
  tokens: str  # batch tokens the model reads: "pairs" (teacher) or "words" (students)
  init: Callable[[jax.Array], Any]
  logits: Callable[..., jax.Array]  # (params, batch, rng=None, train=False) -> [B, K]
  # Students only: (params, batch, rng, in_batch) -> (own [B, K], wide [B, K + C]); see negatives.py.
  wide_logits: Callable[..., tuple[jax.Array, jax.Array]] | None = None
  pair_len: int = 0  # the teacher's `[CLS] claim [SEP] doc [SEP]` length; 0 for students (they read words)


def teacher_config(mcfg) -> TeacherConfig:
  dtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[mcfg.dtype]
  # Runs saved before these fields existed computed in plain f32 with Flax dropout.
  compute = dict(dtype=dtype, dropout_rate=mcfg.dropout_rate, matmul=mcfg.get("matmul", "float32"),
                 dropout_bits=mcfg.get("dropout_bits", 32), dropout_rng=mcfg.get("dropout_rng", "threefry"),
                 attention_dropout_rate=mcfg.get("attention_dropout_rate", mcfg.dropout_rate),
                 head=mcfg.get("head", "cls"))
  if mcfg.pretrained:
    hf = json.loads((pretrained.hf_model_dir(mcfg.pretrained) / "config.json").read_text())
    return TeacherConfig.from_hf(hf, **compute)
  # From scratch (the ablation): MiniLM's shape unless overridden.
  return TeacherConfig(num_layers=mcfg.num_layers, hidden_size=mcfg.hidden_size, num_heads=mcfg.num_heads,
                       intermediate_size=4 * mcfg.hidden_size, **compute)


def build(mcfg, prepared: Prepared) -> Built:
  if mcfg.kind == "teacher":
    config = teacher_config(mcfg)
    module = CrossEncoder(config)

    def init(rng):
      path = pretrained.hf_model_dir(mcfg.pretrained) if mcfg.pretrained else None
      return hf_weights.init_teacher_params(config, rng, path, max_len=mcfg.pair_len)

    def logits(params, batch, rng=None, train=False):
      b, k, length = batch["pair_ids"].shape
      flat = [batch[n].reshape(b * k, length) for n in ("pair_ids", "pair_types", "pair_mask")]
      out = module.apply({"params": params}, *flat, deterministic=not train,
                         rngs={"dropout": rng} if train else None)
      return out.reshape(b, k)

    return Built("teacher", module, "pairs", init, logits, pair_len=mcfg.pair_len)

  # Embedding rows: the vocabulary, then the hashed rows of out-of-vocabulary words (data.oov_buckets) unless
  # model.embed_oov is False (then those words read <unk>'s row, and only the lexical channel tells them apart).
  kind = registry.student(mcfg.kind, mcfg.get("module", ""))  # raises, naming the known kinds, for unknown ones
  oov_rows = prepared.oov_buckets if mcfg.get("embed_oov", True) else 0
  if oov_rows > _MAX_OOV_ROWS:
    raise ValueError(f"data.oov_buckets={oov_rows} would give the student as many embedding rows: set "
                     f"model.embed_oov=False (hashed ids for the lexical channel only) or at most {_MAX_OOV_ROWS}.")
  config = kind.make_config(mcfg, len(prepared.vocab) + oov_rows)
  module = kind.model_cls(config)

  def init(rng):
    claims = jnp.ones((1, 4), jnp.int32)
    params = module.init(rng, claims, jnp.ones((1, 2, 4), jnp.int32))["params"]
    if mcfg.glove:
      index, vectors = pretrained.glove_6b_50d()
      if vectors.shape[1] != config.embed_dim:
        raise ValueError(f"GloVe vectors are {vectors.shape[1]}-d but model.embed_dim={config.embed_dim}.")
      params = students.with_embeddings(params, pretrained.glove_embedding_matrix(
          prepared.vocab, index, np.asarray(vectors), extra_rows=oov_rows))
    return params

  def logits(params, batch, rng=None, train=False):
    return module.apply({"params": params}, batch["claim_words"], batch["doc_words"], deterministic=not train,
                        rngs={"dropout": rng} if train else None)

  def wide_logits(params, batch, rng, in_batch):
    return module.apply({"params": params}, batch["claim_words"], batch["doc_words"], batch.get("neg_words"),
                        in_batch, deterministic=False, rngs={"dropout": rng}, method=module.scores_with_negatives)

  return Built(mcfg.kind, module, "words", init, logits, wide_logits)

"""Hugging Face BERT checkpoints (`config.json` + `model.safetensors`) -> BertEncoder / CrossEncoder params."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
from flax import traverse_util
from safetensors.numpy import load_file

from kd_jax.models.teacher import RUNTIME_FIELDS, BertEncoder, CrossEncoder, TeacherConfig
from kd_jax.pretrained import hf_model_dir

Params = dict[str, Any]

# Per-layer HF module -> path inside our `layer_{i}`.
_LAYER_PARTS = {
    "attention.self.query": ("attention", "query"),
    "attention.self.key": ("attention", "key"),
    "attention.self.value": ("attention", "value"),
    "attention.output.dense": ("attention_output",),
    "attention.output.LayerNorm": ("attention_LayerNorm",),
    "intermediate.dense": ("intermediate",),
    "output.dense": ("output",),
    "output.LayerNorm": ("output_LayerNorm",),
}
_EMBEDDINGS = ("word_embeddings", "position_embeddings", "token_type_embeddings", "LayerNorm")
# Task heads outside the encoder: the pooler is untrained in MiniLM, and the teacher gets a fresh score head.
_SKIPPED = ("embeddings.position_ids", "pooler.", "classifier.", "cls.")


def _target(name: str) -> tuple[tuple[str, ...], bool] | None:
  """HF tensor name (without `bert.`) -> (path in BertEncoder params, transpose?), or None if unknown."""
  module, _, leaf = name.rpartition(".")
  if m := re.fullmatch(r"encoder\.layer\.(\d+)\.(.+)", module):
    if m[2] not in _LAYER_PARTS:
      return None
    path = (f"layer_{m[1]}", *_LAYER_PARTS[m[2]])
  elif module.startswith("embeddings.") and module.removeprefix("embeddings.") in _EMBEDDINGS:
    path = tuple(module.split("."))
  else:
    return None
  if path[-1].endswith("LayerNorm"):  # old checkpoints say gamma/beta
    leaves = {"weight": "scale", "gamma": "scale", "bias": "bias", "beta": "bias"}
  elif path[-1].endswith("embeddings"):
    leaves = {"weight": "embedding"}
  else:
    leaves = {"weight": "kernel", "bias": "bias"}
  if leaf not in leaves:
    return None
  return (*path, leaves[leaf]), leaves[leaf] == "kernel"  # torch Linear stores [out, in]


def load_bert_encoder_params(model_dir: str | Path, **config_overrides: Any) -> tuple[TeacherConfig, Params]:
  """Reads a HF BERT folder into (config, BertEncoder params, float32); raises ValueError on any mismatch."""
  path = hf_model_dir(str(model_dir))
  config = TeacherConfig.from_hf(json.loads((path / "config.json").read_text()), **config_overrides)
  ids = jnp.zeros((1, 1), jnp.int32)
  shapes = jax.eval_shape(lambda: BertEncoder(config).init(jax.random.key(0), ids, ids, ids))["params"]
  expected = traverse_util.flatten_dict(shapes)
  params, unmapped, mismatched = {}, [], []
  for name, value in load_file(str(path / "model.safetensors")).items():
    name = name.removeprefix("bert.")
    if name.startswith(_SKIPPED):
      continue
    target = _target(name)
    if target is None or target[0] not in expected:
      unmapped.append(name)
      continue
    key, transpose = target
    value = value.T if transpose else value
    if value.shape != expected[key].shape:
      mismatched.append(f"{name}: {value.shape} vs expected {expected[key].shape} at {'/'.join(key)}")
    params[key] = value
  missing = ["/".join(k) for k in expected if k not in params]
  if unmapped or missing or mismatched:
    raise ValueError(
        f"{path / 'model.safetensors'} does not match BertEncoder({config}):\n"
        f"  unmapped checkpoint tensors: {unmapped}\n  missing params: {missing}\n  shape mismatches: {mismatched}")
  return config, traverse_util.unflatten_dict({k: jnp.asarray(v, jnp.float32) for k, v in params.items()})


def init_teacher_params(config: TeacherConfig, rng: jax.Array, pretrained_dir: str | Path | None = None,
                        max_len: int = 128) -> Params:
  """CrossEncoder params: encoder from `pretrained_dir` (None: from scratch, the ablation), fresh score head."""
  ids = jnp.zeros((1, max_len), jnp.int32)
  params = jax.jit(CrossEncoder(config).init)(rng, ids, ids, jnp.ones_like(ids))["params"]
  if pretrained_dir is None:
    return params
  loaded_config, encoder = load_bert_encoder_params(pretrained_dir)
  # Run-time choices (dtype, dropout, head, ...) may differ; everything else fixes the weights' shapes.
  runtime = {f: getattr(config, f) for f in RUNTIME_FIELDS}
  if dataclasses.replace(loaded_config, **runtime) != config:
    raise ValueError(f"{pretrained_dir} holds {loaded_config}, which does not match the requested {config}")
  return {**params, "encoder": encoder}

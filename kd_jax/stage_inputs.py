"""What a trained stage needs to turn text into its inputs, stored beside its checkpoints.

`<stage>/inputs/inputs.json` holds the data settings that shape a model's inputs (word and wordpiece lengths, the
tokenizer, the collection it was trained on) and, for students, `<stage>/inputs/vocab.txt` the word vocabulary its
embedding rows follow. A stage reads these, not the prepared-data cache: it keeps working after the cache is
deleted, and reads any other collection with the vocabulary it was trained with.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path

import numpy as np

from kd_jax import atomic, multihost, pretrained
from kd_jax.data import tokenize

_LENGTHS = ("claim_word_len", "doc_word_len", "claim_wp_len", "doc_wp_len")


@dataclasses.dataclass(frozen=True)
class StageInputs:
  vocab: list[str]  # the student's word vocabulary (row i of its embedding table); the teacher's is its tokenizer's
  settings: dict  # tokenizer, lengths, the training data's name and prepared-data fingerprint

  @functools.cached_property
  def word_index(self) -> dict[str, int]:
    return {w: i for i, w in enumerate(self.vocab)}

  @property
  def oov_buckets(self) -> int:
    return int(self.settings.get("oov_buckets", 0))

  def claim_words(self, texts: list[str]) -> np.ndarray:
    return tokenize.word_ids(self.word_index, texts, self.settings["claim_word_len"], self.oov_buckets)

  def doc_words(self, texts: list[str]) -> np.ndarray:
    return tokenize.word_ids(self.word_index, texts, self.settings["doc_word_len"], self.oov_buckets)

  @functools.cached_property
  def wordpiece(self):
    return tokenize.load_wordpiece(pretrained.hf_model_dir(self.settings["tokenizer"]))


def folder(stage: Path) -> Path:
  return Path(stage) / "inputs"


def save(stage: Path, prepared, data_cfg) -> None:
  """Stores the inputs of a stage trained on `prepared` (process 0 writes; every process returns once stored)."""
  settings = {"tokenizer": data_cfg.tokenizer, **{k: int(data_cfg[k]) for k in _LENGTHS},
              "data": data_cfg.name, "prepared": prepared.root.name, "vocab_size": len(prepared.vocab),
              "oov_buckets": prepared.oov_buckets}

  def write():
    out = folder(stage)
    out.mkdir(parents=True, exist_ok=True)
    atomic.write_text(out / "vocab.txt", "\n".join(prepared.vocab))
    atomic.write_text(out / "inputs.json", json.dumps(settings, indent=2))  # last: marks the folder complete
  multihost.primary_writes(f"the inputs of {stage}", write)


def load(stage: Path) -> StageInputs:
  path = folder(stage) / "inputs.json"
  if not path.is_file():
    raise FileNotFoundError(f"{stage} holds no inputs/ (vocabulary and lengths): it was trained before stages stored "
                            "them; run --config.mode=evaluate once with its training config to store them.")
  settings = json.loads(path.read_text())
  vocab = (folder(stage) / "vocab.txt").read_text(encoding="utf-8").split("\n")
  if len(vocab) != settings["vocab_size"]:
    raise ValueError(f"{folder(stage) / 'vocab.txt'} holds {len(vocab)} words, {settings['vocab_size']} expected: "
                     "the stage folder is damaged; run --config.mode=evaluate with its training config to rewrite it.")
  return StageInputs(vocab=vocab, settings=settings)


def stored(stage: Path) -> bool:
  return (folder(stage) / "inputs.json").is_file()

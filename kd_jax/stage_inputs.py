"""What a trained stage needs to turn text into its inputs, stored beside its checkpoints.

`<stage>/inputs/inputs.json` holds the data settings that shape a model's inputs (word and wordpiece lengths, the
tokenizer, the collection it was trained on) and, for students, `<stage>/inputs/vocab.txt` the word vocabulary its
embedding rows follow, `<stage>/inputs/doc_freq.npy` the share of training documents holding each of its words and
`claim_freq.npy` the share of training claims (stopwords.py). A stage reads these, not the prepared-data cache: it
keeps working after the cache is deleted, and reads any other collection with the vocabulary it was trained with.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path

import numpy as np

from kd_jax import atomic, multihost, pretrained, stopwords
from kd_jax.data import tokenize

_LENGTHS = ("claim_word_len", "doc_word_len", "claim_wp_len", "doc_wp_len")
FREQS = ("doc_freq", "claim_freq")  # inputs/<name>.npy: StageInputs' word frequencies


@dataclasses.dataclass(frozen=True)
class StageInputs:
  vocab: list[str]  # the student's word vocabulary (row i of its embedding table); the teacher's is its tokenizer's
  settings: dict  # tokenizer, lengths, the training data's name and prepared-data fingerprint
  doc_freq: np.ndarray | None = None  # [len(vocab)]: share of the training collection's documents holding each word
  claim_freq: np.ndarray | None = None  # [len(vocab)]: share of the training claims holding each word

  @property
  def word_freq(self) -> np.ndarray | None:
    """Each word's larger share, of training documents or of training claims: what stop words are counted from
    (stopwords.py). Claims count too because documents can be short: in FEVER's page titles "a", "is" and "the" are
    rare, in its claims they are everywhere, and a title such as "A.J. Styles" matched every claim holding "a" (the
    FEVER-titles students' largest hub at home). Without claim frequencies (stages saved before), the documents'."""
    if self.doc_freq is None or self.claim_freq is None:
      return self.doc_freq
    return np.maximum(self.doc_freq, self.claim_freq)

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

  freqs = _word_freqs(prepared)

  def write():
    out = folder(stage)
    out.mkdir(parents=True, exist_ok=True)
    atomic.write_text(out / "vocab.txt", "\n".join(prepared.vocab))
    _write_freqs(stage, freqs)
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
  freqs = {name: np.load(folder(stage) / f"{name}.npy") if (folder(stage) / f"{name}.npy").is_file() else None
           for name in FREQS}
  return StageInputs(vocab=vocab, settings=settings, **freqs)


def stored(stage: Path) -> bool:
  return (folder(stage) / "inputs.json").is_file()


def _word_freqs(prepared) -> dict[str, np.ndarray]:
  train = prepared.source("train")
  claims = np.stack([train[i]["claim_words"] for i in range(len(train))])
  return {"doc_freq": stopwords.doc_freq(prepared.docs_words, len(prepared.vocab)),
          "claim_freq": stopwords.doc_freq(claims, len(prepared.vocab))}


def _write_freqs(stage: Path, freqs: dict[str, np.ndarray]) -> None:
  for name, freq in freqs.items():
    with atomic.open_for_write(folder(stage) / f"{name}.npy", "wb") as f:
      np.save(f, freq)


def add_word_freqs(stage: Path, prepared) -> None:
  """Adds doc_freq.npy and claim_freq.npy to the inputs of a stage saved before they existed, from the prepared data
  it was trained on."""
  settings = json.loads((folder(stage) / "inputs.json").read_text())
  if prepared.root.name != settings["prepared"]:
    raise ValueError(f"{stage} was trained on prepared data {settings['prepared']}, not {prepared.root.name}: pass "
                     "the stage's own training config to store its word frequencies.")
  freqs = _word_freqs(prepared)
  multihost.primary_writes(f"the word frequencies of {stage}", lambda: _write_freqs(stage, freqs))


def add_claim_freq(stage: Path, training_texts: list[str]) -> None:
  """Adds claim_freq.npy to the inputs of a stage saved before it existed, from its training claims' texts read with
  its own vocabulary (the same ids its prepared data holds; no prepared data needed)."""
  inputs = load(stage)
  freq = stopwords.doc_freq(inputs.claim_words(training_texts), len(inputs.vocab))
  multihost.primary_writes(f"the claim frequencies of {stage}", lambda: _write_freqs(stage, {"claim_freq": freq}))

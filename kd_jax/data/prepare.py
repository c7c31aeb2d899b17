"""The data-preparation stage: dataset -> BM25 candidates -> tokens -> TFDS examples, cached on disk.

The cache folder is keyed by a fingerprint of every setting that changes its contents, so two runs with
the same data settings (teacher, students, evaluation) share it, and a changed setting never reads stale
files. A half-written folder is never used: files are written under a temporary name and renamed last.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np

from kd_jax import multihost, pretrained
from kd_jax.data import candidates as cands
from kd_jax.data import datasets, tfds_builder, tokenize

SPLITS = ("train", "dev", "test")
# The prepared files depend on every field of config.data except where the cache is: the fingerprint hashes them
# all, so a new data field invalidates caches without being listed anywhere.
_WHERE = ("cache_dir",)
# Fields added after caches existed, at the value that behaves as before: hashed only when set otherwise, so older
# caches keep their names.
_ADDED = {"oov_buckets": 0}
# Settings that shape only the students' word inputs, at the values the first caches were made with. The teacher's
# scores do not depend on them: caches differing only here share one scores folder (scores_key).
_STUDENT_ONLY = {"claim_word_len": 32, "doc_word_len": 128, "vocab_size": 20000, "oov_buckets": 0}


def fingerprint(cfg) -> str:
  values = {k: str(v) for k, v in cfg.items() if k not in _WHERE and not (k in _ADDED and v == _ADDED[k])}
  if cfg.name in datasets.IN_DATA_DIR:
    values["dir"] = str(datasets.resolve_data_dir(cfg.dir))
  return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:12]


def scores_key(cfg) -> str:
  """The name teacher scores of this data are stored under: the cache name with the student-only settings at
  their first values (so a student reading longer documents reuses the teacher's scores of the same candidates)."""
  canonical = cfg.copy_and_resolve_references()
  with canonical.unlocked():
    canonical.update(_STUDENT_ONLY)
  return f"{cfg.name}-{fingerprint(canonical)}"


def cache_root(cfg) -> Path:
  return Path(cfg.cache_dir or os.environ.get("KD_JAX_CACHE", "~/.cache/kd_jax")).expanduser()


@dataclasses.dataclass
class Prepared:
  """Read-only view of a prepared folder."""
  root: Path

  @functools.cached_property
  def meta(self) -> dict:
    return json.loads((self.root / "meta.json").read_text())

  @property
  def shapes(self) -> tuple[int, int, int]:
    return tuple(self.meta["shapes"])

  @functools.cached_property
  def vocab(self) -> list[str]:
    return (self.root / "vocab.txt").read_text(encoding="utf-8").split("\n")

  @property
  def oov_buckets(self) -> int:
    return int(self.meta.get("oov_buckets", 0))

  @property
  def scores_key(self) -> str:
    return self.meta.get("scores_key", self.root.name)

  @functools.cached_property
  def doc_ids(self) -> list[str]:
    return json.loads((self.root / "doc_ids.json").read_text())

  @functools.cached_property
  def docs_wp(self) -> np.ndarray:
    return np.load(self.root / "docs_wp.npy")

  @functools.cached_property
  def docs_words(self) -> np.ndarray:
    return np.load(self.root / "docs_words.npy")

  @functools.cached_property
  def qrels(self) -> dict[str, dict[str, dict[str, int]]]:
    return json.loads((self.root / "qrels.json").read_text())

  def source(self, split: str):
    if split not in SPLITS:
      raise ValueError(f"Unknown split {split!r}; prepared splits are {SPLITS}.")
    return tfds_builder.open_split(self.root / "tfds", self.shapes, split)


def _examples(claims: datasets.ClaimSet, c: cands.Candidates, claim_wp, claim_words):
  def gen():
    for i, claim_id in enumerate(claims.ids):
      yield {"claim_id": claim_id, "claim_wp": claim_wp[i], "claim_words": claim_words[i],
             "cand_index": c.index[i], "cand_labels": c.labels[i], "cand_mask": np.ones(c.index.shape[1], bool),
             "bm25_scores": c.scores[i], "teacher_scores": np.zeros(c.index.shape[1], np.float32),
             "num_relevant": c.num_relevant[i], "is_pseudo": False}
  return gen


def prepare(cfg) -> Prepared:
  """Returns the prepared data for `cfg` (a `config.data` ConfigDict), building it on first use (on process 0 of a
  multi-host job; the others wait for it and read the same folder)."""
  root = cache_root(cfg) / f"{cfg.name}-{fingerprint(cfg)}"
  multihost.primary_writes(f"the prepared data {root}", lambda: _build_if_missing(cfg, root))
  return Prepared(root)


def training_claims(cfg) -> list[str]:
  """The training claims' texts as prepared data hold them (cut to `max_claims`, as `smoke` configs cut every
  split), read from the dataset alone."""
  texts = datasets.load(cfg).splits["train"].texts
  return texts[: cfg.max_claims] if cfg.get("max_claims") else texts


def _build_if_missing(cfg, root: Path) -> None:
  if (root / "meta.json").is_file():
    logging.info("Reusing prepared data in %s", root)
    return
  start = time.time()
  data = datasets.load(cfg)
  if cfg.max_claims:
    for split in data.splits.values():  # `smoke` configs: a small, fixed subset of every split
      del split.ids[cfg.max_claims:], split.texts[cfg.max_claims:]
      split.stats["claims"] = len(split.ids)
  coll = data.collection
  docs = [coll.document(i) for i in range(len(coll))]
  tok = tokenize.load_wordpiece(pretrained.hf_model_dir(cfg.tokenizer))
  vocab = tokenize.build_vocab(data.splits["train"].texts + docs, cfg.vocab_size)
  vocab_index = {w: i for i, w in enumerate(vocab)}

  tmp = root.with_name(root.name + f".tmp{os.getpid()}")
  shutil.rmtree(tmp, ignore_errors=True)
  tmp.mkdir(parents=True)
  np.save(tmp / "docs_wp.npy", tokenize.wordpiece_ids(tok, docs, cfg.doc_wp_len))
  buckets = int(cfg.get("oov_buckets", 0))
  np.save(tmp / "docs_words.npy", tokenize.word_ids(vocab_index, docs, cfg.doc_word_len, buckets))
  (tmp / "vocab.txt").write_text("\n".join(vocab), encoding="utf-8")
  (tmp / "doc_ids.json").write_text(json.dumps(coll.ids))

  index = cands.BM25Index(coll)
  k = min(cfg.num_candidates, len(coll))
  meta = {"dataset": data.name, "num_docs": len(coll), "num_candidates": k, "vocab_size": len(vocab),
          "oov_buckets": buckets, "scores_key": scores_key(cfg),
          "shapes": [k, cfg.claim_wp_len, cfg.claim_word_len], "splits": {}}
  generators, qrels = {}, {}
  for split in SPLITS:
    claims = data.splits[split]
    natural = cands.candidates_for(index, claims, k, force_gold=False)
    c = cands.candidates_for(index, claims, k, force_gold=True) if split == "train" else natural
    generators[split] = _examples(claims, c, tokenize.wordpiece_ids(tok, claims.texts, cfg.claim_wp_len),
                                  tokenize.word_ids(vocab_index, claims.texts, cfg.claim_word_len, buckets))
    qrels[split] = {q: claims.qrels[q] for q in claims.ids}
    meta["splits"][split] = dict(claims.stats, bm25_recall_at_k=cands.recall_at_k(natural),
                                 candidate_recall=cands.recall_at_k(c), gold_forced=split == "train")
    logging.info("%s/%s: %d claims, BM25 recall@%d %.4f (%s)", data.name, split, len(claims), k,
                 meta["splits"][split]["bm25_recall_at_k"], claims.stats)
  (tmp / "qrels.json").write_text(json.dumps(qrels))
  tfds_builder.write(tmp / "tfds", tuple(meta["shapes"]), generators)
  meta["prepare_seconds"] = round(time.time() - start, 1)
  (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
  shutil.rmtree(root, ignore_errors=True)
  os.replace(tmp, root)
  logging.info("Prepared %s in %.0fs -> %s", data.name, time.time() - start, root)

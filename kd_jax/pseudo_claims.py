"""mode=pseudo_claims: collection sentences as claims, BM25 candidate lists, scored by the finished teacher.

Stored beside the teacher, in the training examples' TFDS format (`is_pseudo=True`, the teacher's logits in
`teacher_scores`, no labels: the source document is not assumed relevant):

  <teacher_dir>/pseudo/<prepared-data folder>/<sampling key>/
    progress.npz  teacher logits scored so far; scoring saves after every chunk, so a killed run resumes
    tfds/         the examples, in sampling order, once the requested count is scored
    meta.json     count, the eligible pool's size (before the evaluation-claim guard), whether the draw ran out
                  of sentences, timing

Because the sampling order is a seeded permutation, a stored set of N serves every count <= N (a prefix),
and asking for more scores only the new pseudo-claims.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np

from kd_jax import atomic, multihost, pretrained, restored
from kd_jax.data import candidates, datasets, pipeline, prepare, pseudo, tfds_builder, tokenize

CHUNK = 256  # pseudo-claims scored between progress saves


def store_dir(teacher_dir: Path, prepared: prepare.Prepared, p) -> Path:
  key = f"seed{p.seed}-words{p.min_words}-{p.max_words}-overlap{p.max_overlap:g}"
  return Path(teacher_dir) / "pseudo" / prepared.root.name / key


def _read_meta(root: Path) -> dict | None:
  path = root / "meta.json"
  return json.loads(path.read_text()) if path.is_file() else None


def examples(ids: list[str], claim_wp: np.ndarray, claim_words: np.ndarray, rows: np.ndarray, bm25: np.ndarray,
             teacher: np.ndarray | None = None) -> list[dict]:
  """Pseudo-claims as training examples: no labels, `is_pseudo`, teacher logits when scored."""
  k = rows.shape[1]
  teacher = np.zeros(rows.shape, np.float32) if teacher is None else teacher
  return [{"claim_id": cid, "claim_wp": claim_wp[i], "claim_words": claim_words[i], "cand_index": rows[i],
           "cand_labels": np.zeros(k, np.int32), "cand_mask": np.ones(k, bool), "bm25_scores": bm25[i],
           "teacher_scores": teacher[i].astype(np.float32), "num_relevant": np.int32(0), "is_pseudo": True}
          for i, cid in enumerate(ids)]


def ensure(tcfg, tdir: Path, p, count: int):
  """The first `count` pseudo-claims of teacher `tdir` as a training source, scoring what is missing."""
  prepared = prepare.prepare(tcfg.data)
  root = store_dir(tdir, prepared, p)
  meta = _read_meta(root)
  if meta and (meta["count"] >= count or meta.get("exhausted", False)):
    if meta["count"] < count:
      logging.warning("Only %d pseudo-claims exist under these sampling settings (asked for %d).", meta["count"],
                      count)
    source = tfds_builder.open_split(root / "tfds", prepared.shapes, "train")
    return pipeline.Prefix(source, min(count, meta["count"]))
  if not (Path(tdir) / "complete.json").is_file():
    raise FileNotFoundError(f"No finished teacher in {tdir} to label pseudo-claims: train it (python run.py "
                            f"--config=configs/teacher.py --workdir={Path(tdir).parent}) or set "
                            "--config.distill.teacher_dir.")
  start = time.time()
  data = datasets.load(tcfg.data)
  coll = data.collection
  if coll.ids != prepared.doc_ids:
    raise ValueError(f"The collection no longer matches the prepared data in {prepared.root}: clear the cache.")
  # Every dev and test claim is banned, whatever `data.max_claims` keeps.
  banned = data.splits["dev"].texts + data.splits["test"].texts
  claims = pseudo.sample(coll, count, p.seed, banned, p.min_words, p.max_words, p.max_overlap)
  pool = len(pseudo.candidate_sentences(coll, p.min_words, p.max_words))
  if len(claims) < count:
    logging.warning("The collection yields %d pseudo-claims under these settings (asked for %d).", len(claims), count)
  texts, ids = [c.text for c in claims], [c.id for c in claims]
  rows, bm25 = candidates.BM25Index(coll).search(texts, prepared.shapes[0])
  tok = tokenize.load_wordpiece(pretrained.hf_model_dir(tcfg.data.tokenizer))
  claim_wp = tokenize.wordpiece_ids(tok, texts, tcfg.data.claim_wp_len)
  claim_words = tokenize.word_ids({w: i for i, w in enumerate(prepared.vocab)}, texts, tcfg.data.claim_word_len,
                                  prepared.oov_buckets)
  exs = examples(ids, claim_wp, claim_words, rows, bm25)

  scores = _load_progress(root, ids, rows)
  if len(scores) < len(exs):
    teacher = restored.Restored.load(tcfg, tdir, prepared)
    logging.info("Scoring pseudo-claims %d..%d with the teacher in %s", len(scores), len(exs), tdir)
    while len(scores) < len(exs):
      chunk_start = time.time()
      chunk = exs[len(scores): len(scores) + CHUNK]
      pred = teacher.predict_source(chunk)
      scores = np.concatenate([scores, pred["scores"]]) if len(scores) else pred["scores"]
      _save_progress(root, ids[: len(scores)], rows[: len(scores)], scores)
      logging.info("[pseudo] %d/%d scored (%.1f pseudo-claims/s)", len(scores), len(exs),
                   len(chunk) / (time.time() - chunk_start))
  exs = examples(ids, claim_wp, claim_words, rows, bm25, scores[: len(exs)])
  meta = {"count": len(exs), "pool": pool, "exhausted": len(exs) < count, "seed": p.seed, "min_words": p.min_words,
          "max_words": p.max_words, "max_overlap": p.max_overlap, "banned_claims": len(banned), "teacher": str(tdir),
          "seconds": round(time.time() - start, 1)}
  multihost.primary_writes(f"the pseudo-claim store {root}", lambda: _store(root, exs, prepared.shapes, meta))
  logging.info("Stored %d teacher-labelled pseudo-claims in %s", len(exs), root)
  return pipeline.Prefix(tfds_builder.open_split(root / "tfds", prepared.shapes, "train"), len(exs))


def _load_progress(root: Path, ids: list[str], rows: np.ndarray) -> np.ndarray:
  """Stored logits for the leading pseudo-claims, if they are the same claims with the same candidates."""
  path = root / "progress.npz"
  if not path.is_file():
    return np.zeros((0, rows.shape[1]), np.float32)
  stored = np.load(path)
  n = min(len(stored["claim_id"]), len(ids))
  if stored["claim_id"][:n].tolist() != ids[:n] or not np.array_equal(stored["cand_index"][:n], rows[:n]):
    logging.warning("Stored pseudo-claim scores in %s do not match this draw; rescoring.", path)
    return np.zeros((0, rows.shape[1]), np.float32)
  return stored["scores"][:n]


def _store(root: Path, exs: list[dict], shapes, meta: dict) -> None:
  """The labelled set as a TFDS folder, then meta.json, which marks it complete."""
  tmp = root / f"tfds.tmp{os.getpid()}"
  shutil.rmtree(tmp, ignore_errors=True)
  tfds_builder.write(tmp, shapes, {"train": lambda: iter(exs)}, ordered=True)
  shutil.rmtree(root / "tfds", ignore_errors=True)
  tmp.rename(root / "tfds")
  atomic.write_text(root / "meta.json", json.dumps(meta, indent=2))


def _save_progress(root: Path, ids: list[str], rows: np.ndarray, scores: np.ndarray) -> None:
  def write():
    root.mkdir(parents=True, exist_ok=True)
    with atomic.open_for_write(root / "progress.npz", "wb") as f:
      np.savez(f, claim_id=np.asarray(ids, str), cand_index=rows, scores=scores.astype(np.float32))
  multihost.primary_writes(f"pseudo-claim scoring progress in {root}", write)

"""Tokenization: MiniLM WordPiece for the teacher, a GloVe-backed word vocabulary for the students."""

from __future__ import annotations

import collections
import re
import zlib
from pathlib import Path
from typing import Iterable

import numpy as np
import tokenizers

PAD, UNK = "<pad>", "<unk>"  # student ids 0 and 1
_WORD = re.compile(r"\w+|[^\w\s]")


def load_wordpiece(model_dir: Path) -> tokenizers.Tokenizer:
  """The model folder's fast tokenizer, with the truncation/padding baked into MiniLM's file removed.

  Loaded from tokenizer.json on purpose: transformers 5's BertTokenizerFast(vocab_file=...) silently maps
  every word to [UNK].
  """
  tok = tokenizers.Tokenizer.from_file(str(Path(model_dir) / "tokenizer.json"))
  tok.no_truncation()
  tok.no_padding()
  return tok


def wordpiece_ids(tok: tokenizers.Tokenizer, texts: list[str], max_len: int) -> np.ndarray:
  """[n, max_len] int32 WordPiece ids without special tokens, truncated, 0 ([PAD]) padded."""
  out = np.zeros((len(texts), max_len), np.int32)
  for i, enc in enumerate(tok.encode_batch(texts, add_special_tokens=False)):
    ids = enc.ids[:max_len]
    out[i, : len(ids)] = ids
  return out


def pack_pairs(claims: np.ndarray, docs: np.ndarray, max_len: int, cls_id: int = 101, sep_id: int = 102):
  """`[CLS] claim [SEP] doc [SEP]` for every (claim, candidate) pair.

  claims [B, Lc] and docs [B, K, Ld] are 0-padded WordPiece ids; returns (input_ids, token_type_ids,
  attention_mask), each [B, K, max_len] int32. The document is truncated to what the claim leaves free.
  """
  b, k, _ = docs.shape
  lc = np.minimum((claims != 0).sum(-1), max_len - 3)[:, None, None]  # [B,1,1]
  ld = np.minimum((docs != 0).sum(-1)[..., None], max_len - 3 - lc)   # [B,K,1]
  p = np.arange(max_len)[None, None, :]
  claim_tok = np.take_along_axis(claims[:, None, :], np.clip(p - 1, 0, claims.shape[1] - 1), axis=-1)
  doc_tok = np.take_along_axis(docs, np.clip(p - 2 - lc, 0, docs.shape[2] - 1), axis=-1)
  in_claim = (p >= 1) & (p < 1 + lc)
  in_doc = (p >= 2 + lc) & (p < 2 + lc + ld)
  ids = np.where(in_claim, claim_tok, 0)
  ids = np.where(in_doc, doc_tok, ids)
  ids = np.where(p == 0, cls_id, ids)
  ids = np.where((p == 1 + lc) | (p == 2 + lc + ld), sep_id, ids)
  mask = p < 3 + lc + ld
  types = (p >= 2 + lc) & mask
  shape = (b, k, max_len)
  return (np.broadcast_to(ids, shape).astype(np.int32), np.broadcast_to(types, shape).astype(np.int32),
          np.broadcast_to(mask, shape).astype(np.int32))


def words(text: str) -> list[str]:
  """Lowercased words and punctuation, matching GloVe 6B's uncased tokens."""
  return _WORD.findall(text.lower())


def build_vocab(texts: Iterable[str], size: int) -> list[str]:
  """`<pad>`, `<unk>`, then the `size - 2` most frequent words (ties broken alphabetically, so reproducible)."""
  counts = collections.Counter(w for t in texts for w in words(t))
  ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
  return [PAD, UNK] + [w for w, _ in ranked[: max(size - 2, 0)]]


def oov_id(word: str, vocab_size: int, oov_buckets: int) -> int:
  """A word outside the vocabulary: id 1 (`<unk>`), or with `oov_buckets` > 0 one of that many hashed rows after
  the vocabulary. crc32, not hash(): the same word gets the same row in every process and every run."""
  if not oov_buckets:
    return 1
  return vocab_size + zlib.crc32(word.encode("utf-8")) % oov_buckets


def coverage(ids: np.ndarray, vocab_size: int) -> np.ndarray:
  """Per row of student ids [n, L], the share of its words that are vocabulary words (not `<unk>`, not a hashed
  out-of-vocabulary row): how much of the text a student can read. A row without words has 0."""
  ids = np.asarray(ids)
  words = (ids != 0).sum(1)
  known = ((ids > 1) & (ids < vocab_size)).sum(1)
  return np.where(words > 0, known / np.maximum(words, 1), 0.0)


def word_ids(vocab: dict[str, int], texts: list[str], max_len: int, oov_buckets: int = 0) -> np.ndarray:
  """[n, max_len] int32 student ids: 0 padding, 1 out-of-vocabulary (or a hashed bucket, `oov_id`)."""
  out = np.zeros((len(texts), max_len), np.int32)
  n = len(vocab)
  for i, t in enumerate(texts):
    ids = [vocab[w] if w in vocab else oov_id(w, n, oov_buckets) for w in words(t)[:max_len]]
    out[i, : len(ids)] = ids
  return out

"""Words too common in the training collection to count as lexical matches: no labels, no retraining.

The lexical channel (models/lexical.py) weighs each word from its context. Inside an abstract, "a" or "of" get small
weights; inside a three-word page title, the same student can give them large ones, and every claim holding "is a"
then matches "L.A. Reid" (the SciFact CNN's top hub on FEVER-titles, in the top 10 of 30% of claims by its lexical
part alone). A word found in more than `max_df` of the training collection's documents, or of its training claims,
says nothing about which document a claim needs, on that collection or any other, so its bucket of the claim's
lexical vector is zeroed at search time: the claim then matches no document on it, and the dense part still reads the
word. Claims count as well as documents (stage_inputs.StageInputs.word_freq) because documents can be too short to
show it: in FEVER's page titles "a", "is" and "the" are rare, and the FEVER-titles students' largest hubs at home were
titles such as "A.J. Styles" that every claim holding "a" matched (11% and 15% of test claims; 6.5% and 4.1% with the
claims' common words out, dev nDCG@10 unchanged). For SciFact students the claims add no word at 0.25.

Words share buckets by hash (4,096 buckets for ~18,000 words and hashed rare words), so a zeroed bucket also
silences the few other words hashed there: the 28 buckets of max_df 0.25 on SciFact are 0.7% of them.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from kd_jax.models import lexical


def check(max_df: float) -> float:
  max_df = float(max_df)
  if not 0.0 < max_df <= 1.0:
    raise ValueError(f"search.stop_df must lie in (0, 1] (the share of the training collection's documents or claims "
                     f"a word may appear in and still match; 1: every word matches), got {max_df}")
  return max_df


def doc_freq(docs_words: np.ndarray, vocab_size: int, chunk_rows: int = 4096) -> np.ndarray:
  """[vocab_size] float32: the share of documents (rows of word ids [N, L]) holding each word id at least once.
  Padding (0) and <unk> (1) count 0; hashed out-of-vocabulary ids (>= vocab_size) are rare by definition."""
  counts = np.zeros(vocab_size, np.int64)
  for start in range(0, len(docs_words), chunk_rows):
    rows = np.asarray(docs_words[start:start + chunk_rows])
    present = np.zeros((len(rows), vocab_size), bool)
    inside = (rows > 1) & (rows < vocab_size)
    present[np.nonzero(inside)[0], rows[inside]] = True
    counts += present.sum(0)
  return (counts / max(len(docs_words), 1)).astype(np.float32)


def stop_ids(freq: np.ndarray, max_df: float) -> np.ndarray:
  """Word ids found in more than `max_df` of the rows `freq` was counted over (none at max_df 1)."""
  return np.flatnonzero(np.asarray(freq) > check(max_df))


def claim_mask(width: int, dense_dim: int, lexical_dim: int, ids: np.ndarray, private: int = 0) -> np.ndarray:
  """[width] float32 to multiply claim vectors by: 0 at the lexical buckets of `ids`, 1 elsewhere."""
  keep = np.ones(width, np.float32)
  if lexical_dim and len(ids):
    keep[dense_dim + np.asarray(lexical.buckets(jnp.asarray(ids, jnp.int32), lexical_dim, private))] = 0.0
  return keep

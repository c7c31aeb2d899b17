"""Pseudo-claims: claim-like sentences sampled from the collection itself (GPL / TAS-B style training signal).

Each document is split into its title and body sentences; those within a word-length window are eligible.
A sentence that overlaps an evaluation claim (most of the claim's words appear in it) is never eligible, so
no dev or test claim, nor its text inside a longer sentence, can reach training. The order is a seeded
permutation of the eligible pool, walked with guarded sentences skipped, so the first N pseudo-claims of a larger
draw are exactly the draw of N: stored sets grow by appending.
"""

from __future__ import annotations

import collections
import dataclasses
import re

import numpy as np

from kd_jax.data.datasets import Collection

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\[])")
_WORD = re.compile(r"\w+")


@dataclasses.dataclass(frozen=True)
class PseudoClaim:
  id: str
  text: str
  doc_row: int  # the document it was taken from (not assumed relevant: only the teacher's scores count)


def words(text: str) -> list[str]:
  return _WORD.findall(text.lower())


def split_sentences(text: str) -> list[str]:
  return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


class ClaimGuard:
  """Flags text that reproduces an evaluation claim: >= `max_overlap` of the claim's distinct words in it."""

  def __init__(self, claims: list[str], max_overlap: float = 0.8):
    self._sets = [set(words(c)) for c in claims]
    self._postings: dict[str, list[int]] = collections.defaultdict(list)
    for i, s in enumerate(self._sets):
      for w in s:
        self._postings[w].append(i)
    self._max_overlap = max_overlap

  def overlaps(self, text: str) -> bool:
    shared = collections.Counter(i for w in set(words(text)) for i in self._postings.get(w, ()))
    return any(n >= self._max_overlap * len(self._sets[i]) for i, n in shared.items())


def candidate_sentences(collection: Collection, min_words: int, max_words: int) -> list[tuple[str, int]]:
  """(sentence, doc row) for every title and body sentence within the length window, first occurrence only."""
  seen, out = set(), []
  for row in range(len(collection)):
    for s in [collection.titles[row], *split_sentences(collection.texts[row])]:
      n, key = len(words(s)), " ".join(words(s))
      if min_words <= n <= max_words and key not in seen:
        seen.add(key)
        out.append((s, row))
  return out


def sample(collection: Collection, count: int, seed: int, eval_claims: list[str], min_words: int = 5,
           max_words: int = 40, max_overlap: float = 0.8) -> list[PseudoClaim]:
  """The first `count` pseudo-claims of the seeded order (fewer if the pool is smaller)."""
  pool = candidate_sentences(collection, min_words, max_words)
  order = np.random.default_rng(seed).permutation(len(pool))
  guard = ClaimGuard(eval_claims, max_overlap)
  out = []
  for j in order:
    if len(out) == count:
      break
    text, row = pool[j]
    if not guard.overlaps(text):
      out.append(PseudoClaim(id=f"pseudo-{seed}-{j}", text=text, doc_row=row))
  return out

"""Batches for training and evaluation: grain over the TFDS data source, plus document-token gathering.

Training batches are a pure function of (seed, step): epoch e is the source shuffled with seed
`seed + e`, so a resumed run continues from exactly the batch it stopped at. In a multi-host job process p of n
reads the p-th contiguous block of every global batch: the global array the processes assemble holds the same
rows in the same order as a single-process run's batch, so everything random per row (dropout, sampled lists)
falls on the same example however the work is split.
"""

from __future__ import annotations

from typing import Callable, Iterator

import grain
import numpy as np

from kd_jax import negatives
from kd_jax.data import tokenize
from kd_jax.data.prepare import Prepared

Batch = dict[str, np.ndarray]


def _stack(examples) -> Batch:
  return {k: np.stack([e[k] for e in examples]) for k in examples[0]}


class TrainBatches:
  """An endless, resumable stream of shuffled batches (`drop_remainder`, so shapes never change)."""

  def __init__(self, source, batch_size: int, seed: int, transform: Callable[[Batch], Batch],
               process_index: int = 0, process_count: int = 1):
    if batch_size % process_count:
      raise ValueError(f"Global batch {batch_size} is not divisible by the {process_count} processes.")
    if len(source) < batch_size:
      raise ValueError(f"The training split has {len(source)} examples, fewer than one batch of {batch_size}: "
                       "lower --config.train.batch_size.")
    self._source, self._seed, self._transform = source, seed, transform
    self._batch, self._proc, self._nproc = batch_size, process_index, process_count
    self.steps_per_epoch = len(source) // batch_size

  def _epoch(self, epoch: int) -> grain.MapDataset:
    ds = grain.MapDataset.source(self._source).shuffle(seed=self._seed + epoch)
    ds = ds[: self.steps_per_epoch * self._batch].batch(self._batch // self._nproc, batch_fn=_stack)
    # The epoch rides along so per-row draws in the transform (random negatives) change every epoch.
    return ds[self._proc :: self._nproc].map(
        lambda b: self._transform({**b, "epoch": np.full(len(b["claim_id"]), epoch, np.int32)}))

  def __getitem__(self, step: int) -> Batch:
    epoch, i = divmod(step, self.steps_per_epoch)
    return self._epoch(epoch)[i]

  def iterate(self, start_step: int = 0) -> Iterator[Batch]:
    epoch, i = divmod(start_step, self.steps_per_epoch)
    while True:
      # Threads overlap TFDS decoding and token gathering with the device step.
      yield from self._epoch(epoch)[i:].to_iter_dataset(
          grain.ReadOptions(num_threads=2, prefetch_buffer_size=4))
      epoch, i = epoch + 1, 0


class Prefix:
  """The first `n` examples of a source (a stored pseudo-claim set serves every smaller count)."""

  def __init__(self, source, n: int):
    if n > len(source):
      raise ValueError(f"Asked for {n} examples of a source holding {len(source)}.")
    self._source, self._n = source, n

  def __len__(self) -> int:
    return self._n

  def __getitem__(self, i: int):
    if not 0 <= i < self._n:
      raise IndexError(i)
    return self._source[i]


class MixedSource:
  """Real and pseudo examples in one source, `pseudo_fraction` of its slots pseudo.

  The smaller side is repeated so that one pass covers every example of the larger side once; shuffling per
  epoch (TrainBatches) then mixes them, so a batch holds `pseudo_fraction` pseudo rows in expectation.
  """

  def __init__(self, real, pseudo, pseudo_fraction: float):
    if not 0.0 < pseudo_fraction < 1.0:
      raise ValueError(f"pseudo_fraction must be in (0, 1), got {pseudo_fraction}.")
    if not len(real) or not len(pseudo):
      raise ValueError("MixedSource needs at least one real and one pseudo example.")
    total = max(len(real) / (1.0 - pseudo_fraction), len(pseudo) / pseudo_fraction)
    self._real, self._pseudo = real, pseudo
    self.num_real = max(len(real), round(total * (1.0 - pseudo_fraction)))
    self.num_pseudo = max(len(pseudo), round(total * pseudo_fraction))

  def __len__(self) -> int:
    return self.num_real + self.num_pseudo

  def __getitem__(self, i: int):
    if not 0 <= i < len(self):
      raise IndexError(i)
    if i < self.num_real:
      return self._real[i % len(self._real)]
    return self._pseudo[(i - self.num_real) % len(self._pseudo)]


def eval_batches(source, batch_size: int, transform: Callable[[Batch], Batch]) -> Iterator[Batch]:
  """Every example once, in source order; the last batch is padded and `row_mask` marks real rows."""
  n = len(source)
  for start in range(0, n, batch_size):
    rows = [source[i] for i in range(start, min(start + batch_size, n))]
    real = len(rows)
    rows += [rows[-1]] * (batch_size - real)
    batch = _stack(rows)
    batch["row_mask"] = np.arange(batch_size) < real
    yield transform(batch)


def gather_transform(prepared: Prepared, tokens: str, pair_len: int = 0,
                     teacher_scores: Callable[[np.ndarray], np.ndarray] | None = None,
                     random_negatives: int = 0, seed: int = 0) -> Callable[[Batch], Batch]:
  """Adds the candidates' document tokens to a batch.

  tokens="words": `doc_words` [B, K, Ld] for the students. tokens="pairs": `pair_ids`, `pair_types`,
  `pair_mask` [B, K, pair_len] (`[CLS] claim [SEP] doc [SEP]`) for the teacher. tokens="both": both (online
  distillation, where the teacher runs inside the student's step). `teacher_scores`, when
  given, maps claim ids to stored teacher logits [B, K] (the distillation stage's soft labels) for the real
  rows; pseudo-claim rows already carry theirs. `random_negatives` > 0 adds `neg_index` [B, R] and `neg_words`
  [B, R, Ld]: R collection documents per row, drawn per (seed, claim, epoch) (negatives.py; training only).
  """
  if tokens not in ("words", "pairs", "both"):
    raise ValueError(f"tokens must be 'words', 'pairs' or 'both', got {tokens!r}")

  def transform(batch: Batch) -> Batch:
    batch = dict(batch)
    batch.setdefault("row_mask", np.ones(len(batch["cand_index"]), bool))
    if tokens in ("words", "both"):
      batch["doc_words"] = prepared.docs_words[batch["cand_index"]]
    if random_negatives:
      batch["neg_index"] = negatives.random_rows(seed, batch["claim_id"], batch["epoch"], random_negatives,
                                                 len(prepared.docs_words))
      batch["neg_words"] = prepared.docs_words[batch["neg_index"]]
    if tokens in ("pairs", "both"):
      batch["pair_ids"], batch["pair_types"], batch["pair_mask"] = tokenize.pack_pairs(
          batch["claim_wp"], prepared.docs_wp[batch["cand_index"]], pair_len)
    if teacher_scores is not None:
      real = ~batch["is_pseudo"]
      batch["teacher_scores"] = batch["teacher_scores"].copy()
      if real.any():
        batch["teacher_scores"][real] = teacher_scores(batch["claim_id"][real])
    return batch

  return transform

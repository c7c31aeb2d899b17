"""Batches for training and evaluation: grain over the TFDS data source, plus document-token gathering.

Training batches are a pure function of (seed, step): epoch e is the source shuffled with seed
`seed + e`, so a resumed run continues from exactly the batch it stopped at. In a multi-host job each
process reads its own strided share of every global batch.
"""

from __future__ import annotations

from typing import Callable, Iterator

import grain
import numpy as np

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
    ds = ds[: self.steps_per_epoch * self._batch][self._proc :: self._nproc]
    return ds.batch(self._batch // self._nproc, batch_fn=_stack).map(self._transform)

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
                     teacher_scores: Callable[[np.ndarray], np.ndarray] | None = None) -> Callable[[Batch], Batch]:
  """Adds the candidates' document tokens to a batch.

  tokens="words": `doc_words` [B, K, Ld] for the students. tokens="pairs": `pair_ids`, `pair_types`,
  `pair_mask` [B, K, pair_len] (`[CLS] claim [SEP] doc [SEP]`) for the teacher. tokens="both": both (online
  distillation, where the teacher runs inside the student's step). `teacher_scores`, when
  given, maps claim ids to stored teacher logits [B, K] (the distillation stage's soft labels).
  """
  if tokens not in ("words", "pairs", "both"):
    raise ValueError(f"tokens must be 'words', 'pairs' or 'both', got {tokens!r}")

  def transform(batch: Batch) -> Batch:
    batch = dict(batch)
    batch.setdefault("row_mask", np.ones(len(batch["cand_index"]), bool))
    if tokens in ("words", "both"):
      batch["doc_words"] = prepared.docs_words[batch["cand_index"]]
    if tokens in ("pairs", "both"):
      batch["pair_ids"], batch["pair_types"], batch["pair_mask"] = tokenize.pack_pairs(
          batch["claim_wp"], prepared.docs_wp[batch["cand_index"]], pair_len)
    if teacher_scores is not None:
      batch["teacher_scores"] = teacher_scores(batch["claim_id"])
    return batch

  return transform

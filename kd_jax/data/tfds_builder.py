"""Claims + candidate lists as a TFDS dataset in array_record format (random access, no TensorFlow).

One example per claim. Documents are stored once beside the dataset (see `prepare.py`) and referenced by
row, because every document appears in many candidate lists.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import tensorflow_datasets as tfds

tfds.disable_progress_bar()


def features(num_candidates: int, claim_wp_len: int, claim_word_len: int) -> tfds.features.FeaturesDict:
  k = num_candidates
  return tfds.features.FeaturesDict({
      "claim_id": tfds.features.Text(),
      "claim_wp": tfds.features.Tensor(shape=(claim_wp_len,), dtype=np.int32),
      "claim_words": tfds.features.Tensor(shape=(claim_word_len,), dtype=np.int32),
      "cand_index": tfds.features.Tensor(shape=(k,), dtype=np.int32),
      "cand_labels": tfds.features.Tensor(shape=(k,), dtype=np.int32),
      "cand_mask": tfds.features.Tensor(shape=(k,), dtype=np.bool_),
      "bm25_scores": tfds.features.Tensor(shape=(k,), dtype=np.float32),
      # Slot for the teacher's soft labels; `score_candidates` writes them into a companion dataset.
      "teacher_scores": tfds.features.Tensor(shape=(k,), dtype=np.float32),
      "num_relevant": tfds.features.Scalar(dtype=np.int32),
      "is_pseudo": tfds.features.Scalar(dtype=np.bool_),
  })


class RetrievalExamples(tfds.core.GeneratorBasedBuilder):
  """Built from in-memory example generators; later opened with only `data_dir` to read back."""

  VERSION = tfds.core.Version("1.0.0")

  def __init__(self, *, shapes: tuple[int, int, int], generators: dict[str, Callable[[], Iterator]] | None = None,
               ordered: bool = False, **kwargs):
    self._shapes = shapes
    self._generators = generators or {}
    self._ordered = ordered
    super().__init__(file_format="array_record", **kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    # Built by hand: `dataset_info_from_configs` fails for builders defined outside the TFDS package.
    return tfds.core.DatasetInfo(builder=self, features=features(*self._shapes), disable_shuffling=self._ordered,
                                 description="kd_jax claims with BM25 candidate lists")

  def _split_generators(self, dl_manager):
    del dl_manager
    return {split: self._generate_examples(gen) for split, gen in self._generators.items()}

  def _generate_examples(self, gen):
    for example in gen():
      yield example["claim_id"], example


def write(data_dir: Path, shapes: tuple[int, int, int], generators: dict[str, Callable[[], Iterator]],
          ordered: bool = False) -> None:
  """`ordered`: keep the generators' order on disk (TFDS otherwise shuffles examples by key hash)."""
  builder = RetrievalExamples(shapes=shapes, generators=generators, ordered=ordered, data_dir=str(data_dir))
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(data_dir)))


def open_split(data_dir: Path, shapes: tuple[int, int, int], split: str):
  """A random-access data source (`len`, `[i]` -> dict of NumPy arrays) over one split."""
  return RetrievalExamples(shapes=shapes, data_dir=str(data_dir)).as_data_source(split)

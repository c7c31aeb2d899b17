"""Document vectors stored compactly: bfloat16 (half the bytes of float32) or int8 with one float32 scale per row
(a quarter, plus 4 bytes a document). Pure NumPy, so the index writer, the reader and the benchmarks share one
definition; `benchmarks/wikipedia_scale.py` measures what each costs in recall.
"""

from __future__ import annotations

import numpy as np

DTYPES = ("float32", "bfloat16", "int8")
STORED = {"float32": np.float32, "bfloat16": np.uint16, "int8": np.int8}  # what the .npy file holds


def check(dtype: str) -> str:
  if dtype not in DTYPES:
    raise ValueError(f"index.dtype={dtype!r} is not one of {', '.join(DTYPES)}.")
  return dtype


def to_bf16(x: np.ndarray) -> np.ndarray:
  """float32 -> bfloat16 bits as uint16, rounded to nearest even (NaN-free inputs)."""
  bits = np.ascontiguousarray(x, np.float32).view(np.uint32)
  return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)


def from_bf16(bits: np.ndarray) -> np.ndarray:
  return (np.asarray(bits).astype(np.uint32) << 16).view(np.float32)


def to_int8(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Symmetric per-row int8: x ~= q * scale[:, None] with scale = max|x| / 127 (all-zero rows: scale 1e-12 / 127)."""
  x = np.asarray(x, np.float32)
  scale = (np.maximum(np.abs(x).max(1), 1e-12) / 127.0).astype(np.float32)
  return np.clip(np.rint(x / scale[:, None]), -127, 127).astype(np.int8), scale


def from_int8(q: np.ndarray, scale: np.ndarray) -> np.ndarray:
  return np.asarray(q).astype(np.float32) * np.asarray(scale, np.float32)[..., None]


def encode(x: np.ndarray, dtype: str) -> tuple[np.ndarray, np.ndarray | None]:
  """(stored rows, per-row scales or None) for float32 rows `x`."""
  if check(dtype) == "float32":
    return np.asarray(x, np.float32), None
  if dtype == "bfloat16":
    return to_bf16(x), None
  return to_int8(x)


def decode(stored: np.ndarray, scales: np.ndarray | None, dtype: str) -> np.ndarray:
  if check(dtype) == "float32":
    return np.asarray(stored, np.float32)
  if dtype == "bfloat16":
    return from_bf16(stored)
  return from_int8(stored, scales)


class Table:
  """A stored index read as float32 rows on demand: `table[a:b]` or `table[rows]` decodes only those rows, so a
  memory-mapped bfloat16 or int8 index is searched chunk by chunk without ever being decoded whole (a 5.4M-document
  int8 index is 1.3 GB on disk and would be 5.5 GB as float32)."""

  def __init__(self, stored: np.ndarray, scales: np.ndarray | None, dtype: str):
    self.stored, self.scales, self.dtype = stored, scales, check(dtype)
    self.shape = stored.shape

  def __len__(self) -> int:
    return self.shape[0]

  def __getitem__(self, rows) -> np.ndarray:
    return decode(self.stored[rows], None if self.scales is None else self.scales[rows], self.dtype)

  def __array__(self, dtype=None, copy=None) -> np.ndarray:
    out = self[:]
    return out if dtype is None else out.astype(dtype)

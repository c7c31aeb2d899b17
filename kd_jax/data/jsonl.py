"""Streaming JSONL reading whose errors name the file and line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator


class DataFormatError(ValueError):
  """Input data is malformed; the message names file and line."""


def require_file(path: Path, what: str, hint: str = "") -> Path:
  path = Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"{what} not found: {path}." + (f" {hint}" if hint else ""))
  return path


def read_jsonl(path: Path, required: tuple[str, ...] = ()) -> Iterator[tuple[int, dict[str, Any]]]:
  """Yields (line_number, object) for each non-blank line; raises DataFormatError naming file:line."""
  with open(path, encoding="utf-8") as f:
    for lineno, line in enumerate(f, start=1):
      if not line.strip():
        continue
      try:
        obj = json.loads(line)
      except json.JSONDecodeError as e:
        raise DataFormatError(f"{path}:{lineno}: malformed JSON ({e.msg} at column {e.colno})") from None
      if not isinstance(obj, dict):
        raise DataFormatError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
      missing = [k for k in required if k not in obj]
      if missing:
        raise DataFormatError(f"{path}:{lineno}: missing field(s) {', '.join(missing)}")
      yield lineno, obj

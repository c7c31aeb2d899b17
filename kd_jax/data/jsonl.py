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


def read_lines(path: Path) -> Iterator[tuple[int, str]]:
  """Yields (line_number, text) decoded as UTF-8 one line at a time.

  Text-mode reading decodes in blocks, so a bad byte would surface as a bare UnicodeDecodeError with no
  line number; decoding each line ourselves lets the error say where the byte is.
  """
  with open(path, "rb") as f:
    for lineno, raw in enumerate(f, start=1):
      try:
        # utf-8-sig on the first line: a byte-order mark some editors write would otherwise start the first field.
        yield lineno, raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
      except UnicodeDecodeError as e:
        raise DataFormatError(f"{path}:{lineno}: byte 0x{raw[e.start]:02x} at column {e.start + 1} is not UTF-8: "
                              "re-save the file as UTF-8") from None


def read_jsonl(path: Path, required: tuple[str, ...] = (), unique: str | None = None
               ) -> Iterator[tuple[int, dict[str, Any]]]:
  """Yields (line_number, object) for each non-blank line; raises DataFormatError naming file:line.

  `unique` names a field of `required` (e.g. `_id`) that must not repeat: a repeated id would otherwise silently replace
  the earlier record (or index the same id twice) and skew every metric that looks it up.
  """
  seen: dict[str, int] = {}
  for lineno, line in read_lines(path):
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
    if unique is not None:
      key = str(obj[unique])
      if key in seen:
        raise DataFormatError(f"{path}:{lineno}: duplicate {unique} {key!r} (first on line {seen[key]}): "
                              "ids must be unique")
      seen[key] = lineno
    yield lineno, obj

"""The BEIR layout: `corpus.jsonl`, `queries.jsonl`, `qrels/<split>.tsv` (SciFact, FEVER, Climate-FEVER...)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from kd_jax.data.jsonl import DataFormatError, read_jsonl, read_lines, require_file

_HINT = "Point data.dir (scifact) or data.beir_dir (beir) at a BEIR dataset folder."


def read_corpus(root: Path) -> Iterator[tuple[str, str, str]]:
  """Streams (doc_id, title, text)."""
  path = require_file(Path(root) / "corpus.jsonl", "BEIR corpus", _HINT)
  for _, obj in read_jsonl(path, required=("_id",), unique="_id"):
    yield str(obj["_id"]), obj.get("title") or "", obj.get("text") or ""


def read_queries(root: Path) -> dict[str, str]:
  path = require_file(Path(root) / "queries.jsonl", "BEIR queries", _HINT)
  out = {}
  for lineno, obj in read_jsonl(path, required=("_id", "text"), unique="_id"):
    if not isinstance(obj["text"], str):
      raise DataFormatError(f"{path}:{lineno}: query text is {type(obj['text']).__name__}, not a string")
    out[str(obj["_id"])] = obj["text"]
  return out


def read_qrels(root: Path, split: str) -> dict[str, dict[str, int]]:
  """{query_id: {doc_id: relevance}} from `qrels/<split>.tsv` (header `query-id corpus-id score`)."""
  path = require_file(Path(root) / "qrels" / f"{split}.tsv", f"BEIR qrels for split '{split}'")
  qrels: dict[str, dict[str, int]] = {}
  for lineno, line in read_lines(path):
    fields = line.rstrip("\r\n").split("\t")
    if lineno == 1 and fields[0] == "query-id":
      continue
    if not line.strip():
      continue
    if len(fields) != 3:
      raise DataFormatError(f"{path}:{lineno}: expected 3 tab-separated fields, got {len(fields)}")
    try:
      score = int(fields[2])
    except ValueError:
      raise DataFormatError(f"{path}:{lineno}: relevance {fields[2]!r} is not an integer") from None
    qrels.setdefault(fields[0], {})[fields[1]] = score
  return qrels

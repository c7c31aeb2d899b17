"""FEVER in its own layout: claim files and (when the user has it) the Wikipedia dump `wiki-pages/`."""

from __future__ import annotations

import dataclasses
import unicodedata
from pathlib import Path
from typing import Iterator

from kd_jax.data.jsonl import DataFormatError, read_jsonl, require_file

NOT_ENOUGH_INFO = "NOT ENOUGH INFO"
LABELS = ("SUPPORTS", "REFUTES", NOT_ENOUGH_INFO)
# FEVER stores page ids with PTB-style bracket escapes and underscores for spaces.
_ESCAPES = {"-LRB-": "(", "-RRB-": ")", "-LSB-": "[", "-RSB-": "]", "-LCB-": "{", "-RCB-": "}",
            "-COLON-": ":"}


@dataclasses.dataclass(frozen=True)
class FeverClaim:
  id: str
  claim: str
  label: str
  gold_pages: tuple[str, ...]  # distinct page ids in first-seen order; empty for NOT ENOUGH INFO

  @property
  def verifiable(self) -> bool:
    return self.label != NOT_ENOUGH_INFO


def readable_title(page_id: str) -> str:
  """`Soul_Food_-LRB-film-RRB-` -> `Soul Food (film)`, NFC-normalised."""
  text = page_id
  for escape, char in _ESCAPES.items():
    text = text.replace(escape, char)
  return unicodedata.normalize("NFC", text.replace("_", " ")).strip()


def read_claims(path: Path) -> Iterator[FeverClaim]:
  """Streams claims from a FEVER claim file (train.jsonl, paper_dev.jsonl, shared_task_dev.jsonl, ...).

  A claim without a label (the unlabelled test files) counts as NOT ENOUGH INFO; any other label is an error,
  since a misspelt one would silently turn a verifiable claim into an unranked one, or the reverse.
  """
  path = require_file(path, "FEVER claim file", "Set data.dir (or KD_JAX_DATA_DIR) to the folder holding fever/.")
  for lineno, obj in read_jsonl(path, required=("id", "claim")):
    label = obj.get("label", NOT_ENOUGH_INFO)
    if label not in LABELS:
      raise DataFormatError(f"{path}:{lineno}: claim {obj['id']} has label {label!r}; expected one of "
                            f"{', '.join(LABELS)}")
    pages: dict[str, None] = {}
    evidence = obj.get("evidence") or []
    if not isinstance(evidence, list):
      raise DataFormatError(f"{path}:{lineno}: 'evidence' must be a list of evidence sets")
    for evidence_set in evidence:
      for item in evidence_set:
        if not isinstance(item, (list, tuple)) or len(item) != 4:
          raise DataFormatError(
              f"{path}:{lineno}: evidence item {item!r} is not [annotation_id, evidence_id, wiki_page, sentence_id]")
        if item[2] is not None:
          pages[unicodedata.normalize("NFC", str(item[2]))] = None
    if label != NOT_ENOUGH_INFO and not pages:
      raise DataFormatError(f"{path}:{lineno}: claim {obj['id']} is {label} but names no evidence page")
    yield FeverClaim(id=str(obj["id"]), claim=str(obj["claim"]), label=label,
                     gold_pages=tuple(pages) if label != NOT_ENOUGH_INFO else ())


def read_wiki_pages(wiki_dir: Path) -> Iterator[tuple[str, str]]:
  """Streams (page_id, text) from FEVER's `wiki-pages/wiki-*.jsonl` dump, skipping the empty page."""
  wiki_dir = Path(wiki_dir)
  files = sorted(wiki_dir.glob("wiki-*.jsonl"))
  if not files:
    raise FileNotFoundError(f"No wiki-*.jsonl files in {wiki_dir}; point --config.data.fever_wiki_dir at FEVER's wiki-pages/.")
  for path in files:
    for _, obj in read_jsonl(path, required=("id", "text")):
      if obj["id"]:
        yield unicodedata.normalize("NFC", obj["id"]), obj["text"]

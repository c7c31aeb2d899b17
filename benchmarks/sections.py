"""Sections of results/BENCHMARKS.md written by other benchmarks than speed.py, each between two markers, so every
command rewrites only its own part: `splice` puts (or replaces) a section, `kept` returns the marked sections of a
file for speed.py to carry over when it writes the rest."""

from __future__ import annotations

import re
from pathlib import Path

from kd_jax import atomic


def _markers(name: str) -> tuple[str, str]:
  return f"<!-- section: {name} -->", f"<!-- /section: {name} -->"


def splice(path: Path, name: str, text: str) -> None:
  """`path` with section `name` set to `text` (replaced where it is, else appended)."""
  begin, end = _markers(name)
  block = f"{begin}\n{text.rstrip()}\n{end}\n"
  old = path.read_text() if path.is_file() else ""
  pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end) + r"\n?", re.S)
  new = pattern.sub(lambda _: block, old) if pattern.search(old) else old.rstrip("\n") + ("\n\n" if old else "") + block
  atomic.write_text(path, new)


def kept(path: Path) -> str:
  """Every marked section of `path`, in order ('' if none or no file)."""
  if not path.is_file():
    return ""
  pattern = re.compile(r"<!-- section: (\S+) -->.*?<!-- /section: \1 -->\n?", re.S)
  return "".join(m.group(0) for m in pattern.finditer(path.read_text()))

"""Output files that are either absent or complete, and output folders checked before the work that fills them.

Every result file (eval_<split>.json, complete.json, config.json, teacher scores, the search index) is written
under a temporary name in its own folder and renamed over the final name: a run killed mid-write (or a full disk)
leaves the old file or none, never a truncated one that a later stage would read as finished.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from pathlib import Path
from typing import IO, Iterator


@contextlib.contextmanager
def open_for_write(path: str | Path, mode: str = "w", **kwargs) -> Iterator[IO]:
  """A file to write `path` through; it replaces `path` only when the block ends without an exception."""
  path = Path(path)
  # Same folder as `path`: os.replace is only atomic within one file system. The dot keeps it out of globs.
  # Not tempfile.mkstemp: its 0600 mode would make results unreadable to the group, where open() honours the umask.
  tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
  try:
    with open(tmp, mode.replace("w", "x"), **kwargs) as f:
      yield f
      f.flush()
      os.fsync(f.fileno())  # the bytes are on disk before the name says the file is complete
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(OSError):
      os.unlink(tmp)
    raise


def write_text(path: str | Path, text: str) -> None:
  with open_for_write(path, "w", encoding="utf-8") as f:
    f.write(text)


def ensure_writable(folder: str | Path, what: str, fix: str = "pass another --workdir") -> None:
  """Raises a one-line ValueError unless files can be created in `folder` (or, if it does not exist yet, in the
  nearest existing folder above it, where it would be created): checked before hours of work, not after.

  Nothing is created: a mistyped path leaves no empty folders behind. A real temporary file is tried rather than
  os.access, which says yes to root on read-only mounts and no to ACL-granted users.
  """
  folder = Path(folder).expanduser()
  existing = folder.absolute()
  while not existing.exists():
    existing = existing.parent
  if not existing.is_dir():
    raise ValueError(f"{what} {folder} cannot be created: {existing} is a file, not a folder: {fix}.")
  try:
    with tempfile.TemporaryFile(dir=existing, prefix=".kd_jax_write_check."):
      pass
  except OSError as e:
    raise ValueError(f"{what} {folder} is not writable ({e.strerror} in {existing}): {fix}, or make it "
                     "writable.") from e

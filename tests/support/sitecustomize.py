"""Records which files a process creates, changes or deletes (tests/test_multihost.py: only process 0 may write
the files that processes share). Python imports this module at start-up when its folder is on PYTHONPATH; it does
nothing unless KD_JAX_AUDIT_WRITES names a folder for its report.

Python's audit hooks see every open() for writing, rename, replace, remove, mkdir and rmtree made from Python; the
report (`<pid>.json`: the command line and each such event under KD_JAX_AUDIT_ROOTS) is written at exit.
"""

import atexit
import json
import os
import sys

_OUT = os.environ.get("KD_JAX_AUDIT_WRITES")
_ROOTS = [r for r in os.environ.get("KD_JAX_AUDIT_ROOTS", "").split(os.pathsep) if r]
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_TMPFILE = getattr(os, "O_TMPFILE", 0)
_EVENTS = {"os.rename", "os.replace", "os.remove", "os.rmdir", "os.mkdir", "shutil.rmtree", "os.truncate"}


def _under_roots(path) -> str | None:
  if isinstance(path, bytes):
    path = os.fsdecode(path)
  if not isinstance(path, (str, os.PathLike)):
    return None  # a file descriptor
  path = os.path.abspath(os.fspath(path))
  return path if any(path.startswith(root) for root in _ROOTS) else None


if _OUT:
  _seen: list[list[str]] = []

  def _hook(event, args):
    if event == "open":
      path, mode, flags = args
      if isinstance(mode, str):
        writes = any(c in mode for c in "wax+")
      else:
        # A file with no name (O_TMPFILE, e.g. tempfile.TemporaryFile's write check) is not a shared file.
        writes = bool(flags & _WRITE_FLAGS) and not (_TMPFILE and (flags & _TMPFILE) == _TMPFILE)
      # A folder "opened for writing" is an unnamed temporary file in it (O_TMPFILE, e.g. the write check of
      # kd_jax/atomic.py), not a shared file.
      paths = [path] if writes and not (isinstance(path, (str, bytes, os.PathLike)) and os.path.isdir(path)) else []
    elif event in _EVENTS:
      paths = [a for a in args[:2] if isinstance(a, (str, bytes, os.PathLike))]
    else:
      return
    for p in paths:
      hit = _under_roots(p)
      if hit:
        _seen.append([event, hit])

  def _report():
    with open(os.path.join(_OUT, f"{os.getpid()}.json"), "w", encoding="utf-8") as f:
      json.dump({"argv": sys.argv, "writes": _seen}, f)

  atexit.register(_report)
  sys.addaudithook(_hook)

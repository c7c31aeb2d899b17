"""Student kinds by name: `model.kind` -> its config dataclass, its Linen model and its display name.

A student module registers itself when imported (`register_student` at its bottom); this module imports none of
them, so it sits below every student. The built-in kinds register when the model builder (models/build.py) is
imported; another kind is a module of its own, named by `model.module` in its config, so adding a student touches
that module and that config and nothing else (tests/support/tiny_student.py is one).
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

_STUDENTS: dict[str, "StudentKind"] = {}


@dataclasses.dataclass(frozen=True)
class StudentKind:
  kind: str  # model.kind
  display: str  # in tables, e.g. "BiLSTM"
  config_cls: type  # a frozen dataclass: its fields are the model config fields the kind reads
  model_cls: type  # the Linen dual encoder built from that config

  @property
  def fields(self) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(self.config_cls) if f.name != "vocab_size")

  def make_config(self, mcfg, vocab_size: int):
    """The dataclass from `mcfg` (a model ConfigDict): its own fields where given, its defaults elsewhere."""
    values = {}
    for name in self.fields:
      if name in mcfg:
        value = mcfg[name]
        values[name] = tuple(value) if isinstance(value, list) else value
    return self.config_cls(vocab_size=vocab_size, **values)


def register_student(kind: str, display: str, config_cls: type, model_cls: type) -> StudentKind:
  if kind in _STUDENTS and _STUDENTS[kind].model_cls is not model_cls:
    raise ValueError(f"Student kind {kind!r} is registered twice ({_STUDENTS[kind].model_cls.__module__} and "
                     f"{model_cls.__module__}).")
  _STUDENTS[kind] = StudentKind(kind, display, config_cls, model_cls)
  return _STUDENTS[kind]


def student(kind: str, module: str = "") -> StudentKind:
  """The registered kind, importing `module` first (a student defined outside kd_jax registers on import)."""
  if module:
    try:
      importlib.import_module(module)
    except ModuleNotFoundError as e:
      raise ValueError(f"model.module={module!r} cannot be imported ({e}): give the module path of the student "
                       "(e.g. my_project.my_student), importable from the working directory.") from e
  if kind not in _STUDENTS:
    raise ValueError(f"Unknown student kind model.kind={kind!r}: known kinds are {', '.join(known())}"
                     + ("" if module else "; a student defined elsewhere also needs --config.model.module") + ".")
  return _STUDENTS[kind]


def known() -> list[str]:
  return sorted(_STUDENTS)


def display_name(kind: str, module: str = "") -> str:
  """"CNN", "BiLSTM", ... for a student kind; the kind itself if it is not registered (e.g. an old table's)."""
  try:
    return student(kind, module).display
  except ValueError:
    return kind


def model_fields(mcfg: dict[str, Any]) -> dict[str, Any]:
  """The fields of a saved model config that its kind reads (plus kind, glove and module): what makes two student
  models the same, whatever else older configs carried (e.g. CNN fields saved on a BiLSTM's config)."""
  kind = mcfg.get("kind")
  try:
    spec = student(kind, mcfg.get("module", ""))
  except ValueError:
    return dict(mcfg)  # the teacher, or an unknown kind: every field counts
  keep = set(spec.fields) | {"kind", "glove", "module"}
  # A field added after the config was saved counts as its default (e.g. lexical_dim=0 on older students).
  defaults = {f.name: f.default for f in dataclasses.fields(spec.config_cls)
              if f.name in keep and f.default is not dataclasses.MISSING}
  return {k: v for k, v in {**defaults, **mcfg}.items() if k in keep and not (k == "module" and not v)}

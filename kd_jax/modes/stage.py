"""What every mode shares: where a stage's folder is, failing early on unwritable folders, the teacher a student
learns from, and a finished student read from its own folder (a stage restored to score candidate lists:
kd_jax/restored.py).

Stage folders live under `--workdir`: `<workdir>/<config.name>` (e.g. `teacher`, `cnn_student`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import ml_collections

from kd_jax import atomic, collection, stage_inputs, train
from kd_jax.data import prepare
from kd_jax.models import build as build_lib


def stage_dir(config, workdir: str) -> Path:
  return Path(workdir) / config.name


def check_writable(data_cfg, *folders: Path) -> None:
  """Fails in a second rather than after hours of work: every folder the stage writes must be writable, and so
  must the prepared-data cache unless this data config's prepared data are already there (reading is enough)."""
  for folder in folders:
    atomic.ensure_writable(folder, "Output folder")
  prepared_root = prepare.cache_root(data_cfg) / f"{data_cfg.name}-{prepare.fingerprint(data_cfg)}"
  if not (prepared_root / "meta.json").is_file():
    atomic.ensure_writable(prepare.cache_root(data_cfg), "Prepared-data cache",
                           "pass --config.data.cache_dir=/a/writable/folder (or set KD_JAX_CACHE)")


def teacher_config(config, workdir: str):
  """The teacher run the student learns from: `distill.teacher_dir` if set, else `<workdir>/teacher`."""
  if config.distill.teacher_dir:
    tdir = Path(config.distill.teacher_dir).expanduser()
    if tdir.name in ("", ".."):  # e.g. '.': the folder needs a name of its own to be trained into (below)
      tdir = tdir.resolve()
  else:
    tdir = Path(workdir) / config.teacher.name
  tcfg = ml_collections.ConfigDict(config.teacher.to_dict())
  saved = tdir / "config.json"
  if saved.is_file():
    tcfg = ml_collections.ConfigDict(saved_teacher_config(saved))
  # A missing teacher is trained into `tdir` itself (train_teacher writes `<parent>/<name>`), so the next run
  # finds it there instead of training it again.
  tcfg.name = tdir.name
  # Soft labels must score the very candidate lists the student trains on.
  tcfg.data = ml_collections.ConfigDict(config.data.to_dict())
  # The chain's mesh, but the teacher's own share of a CPU split for it (a student config asks for one device of
  # it, sharding.stage_mesh).
  tcfg.mesh = ml_collections.ConfigDict({**config.mesh.to_dict(),
                                         "split_cpu_data": config.teacher.mesh.get("split_cpu_data", -1)})
  return tdir, tcfg


def saved_teacher_config(path: Path) -> dict:
  """The config a teacher run saved; a student's (a mistaken distill.teacher_dir) is refused here, not deep in
  its restore."""
  try:
    saved = json.loads(path.read_text())
  except ValueError as e:
    raise ValueError(f"{path} is not valid JSON ({e}): restore it, or point --config.distill.teacher_dir at "
                     "another teacher run.") from e
  kind = saved.get("model", {}).get("kind")
  if kind != "teacher":
    raise ValueError(f"{path.parent} holds {train.describe_model(kind)} (model.kind={kind!r} in {path}), not a "
                     "teacher: point --config.distill.teacher_dir at a teacher run (configs/teacher.py), or leave it "
                     "empty for <workdir>/teacher.")
  return saved


def no_teacher(tdir: Path) -> FileNotFoundError:
  # configs/teacher.py trains into <workdir>/teacher: another folder name must be passed along.
  name = "" if tdir.name == "teacher" else f" --config.name={tdir.name}"
  return FileNotFoundError(f"No finished teacher in {tdir}: train it (python run.py --config=configs/teacher.py "
                           f"--workdir={tdir.parent}{name}) or set --config.distill.teacher_dir.")


def stage_inputs_of(config, stage: Path) -> stage_inputs.StageInputs:
  """The vocabulary, lengths and word frequencies stored in the stage folder (from the prepared data, stored now, for
  stages trained before folders carried them)."""
  if not stage_inputs.stored(stage):
    check_writable(config.data, stage)
    stage_inputs.save(stage, prepare.prepare(config.data), config.data)
  elif config.model.kind != "teacher" and not (stage_inputs.folder(stage) / "doc_freq.npy").is_file():
    check_writable(config.data, stage)
    stage_inputs.add_word_freqs(stage, prepare.prepare(config.data))
  elif config.model.kind != "teacher" and not (stage_inputs.folder(stage) / "claim_freq.npy").is_file():
    # Saved before stop words counted the training claims too: read from the dataset, not the prepared data. A stage
    # without its data at hand, or in a folder it may not write, keeps the documents' stop words (with a warning).
    try:
      atomic.ensure_writable(stage, "Stage folder")
      stage_inputs.add_claim_freq(stage, prepare.training_claims(config.data))
    except (OSError, ValueError) as e:
      logging.warning("%s holds no training-claim frequencies and they cannot be added (%s): its stop words are "
                      "counted over the training documents alone.", stage, str(e).splitlines()[0])
  return stage_inputs.load(stage)


def student(config, stage: Path, mesh):
  """(built, best params, inputs) of a finished student stage, read from its own folder."""
  inputs = stage_inputs_of(config, stage)
  built = build_lib.build(config.model, inputs)
  if built.kind == "teacher":
    raise ValueError(f"mode={config.mode} with a collection, index and search need a claim-independent student "
                     "config (cnn_student.py, lstm_student.py).")
  params, _ = train.restore_params(stage, built, config, mesh)
  return built, params, inputs


def index_dtype(config) -> str:
  """How the index of mode=index/search/evaluate is stored (`index.dtype`; float32 for configs saved before it)."""
  return config.get("index", {}).get("dtype", "float32")


def source_of(config) -> collection.Source:
  """The collection `config.collection` names, else the stage's own training collection."""
  own = ml_collections.ConfigDict(config.data.to_dict())
  return collection.from_config(config) or collection.Source(name=config.data.name, path=None, data_cfg=own)

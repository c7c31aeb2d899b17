"""Issue 14: bad input never gives a wrong answer: each case is a one-line error naming what to fix, or a
documented tolerant behaviour, and nothing is written as if complete."""

import gc
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kd_jax import atomic, logbook, losses, modes, search, sharding, teacher_scores, train
from kd_jax.modes import distill, evaluate, index, stage, train_teacher
from kd_jax.checkpoint import CheckpointCorruptError, Checkpointer, abstract_like
from kd_jax.data import beir, candidates, datasets, fever, prepare
from kd_jax.data.jsonl import DataFormatError, read_jsonl
from kd_jax.models import build as build_lib

import configs.common as common_config
from configs import cnn_student, lstm_student, teacher as teacher_config

REPO = Path(__file__).resolve().parents[1]


def _one_line(info) -> str:
  message = str(info.value)
  assert "\n" not in message, message
  return message


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
  return path


def _beir(root: Path, docs: list[dict]) -> Path:
  _write_jsonl(root / "corpus.jsonl", docs)
  _write_jsonl(root / "queries.jsonl", [{"_id": "q1", "text": "cats purr"}])
  (root / "qrels").mkdir(parents=True, exist_ok=True)
  for split in ("train", "test"):
    (root / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
  return root


# ---------- 1. duplicated BEIR _id ----------

def test_duplicate_corpus_id_names_file_and_line(tmp_path):
  root = _beir(tmp_path / "beir", [{"_id": "d1", "text": "cats"}, {"_id": "d2", "text": "dogs"},
                                   {"_id": "d1", "text": "birds"}])
  with pytest.raises(DataFormatError) as info:
    list(beir.read_corpus(root))
  assert _one_line(info) == f"{root / 'corpus.jsonl'}:3: duplicate _id 'd1' (first on line 1): ids must be unique"


def test_duplicate_id_writes_no_prepared_data(tmp_path):
  cfg = common_config.data_config()
  cfg.name, cfg.beir_dir, cfg.cache_dir = "beir", str(_beir(tmp_path / "beir", [{"_id": 1}, {"_id": 1}])), \
      str(tmp_path / "cache")
  with pytest.raises(DataFormatError, match=r"corpus.jsonl:2: duplicate _id '1'"):
    prepare.prepare(cfg)
  assert not list((tmp_path / "cache").glob("**/meta.json"))


def test_byte_order_mark_and_non_string_query_text(tmp_path):
  """A UTF-8 byte-order mark (some editors write one) is not part of the first field; a query whose text is not a
  string is a one-line error naming file and line, not a traceback from the tokenizer."""
  root = _beir(tmp_path / "bom", [{"_id": "d1", "title": "Cats", "text": "cats purr"}])
  for name in ("corpus.jsonl", "queries.jsonl"):
    path = root / name
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
  qrels = root / "qrels" / "test.tsv"
  qrels.write_bytes(b"\xef\xbb\xbf" + qrels.read_bytes())
  assert [d[0] for d in beir.read_corpus(root)] == ["d1"]
  assert beir.read_queries(root) == {"q1": "cats purr"}
  assert beir.read_qrels(root, "test") == {"q1": {"d1": 1}}
  _write_jsonl(root / "queries.jsonl", [{"_id": "q1", "text": "cats purr"}, {"_id": "q2", "text": None}])
  with pytest.raises(DataFormatError, match=r"queries\.jsonl:2: query text is NoneType, not a string$") as e:
    beir.read_queries(root)
  _one_line(e)


def test_duplicate_query_id(tmp_path):
  root = _beir(tmp_path / "beir", [{"_id": "d1", "text": "cats"}])
  _write_jsonl(root / "queries.jsonl", [{"_id": "q1", "text": "a"}, {"_id": "q1", "text": "b"}])
  with pytest.raises(DataFormatError, match=r"queries.jsonl:2: duplicate _id 'q1' \(first on line 1\)"):
    beir.read_queries(root)


# ---------- 2. unknown FEVER label ----------

def test_unknown_fever_label(tmp_path):
  path = _write_jsonl(tmp_path / "claims.jsonl", [
      {"id": 1, "claim": "a", "label": "SUPPORTS", "evidence": [[[1, 2, "Page", 0]]]},
      {"id": 2, "claim": "b", "label": "MAYBE", "evidence": [[[1, 2, "Page", 0]]]}])
  with pytest.raises(DataFormatError) as info:
    list(fever.read_claims(path))
  assert _one_line(info) == (f"{path}:2: claim 2 has label 'MAYBE'; expected one of SUPPORTS, REFUTES, "
                             "NOT ENOUGH INFO")


# ---------- 3. non-UTF-8 bytes ----------

def test_non_utf8_byte_names_file_and_line(tmp_path):
  path = tmp_path / "corpus.jsonl"
  path.write_bytes(b'{"_id": "d1", "text": "ok"}\n{"_id": "d2", "text": "caf\xe9"}\n')
  with pytest.raises(DataFormatError) as info:
    list(read_jsonl(path))
  assert _one_line(info) == f"{path}:2: byte 0xe9 at column 27 is not UTF-8: re-save the file as UTF-8"
  qrels = tmp_path / "qrels" / "test.tsv"
  qrels.parent.mkdir()
  qrels.write_bytes(b"query-id\tcorpus-id\tscore\nq\xff1\td1\t1\n")
  with pytest.raises(DataFormatError, match=r"test.tsv:2: byte 0xff at column 2 is not UTF-8"):
    beir.read_qrels(tmp_path, "test")


# ---------- 4. empty corpus ----------

def test_empty_corpus(tmp_path):
  root = _beir(tmp_path / "beir", [])
  with pytest.raises(ValueError) as info:
    datasets.load_beir(root)
  assert _one_line(info) == (f"{root / 'corpus.jsonl'} holds no documents: point the config at a non-empty "
                             "BEIR corpus.")
  nei = _write_jsonl(tmp_path / "nei.jsonl", [{"id": 1, "claim": "a", "label": "NOT ENOUGH INFO", "evidence": []}])
  with pytest.raises(ValueError, match=r"names an evidence page, so the document collection is empty"):
    datasets.load_fever(nei, nei)
  with pytest.raises(ValueError, match=r"^BM25 has nothing to index: none of the collection's 1 documents"):
    candidates.BM25Index(datasets.Collection(ids=["d"], titles=["The"], texts=["of the and"]))


# ---------- 7. FEVER without its files ----------

def test_fever_without_files_names_the_config_field(tmp_path):
  cfg = common_config.data_config()
  cfg.name = "fever"
  with pytest.raises(FileNotFoundError) as info:
    datasets.load(cfg)
  assert _one_line(info) == ("data.name=fever needs data.fever_train_file, which is empty: pass "
                             "--config.data.fever_train_file=/path/to/fever/train.jsonl.")
  cfg.fever_train_file = str(_write_jsonl(tmp_path / "train.jsonl", []))
  with pytest.raises(FileNotFoundError, match=r"needs data.fever_test_file, which is empty"):
    datasets.load(cfg)
  cfg.fever_test_file = str(tmp_path / "missing.jsonl")
  with pytest.raises(FileNotFoundError) as info:
    datasets.load(cfg)
  assert _one_line(info) == f"FEVER claim file not found: {tmp_path / 'missing.jsonl'}. Check " \
                            "--config.data.fever_test_file."
  cfg.name = "beir"
  with pytest.raises(FileNotFoundError, match=r"needs data.beir_dir, which is empty: pass --config.data.beir_dir="):
    datasets.load(cfg)


# ---------- 8. metrics.jsonl after a resume ----------

def _rows(workdir: Path) -> list[tuple[int, str]]:
  return [(r["step"], r["split"]) for r in logbook.read(workdir)]


def test_resumed_log_has_one_row_per_step_and_split(tmp_path):
  log = logbook.Logbook(tmp_path, resume_step=0)
  log.write(0, "dev", {"ndcg@10": 0.1})
  for step in (2, 4, 6):  # killed after logging step 6, with step 4 the last checkpoint
    log.write(step, "train", {"loss": 1.0 / step})
  log.write(4, "dev", {"ndcg@10": 0.2})
  log.close()
  with open(tmp_path / "metrics.jsonl", "a", encoding="utf-8") as f:
    f.write('{"step": 6, "split": "dev", "nd')  # torn by the kill
  log = logbook.Logbook(tmp_path, resume_step=4)
  assert _rows(tmp_path) == [(0, "dev"), (2, "train"), (4, "train"), (4, "dev")]
  log.write(6, "train", {"loss": 0.5})
  log.write(6, "dev", {"ndcg@10": 0.3})
  log.close()
  assert _rows(tmp_path) == [(0, "dev"), (2, "train"), (4, "train"), (4, "dev"), (6, "train"), (6, "dev")]
  # A fresh start (no checkpoint) keeps nothing of the earlier attempt.
  logbook.Logbook(tmp_path, resume_step=0).close()
  assert _rows(tmp_path) == []


def test_log_without_resume_step_replaces_repeated_rows(tmp_path):
  rows = [{"step": s, "split": "train", "loss": float(i)} for i, s in enumerate((2, 4, 2, 4, 4))]
  _write_jsonl(tmp_path / "metrics.jsonl", rows)  # a log written before the fix
  log = logbook.Logbook(tmp_path)
  assert [(r["step"], r["loss"]) for r in logbook.read(tmp_path)] == [(2, 2.0), (4, 4.0)]
  log.write(4, "train", {"loss": 9.0})
  log.close()
  assert [(r["step"], r["loss"]) for r in logbook.read(tmp_path)] == [(2, 2.0), (4, 9.0)]


# ---------- 5. claims BM25 cannot tokenize ----------

def test_stopword_and_empty_claims_get_zero_scores():
  coll = datasets.Collection(ids=["a", "b", "c"], titles=["Cats", "Dogs", "Birds"],
                             texts=["cats purr softly", "dogs bark loudly", "birds sing"])
  index = candidates.BM25Index(coll)
  texts = ["", "the of and", "dogs", "zzzqqq"]
  rows, scores = index.search(texts, 2)
  assert rows.shape == scores.shape == (4, 2)
  assert rows[2, 0] == 1 and scores[2, 0] > 0
  np.testing.assert_array_equal(scores[[0, 1, 3]], 0.0)
  assert set(rows[0].tolist()) <= {0, 1, 2}
  given = np.array([[0, 1], [1, 2], [1, -1], [0, 2]])
  got = index.score_rows(texts, given)
  np.testing.assert_array_equal(got[[0, 1, 3]], 0.0)
  assert got[2, 0] > 0 and got[2, 1] == 0.0
  empty_rows, empty_scores = index.search([], 2)
  assert empty_rows.shape == empty_scores.shape == (0, 2)


# ---------- 9. run.py ----------

def _run(*args) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, str(REPO / "run.py"), *args], cwd=REPO, env=dict(os.environ),
                        capture_output=True, text=True, timeout=600)


def test_run_py_unknown_config_field(tmp_path):
  proc = _run("--config=configs/cnn_student.py", "--config.data.nme=x", f"--workdir={tmp_path}")
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines()[-1] == (
      "kd_jax error: unknown config field in --config.data.nme=x (did you mean 'name'?): check the override "
      "against the fields of the --config file.")


def test_run_py_verbose_shows_traceback(tmp_path):
  proc = _run("--config=configs/cnn_student.py", "--config.data.name=fever", f"--workdir={tmp_path}", "-v", "1")
  assert proc.returncode == 1
  assert "Traceback" in proc.stderr and "_configured" in proc.stderr
  # Not the last line: at -v 1 JAX logs its shutdown after it.
  assert "kd_jax error: data.name=fever needs data.fever_train_file, which is empty: pass " \
         "--config.data.fever_train_file=/path/to/fever/train.jsonl." in proc.stderr.splitlines()


# ---------- 6. search.query_file ----------

def test_blank_query_file(tmp_path):
  path = tmp_path / "claims.txt"
  path.write_text("\n  \n\n", encoding="utf-8")
  with pytest.raises(ValueError) as info:
    search.read_query_file(path)
  assert _one_line(info) == (f"search.query_file {path} holds no claims (it is empty or blank): put one claim per "
                             "line, or pass --config.search.query='...'.")
  with pytest.raises(FileNotFoundError, match=r"search.query_file .*missing.txt not found"):
    search.read_query_file(tmp_path / "missing.txt")
  path.write_text(" cats purr \n\n dogs bark\n", encoding="utf-8")
  assert search.read_query_file(path) == ["cats purr", "dogs bark"]


# ---------- 10. checkpoint integrity ----------

def _flip_array_bytes(run: Path, step: int) -> None:
  """Flips bytes in the middle of the step's largest array data file (TensorStore reads it without a check)."""
  data = max((run / "checkpoints" / str(step) / "state").glob("ocdbt.process_*/d/*"), key=lambda p: p.stat().st_size)
  raw = bytearray(data.read_bytes())
  middle = len(raw) // 2
  raw[middle:middle + 8] = bytes(b ^ 0xFF for b in raw[middle:middle + 8])
  data.write_bytes(bytes(raw))


@pytest.fixture()
def two_steps(tmp_path):
  state = {"step": jnp.asarray(1, jnp.int32), "w": jax.random.normal(jax.random.key(0), (256, 256)),
           "b": jnp.ones(8)}
  with Checkpointer(tmp_path) as ckpt:
    ckpt.save(1, state, {"step": 1})
    ckpt.save(2, jax.tree.map(lambda x: x * 2, state), {"step": 2})
  return tmp_path, state


def test_corrupt_latest_step_falls_back(two_steps, caplog):
  run, state = two_steps
  _flip_array_bytes(run, 2)
  with caplog.at_level(logging.WARNING, logger="kd_jax.checkpoint"), Checkpointer(run) as ckpt:
    restored, meta = ckpt.restore(abstract_like(state))
    part = ckpt.restore_part("w", abstract_like(state["w"]), state["b"].sharding)
    assert meta == {"step": 1}
    np.testing.assert_array_equal(np.asarray(restored["w"]), np.asarray(state["w"]))
    np.testing.assert_array_equal(np.asarray(part), np.asarray(state["w"]))
    with pytest.raises(CheckpointCorruptError, match=r"step 2: array w does not match its checksum"):
      ckpt.restore(abstract_like(state), step=2)  # an explicit step is never swapped for another
    ckpt.save(2, state, {"step": 2})  # the resumed run re-saves step 2 over the corrupt one
    ckpt.wait()
    assert ckpt.restore(abstract_like(state))[1] == {"step": 2}
  assert ("Checkpoint step 2 in " f"{run / 'checkpoints'} is corrupt (array w does not match its checksum); "
          "restoring step 1 instead") in caplog.messages


def test_no_intact_step_is_a_one_line_error(two_steps):
  run, state = two_steps
  _flip_array_bytes(run, 1)
  _flip_array_bytes(run, 2)
  with Checkpointer(run) as ckpt, pytest.raises(CheckpointCorruptError) as info:
    ckpt.restore(abstract_like(state))
  assert _one_line(info) == (
      f"No intact checkpoint in {run / 'checkpoints'} (step 2: array w does not match its checksum; step 1: array w "
      "does not match its checksum): delete the corrupt step folders and resume from an earlier save, or train "
      "again in a new --workdir.")


# ---------- 11. distill.teacher_dir without a teacher, or with a student in it ----------

def _smoke(module, data_dir, cache):
  c = module.get_config("smoke")
  c.data.dir, c.data.cache_dir = str(data_dir), str(cache)
  return c


def _files(root: Path) -> list[Path]:
  return sorted(root.rglob("*")) if root.exists() else []


class _Stop(Exception):
  """Ends a stage where a test has seen enough."""


@pytest.mark.slow  # trains, prepares real data or compiles large steps: seconds each
def test_missing_teacher_dir_is_trained_in_place(tmp_path, monkeypatch, data_dir):
  config = _smoke(cnn_student, data_dir, tmp_path / "cache")
  config.distill.teacher_dir = str(tmp_path / "my_teacher")
  trained = []

  def fake_train_teacher(tcfg, workdir):  # stands in for minutes of training: leaves a finished run
    trained.append(stage.stage_dir(tcfg, workdir))
    trained[-1].mkdir(parents=True)
    (trained[-1] / "complete.json").write_text("{}")
    raise _Stop

  monkeypatch.setattr(train_teacher, "train_teacher", fake_train_teacher)
  config.distill.train_teacher_if_missing = False
  with pytest.raises(FileNotFoundError) as info:
    distill.distill(config, str(tmp_path / "work"))
  assert _one_line(info) == (f"No finished teacher in {tmp_path / 'my_teacher'}: train it (python run.py "
                             f"--config=configs/teacher.py --workdir={tmp_path} --config.name=my_teacher) or set "
                             "--config.distill.teacher_dir.")
  config.distill.train_teacher_if_missing = True
  with pytest.raises(_Stop):
    distill.distill(config, str(tmp_path / "work"))
  assert trained == [tmp_path / "my_teacher"] and not (tmp_path / "teacher").exists()
  tdir, tcfg = stage.teacher_config(config, str(tmp_path / "work"))
  assert tdir == tmp_path / "my_teacher" and (tdir / "complete.json").is_file()  # the next run reuses it
  # '.' has no name to train into: it is resolved to the folder it means.
  (tmp_path / "here").mkdir()
  monkeypatch.chdir(tmp_path / "here")
  config.distill.teacher_dir = "."
  tdir, tcfg = stage.teacher_config(config, "work")
  assert stage.stage_dir(tcfg, str(tdir.parent)) == tmp_path / "here"


def test_student_folder_as_teacher_dir(tmp_path, data_dir):
  student = tmp_path / "cnn_student"
  student.mkdir()
  config = _smoke(cnn_student, data_dir, tmp_path / "cache")
  (student / "config.json").write_text(config.to_json_best_effort(indent=2))
  config.distill.teacher_dir = str(student)
  before = _files(tmp_path)
  with pytest.raises(ValueError) as info:
    distill.distill(config, str(tmp_path / "work"))
  assert _one_line(info) == (
      f"{student} holds a CNN student (model.kind='cnn' in {student / 'config.json'}), not a teacher: point "
      "--config.distill.teacher_dir at a teacher run (configs/teacher.py), or leave it empty for <workdir>/teacher.")
  assert _files(tmp_path) == before


# ---------- 12. checkpoints of another model ----------

@pytest.fixture(scope="module")
def cnn_run(data_dir, tmp_path_factory):
  """A CNN student run folder (an initial state saved at step 2, and its config.json) and the data cache."""
  cache, run = tmp_path_factory.mktemp("cache"), tmp_path_factory.mktemp("runs") / "cnn_student"
  config = _smoke(cnn_student, data_dir, cache)
  prepared = prepare.prepare(config.data)
  state, _ = train.init_state(build_lib.build(config.model, prepared), train.make_optimizer(config.train),
                              jax.random.key(0), sharding.make_mesh(1, 1))
  with Checkpointer(run) as ckpt:
    ckpt.save(2, state, {"step": 2, "name": config.name})
  atomic.write_text(run / "config.json", config.to_json_best_effort(indent=2))
  return run, cache, prepared


@pytest.mark.slow  # trains, prepares real data or compiles large steps: seconds each
def test_lstm_config_on_cnn_checkpoints(cnn_run, data_dir):
  run, cache, _ = cnn_run
  config = _smoke(lstm_student, data_dir, cache)
  prepared = prepare.prepare(config.data)  # the BiLSTM's own data settings
  built = build_lib.build(config.model, prepared)
  expected = (f"{run} holds checkpoints of another model (first mismatch: params/encoder/OptimizedLSTMCell_0/hf/bias "
              "is not in the save); this folder holds a CNN student, the config asks for a BiLSTM student: point "
              "--workdir/--config.name at the right run.")
  with pytest.raises(ValueError) as info:
    train.restore_params(run, built, config, sharding.make_mesh(1, 1))
  assert _one_line(info) == expected
  before = {p: p.read_bytes() for p in _files(run) if p.is_file()}
  with pytest.raises(ValueError) as info:  # resuming: the same message, and the run folder left as it was
    train.fit(config, run, prepared, built, losses.hard_loss_fn)
  assert _one_line(info) == expected
  assert {p: p.read_bytes() for p in _files(run) if p.is_file()} == before


def test_teacher_config_on_student_checkpoints(cnn_run, data_dir):
  run, cache, prepared = cnn_run
  config = _smoke(teacher_config, data_dir, cache)
  with pytest.raises(ValueError) as info:
    train.restore_params(run, build_lib.build(config.model, prepared), config, sharding.make_mesh(1, 1))
  assert re.fullmatch(rf"{re.escape(str(run))} holds checkpoints of another model \(first mismatch: params/\S+ "
                      r"(is not in the save|is saved but not expected)\); this folder holds a CNN student, the config "
                      r"asks for a teacher: point --workdir/--config.name at the right run\.", _one_line(info))


def test_other_model_without_config_json(tmp_path):
  with Checkpointer(tmp_path) as ckpt:
    ckpt.save(1, {"params": {"w": jnp.ones((2, 3))}}, {})
  with Checkpointer(tmp_path) as ckpt, pytest.raises(ValueError) as info:
    ckpt.restore(abstract_like({"params": {"w": jnp.ones((3, 3))}}))
  assert _one_line(info) == (f"{tmp_path} holds checkpoints of another model (first mismatch: params/w has shape "
                             "[2, 3] saved, [3, 3] expected): point --workdir/--config.name at the right run.")


# ---------- 13. truncated checkpoint files ----------

def _truncate(path: Path) -> None:
  path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _largest_data_file(run: Path, step: int) -> Path:
  return max((run / "checkpoints" / str(step) / "state").glob("ocdbt.process_*/d/*"), key=lambda p: p.stat().st_size)


# Orbax leaves the sibling reads of a failed restore as coroutines that complain when collected (pytest reports them).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("damaged", ["data", "_METADATA"])
def test_truncated_checkpoint_falls_back_then_fails_in_one_line(two_steps, caplog, damaged):
  run, state = two_steps
  file_of = (lambda s: _largest_data_file(run, s)) if damaged == "data" else \
      (lambda s: run / "checkpoints" / str(s) / "state" / "_METADATA")
  _truncate(file_of(2))
  with caplog.at_level(logging.WARNING, logger="kd_jax.checkpoint"), Checkpointer(run) as ckpt:
    assert ckpt.restore(abstract_like(state))[1] == {"step": 1}
    part = ckpt.restore_part("w", abstract_like(state["w"]), state["b"].sharding)
    np.testing.assert_array_equal(np.asarray(part), np.asarray(state["w"]))
  assert any(m.startswith(f"Checkpoint step 2 in {run / 'checkpoints'} is corrupt (") and
             m.endswith("restoring step 1 instead") for m in caplog.messages), caplog.messages
  _truncate(file_of(1))
  for restore in (lambda c: c.restore(abstract_like(state)),
                  lambda c: c.restore_part("w", abstract_like(state["w"]), state["b"].sharding)):
    with Checkpointer(run) as ckpt, pytest.raises(CheckpointCorruptError) as info:
      restore(ckpt)
    message = _one_line(info)
    assert message.startswith(f"No intact checkpoint in {run / 'checkpoints'} (step 2: ")
    assert message.endswith("delete the corrupt step folders and resume from an earlier save, or train again in a "
                            "new --workdir.")
    if damaged == "_METADATA":  # the JSON error itself names no file
      assert f"step 1: {run / 'checkpoints' / '1' / 'state' / '_METADATA'} is not valid JSON (" in message
    else:
      assert f"{run / 'checkpoints' / '1' / 'state'}" in message
  gc.collect()  # the abandoned reads are collected here, under this test's filter, not during a later test


# ---------- 14. read-only workdir or cache ----------

def _unwritable(tmp_path: Path) -> Path:
  """A folder no file can be created in, even by root (which chmod does not stop): /sys, where there is one."""
  if os.geteuid() != 0:
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    return folder
  if Path("/sys/kernel").is_dir():
    return Path("/sys")
  pytest.skip("no folder that root cannot write")


def _no_prepare(monkeypatch):
  def fail(cfg):
    raise AssertionError("the writability check must come before preparing the data")
  monkeypatch.setattr(prepare, "prepare", fail)


def test_read_only_workdir_fails_before_evaluating(tmp_path, monkeypatch, data_dir):
  ro = _unwritable(tmp_path)
  config = _smoke(cnn_student, data_dir, tmp_path / "cache")
  _no_prepare(monkeypatch)
  with pytest.raises(ValueError) as info:
    evaluate.evaluate_stage(config, str(ro / "work"))
  assert re.fullmatch(rf"Output folder {re.escape(str(ro / 'work' / 'cnn_student'))} is not writable \(.+ in "
                      rf"{re.escape(str(ro))}\): pass another --workdir, or make it writable\.", _one_line(info))
  for mode in (distill.distill, train_teacher.train_teacher, index.index_stage):
    with pytest.raises(ValueError, match=r"^Output folder .* is not writable"):
      mode(config, str(ro / "work"))
  config.mode = "pseudo_claims"
  with pytest.raises(ValueError, match=r"^Output folder .*pseudo is not writable"):
    modes.run(config, str(ro / "work"))
  blocked = tmp_path / "a_file"
  blocked.write_text("")
  with pytest.raises(ValueError) as info:
    evaluate.evaluate_stage(config, str(blocked / "work"))
  assert _one_line(info) == (f"Output folder {blocked / 'work' / 'cnn_student'} cannot be created: {blocked} is a "
                             "file, not a folder: pass another --workdir.")


def test_read_only_cache_fails_before_preparing(tmp_path, monkeypatch, data_dir):
  ro = _unwritable(tmp_path)
  config = _smoke(cnn_student, data_dir, ro / "cache")
  _no_prepare(monkeypatch)
  with pytest.raises(ValueError) as info:
    distill.distill(config, str(tmp_path / "work"))
  assert re.fullmatch(rf"Prepared-data cache {re.escape(str(ro / 'cache'))} is not writable \(.+\): pass "
                      r"--config.data.cache_dir=/a/writable/folder \(or set KD_JAX_CACHE\), or make it writable\.",
                      _one_line(info))
  assert not (tmp_path / "work").exists()


def test_run_py_read_only_workdir(tmp_path):
  ro = _unwritable(tmp_path)
  proc = _run("--config=configs/cnn_student.py:smoke", "--config.mode=evaluate", f"--workdir={ro / 'work'}")
  assert proc.returncode == 1
  assert re.fullmatch(r"kd_jax error: Output folder .* is not writable \(.*\): pass another --workdir, or make it "
                      r"writable\.", proc.stderr.strip().splitlines()[-1]), proc.stderr[-2000:]


# ---------- 15. outputs are complete or absent ----------

def test_interrupted_write_keeps_the_old_file(tmp_path):
  path = tmp_path / "eval_test.json"
  atomic.write_text(path, '{"ndcg@10": 0.5}')
  with pytest.raises(KeyboardInterrupt), atomic.open_for_write(path) as f:
    f.write('{"ndcg@10": 0.')
    raise KeyboardInterrupt  # killed mid-write
  assert path.read_text() == '{"ndcg@10": 0.5}' and _files(tmp_path) == [path]
  umask = os.umask(0)
  os.umask(umask)
  assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # as readable as a plain write_text would leave it


def test_interrupted_teacher_scores_leave_none(tmp_path, monkeypatch):
  path = tmp_path / "scores" / "train.npz"

  def torn_savez(f, **arrays):
    f.write(b"PK\x03\x04 half a zip")
    raise OSError("No space left on device")

  monkeypatch.setattr(np, "savez", torn_savez)
  with pytest.raises(OSError):
    teacher_scores.save(path, np.array(["1"]), np.zeros((1, 2)), np.zeros((1, 2), np.int32))
  assert _files(tmp_path) == [path.parent]


def test_interrupted_index_rebuild_is_not_complete(tmp_path, monkeypatch):
  index = search.Index(tmp_path / "index")
  index.write(np.ones((2, 3)), ["a", "b"], {"prepared": "old"})
  assert index.exists()

  def torn_save(f, array):
    raise OSError("No space left on device")

  monkeypatch.setattr(np, "save", torn_save)
  with pytest.raises(OSError):
    index.write(np.zeros((3, 3)), ["a", "b", "c"], {"prepared": "new"})
  assert not index.exists()  # the old meta.json must not vouch for a half-rebuilt index
  assert not [p for p in _files(tmp_path) if p.name.endswith(".tmp")]
  with pytest.raises(FileNotFoundError, match="build it first"):
    index.read()

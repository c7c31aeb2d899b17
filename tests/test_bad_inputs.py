"""Issue 14: bad input never gives a wrong answer: each case is a one-line error naming what to fix, or a
documented tolerant behaviour, and nothing is written as if complete."""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kd_jax import logbook, search
from kd_jax.checkpoint import CheckpointCorruptError, Checkpointer, abstract_like
from kd_jax.data import beir, candidates, datasets, fever, prepare
from kd_jax.data.jsonl import DataFormatError, read_jsonl

import configs.common as common_config

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

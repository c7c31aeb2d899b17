"""The closing table of a main-command run."""

from pathlib import Path

from kd_jax import summary


def _m(v):
  return {"ndcg@10": v}


def test_table_lists_bm25_teacher_student_and_hybrids_with_their_weights():
  student = {"model": "cnn_student", "split": "test", "rerank": _m(0.665), "bm25_rerank": _m(0.679),
             "full_collection": _m(0.407), "bm25_full_collection": _m(0.665), "hub": {"k": 10, "max_share": 0.02},
             "hybrid": {"linear": {"rerank": {"weight": 0.4, "test": _m(0.75)},
                                   "full_collection": {"weight": 0.3, "test": _m(0.754)}}}}
  text = summary.render(student, {"rerank": _m(0.752)}, Path("w/cnn_student"), Path("w/teacher"))
  lines = text.splitlines()
  assert "| BM25 | 0.679 | 0.665 |" in lines
  assert "| teacher (cross-encoder) | 0.752 | — |" in lines
  assert "| cnn_student (student alone) | 0.665 | 0.407 |" in lines
  assert "| cnn_student + BM25, linear (dev-chosen weights 0.4 / 0.3) | 0.750 | 0.754 |" in lines
  assert "2.0% of claims." in text and "w/cnn_student/eval_test.json" in text and "--config.mode=evaluate" not in text
  student["hub_norm"] = {"beta": 0.25, "full_collection": _m(0.421), "hub": {"k": 10, "max_share": 0.01}}
  text = summary.render(student, {"rerank": _m(0.752)}, Path("w/cnn_student"), Path("w/teacher"))
  assert "| cnn_student alone, hub-corrected (dev-chosen beta 0.25) | — | 0.421 |" in text.splitlines()
  assert "2.0% of claims (1.0% hub-corrected)." in text
  student["calibrated"] = {"doc_norms": 0.25, "stop_df": 0.25, "full_collection": _m(0.43),
                           "hub": {"k": 10, "max_share": 0.015}}
  text = summary.render(student, {"rerank": _m(0.752)}, Path("w/cnn_student"), Path("w/teacher"))
  assert ("| cnn_student alone, calibrated as mode=search searches (doc_norms 0.25, stop_df 0.25) | — | 0.430 |"
          in text.splitlines())
  assert "2.0% of claims (1.0% hub-corrected, 1.5% calibrated)." in text
  # With a hub correction dev chose for the calibrated search, that is what mode=search searches with.
  student["calibrated"]["hub_norm"] = {"beta": 0.25, "full_collection": _m(0.44), "hub": {"k": 10, "max_share": 0.012}}
  lines = summary.render(student, {"rerank": _m(0.752)}, Path("w/cnn_student"), Path("w/teacher")).splitlines()
  assert "| cnn_student alone, calibrated (doc_norms 0.25, stop_df 0.25) | — | 0.430 |" in lines
  assert ("| cnn_student alone, calibrated and hub-corrected (dev-chosen beta 0.25) as mode=search searches | — | "
          "0.440 |" in lines)
  assert any("(1.0% hub-corrected, 1.5% calibrated, 1.2% calibrated and hub-corrected)." in line for line in lines)
  # Dev chose the training claims as the bank: the row says so.
  student["calibrated"]["hub_norm"]["bank_from"] = "train"
  lines = summary.render(student, {"rerank": _m(0.752)}, Path("w/cnn_student"), Path("w/teacher")).splitlines()
  assert ("| cnn_student alone, calibrated and hub-corrected (dev-chosen beta 0.25, a bank of the training claims) as "
          "mode=search searches | — | 0.440 |" in lines)
  del student["calibrated"]["hub_norm"]["bank_from"]
  student["calibrated"]["hub_norm"]["beta"] = 0.0  # dev left it off: the calibrated row is what search gives
  text = summary.render(student, {"rerank": _m(0.752)}, Path("w/cnn_student"), Path("w/teacher"))
  assert "calibrated as mode=search searches (doc_norms 0.25, stop_df 0.25) | — | 0.430 |" in text
  # Without the teacher's test evaluation the table says how to get it.
  text = summary.render(student, None, Path("w/cnn_student"), Path("w/teacher"))
  assert "teacher (cross-encoder)" not in text and "--config.name=teacher --config.mode=evaluate" in text

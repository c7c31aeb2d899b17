"""Teacher-scored hard negatives: the pure table functions, and a real table built from finished stages and trained
on."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from configs import cnn_student
from kd_jax import evaluate, losses, scored_negatives, search, sharding, teacher_scores, train
from kd_jax.data import pipeline, prepare
from kd_jax.models import build as build_lib


def test_first_new_skips_golds_and_own_candidates_in_rank_order():
  ranked = np.array([[5, 3, 9, 1, 7, 2], [2, 4, 6, 8, 0, 1]])
  own = np.array([[9, 4], [4, 0]])
  out = scored_negatives.first_new(ranked, [{3}, set()], own, 3)
  np.testing.assert_array_equal(out, [[5, 1, 7], [2, 6, 8]])
  short = scored_negatives.first_new(ranked[:1], [{5, 3, 1}], own[:1], 3)
  np.testing.assert_array_equal(short, [[7, 2, -1]])  # fewer than count left: -1 pads


def test_first_new_caps_each_document_by_rank():
  ranked = np.array([[1, 2, 3, 4], [2, 1, 5, 6], [1, 7, 2, 8]])
  own = np.full((3, 1), 99)
  # Rank 0: claims 0, 1, 2 take 1, 2, 1 (1 is then full at 2); rank 1: claim 0 takes 2 (full), claim 1 skips 1 for
  # nothing at this rank, claim 2 takes 7; rank 2: claim 0 takes 3, claim 1 takes 5, claim 2 skips 2; rank 3: claim 2
  # takes 8.
  out = scored_negatives.first_new(ranked, [set(), set(), set()], own, 3, max_per_doc=2)
  np.testing.assert_array_equal(out, [[1, 2, 3], [2, 5, 6], [1, 7, 8]])
  uncapped = scored_negatives.first_new(ranked, [set(), set(), set()], own, 3)
  np.testing.assert_array_equal(uncapped, [[1, 2, 3], [2, 1, 5], [1, 7, 2]])
  # Against a plain reference: every document at most twice, and each claim's rows in its own rank order.
  rng = np.random.default_rng(0)
  ranked = np.stack([rng.permutation(30)[:20] for _ in range(12)])
  out = scored_negatives.first_new(ranked, [set()] * 12, np.full((12, 1), 99), 5, max_per_doc=2)
  values, counts = np.unique(out[out >= 0], return_counts=True)
  assert counts.max() <= 2 and (out >= 0).sum() > 40
  for row, rows in zip(out, ranked):
    kept = row[row >= 0]
    assert (row[len(kept):] == -1).all()  # padding only after the documents found
    positions = [list(rows).index(d) for d in kept]
    assert positions == sorted(positions)


def test_extend_example_appends_masked_non_gold_columns():
  ex = {"claim_id": b"c", "cand_index": np.array([4, 5], np.int32), "cand_labels": np.array([1, 0], np.int32),
        "cand_mask": np.array([True, True]), "bm25_scores": np.array([2.0, 1.0], np.float32),
        "teacher_scores": np.array([0.5, -0.5], np.float32)}
  out = scored_negatives.extend_example(ex, np.array([7, -1], np.int32), 2)
  np.testing.assert_array_equal(out["cand_index"], [4, 5, 7, 0])  # padding points at a real row, masked out
  np.testing.assert_array_equal(out["cand_labels"], [1, 0, 0, 0])
  np.testing.assert_array_equal(out["cand_mask"], [True, True, True, False])
  assert out["teacher_scores"].shape == (4,) and out["bm25_scores"].shape == (4,)
  pseudo = scored_negatives.extend_example(ex, None, 2)  # no table row (a pseudo-claim): both columns padding
  np.testing.assert_array_equal(pseudo["cand_mask"], [True, True, False, False])


def test_lookup_puts_the_tables_scores_after_the_stored_ones():
  table = scored_negatives.Table(["a", "b"], np.array([[1, 2], [3, -1]], np.int32),
                                 np.array([[0.1, 0.2], [0.3, 0.0]], np.float32), {})
  stored = lambda ids: np.array([[10.0] if c in (b"a", "a") else [20.0] for c in ids])
  np.testing.assert_allclose(table.lookup(stored)(np.array([b"b", b"a"])), [[20, 0.3, 0], [10, 0.1, 0.2]])


@pytest.mark.slow  # trains, prepares real data or compiles large steps: seconds each
def test_table_from_finished_stages_is_the_students_top_scored_by_the_teacher(data_dir, smoke_chain, tmp_path):
  # The finished stages: the session's smoke chain (read only), its teacher and its CNN student as the first round.
  work, cache = smoke_chain
  tdir, round1 = work / "teacher", work / "cnn_student"
  config = cnn_student.get_config("smoke")
  config.data.dir, config.data.cache_dir = str(data_dir), str(cache)
  config.train.update(steps=2, checkpoint_every=2, eval_every=2, eval_full_collection=False, best_metric="ndcg@10")
  config.distill.negatives.mined.count = 0
  tcfg = config.teacher
  tcfg.data = config.data
  prepared = prepare.prepare(config.data)
  teacher = build_lib.build(tcfg.model, prepared)
  student = build_lib.build(config.model, prepared)
  loss = losses.distill_loss_fn(2.0, 0.5, "listwise")
  config.distill.scored.update(stage=str(round1), count=3)
  table = scored_negatives.ensure(config, tmp_path / "round2", prepared, tcfg, tdir)

  # The rows: the first-round student's best documents that are neither golds nor the claim's candidates.
  mesh = sharding.stage_mesh(config.mesh)
  params1, _ = train.restore_params(round1, student, config, mesh)
  _, ranked, ids = search.search_split(student, params1, prepared, "train", mesh, k=40)
  assert ids == table.claim_ids
  src = prepared.source("train")
  row_of = {d: i for i, d in enumerate(prepared.doc_ids)}
  for i in range(0, len(src), 7):
    golds = {row_of[d] for d, r in prepared.qrels["train"].get(ids[i], {}).items() if r > 0 and d in row_of}
    seen = golds | set(src[i]["cand_index"].tolist())
    np.testing.assert_array_equal(table.rows[i], [r for r in ranked[i] if r not in seen][:3])

  # The scores: the teacher's own logits for those pairs, read at another position of another list.
  tparams, tsh = train.restore_params(tdir, teacher, tcfg, mesh)
  swapped = []
  for i in range(8):
    ex = dict(src[i])
    ex["cand_index"] = ex["cand_index"].copy()
    ex["cand_index"][-1] = table.rows[i, 1]
    swapped.append(ex)
  pred = evaluate.predict_source(evaluate.make_predict(teacher, mesh, tsh), tparams, swapped, prepared, 8, mesh,
                                 teacher.tokens, teacher.pair_len)
  np.testing.assert_allclose(pred["scores"][:, -1], table.scores[:8, 1], rtol=1e-4, atol=1e-4)

  # Stored and reused; asked for another count it refuses in one line rather than mixing tables.
  again = scored_negatives.ensure(config, tmp_path / "round2", prepared, tcfg, tdir)
  np.testing.assert_array_equal(again.rows, table.rows)
  config.distill.scored.count = 4
  with pytest.raises(ValueError, match="count 3"):
    scored_negatives.ensure(config, tmp_path / "round2", prepared, tcfg, tdir)

  # Training batches carry K + 3 candidates, the teacher's stored scores then the table's.
  path = tmp_path / "scores.npz"
  pred = evaluate.predict_split(evaluate.make_predict(teacher, mesh, tsh), tparams, prepared, "train", 8, mesh,
                                teacher.tokens, teacher.pair_len)
  teacher_scores.save(path, pred["claim_id"].astype(str), pred["scores"], pred["cand_index"])
  lookup = table.lookup(teacher_scores.lookup(path, src))
  batch = pipeline.TrainBatches(table.source(src), 8, 0, pipeline.gather_transform(prepared, "words", 0, lookup))[0]
  k = src[0]["cand_index"].shape[0]
  assert batch["doc_words"].shape[1] == k + 3 and batch["teacher_scores"].shape == (8, k + 3)
  row = table.claim_ids.index(batch["claim_id"][0].decode())
  np.testing.assert_allclose(batch["teacher_scores"][0, k:], table.scores[row])
  np.testing.assert_array_equal(batch["cand_index"][0, k:], np.maximum(table.rows[row], 0))
  # ... and a student trains on them.
  config.distill.scored.count = 3
  result = train.fit(config, tmp_path / "round2", prepared, student, loss, teacher_scores=lookup,
                     train_source=table.source(src))
  assert np.isfinite(result.metrics["ndcg@10"])


def test_stage_names_resolve_under_the_workdir_and_paths_as_given(tmp_path):
  assert scored_negatives.where("cnn_student", tmp_path) == (tmp_path / "cnn_student").resolve()
  assert scored_negatives.where(str(tmp_path / "a" / "b"), Path("/elsewhere")) == (tmp_path / "a" / "b").resolve()
  with pytest.raises(ValueError, match="needs distill.scored.stage"):
    scored_negatives.where("", tmp_path)


@pytest.mark.slow  # trains, prepares real data or compiles large steps: seconds each
def test_the_chain_trains_its_own_first_round_when_none_is_named(data_dir, smoke_chain, tmp_path):
  from kd_jax.modes import distill
  work, cache = smoke_chain
  shutil.copytree(work / "teacher", tmp_path / "teacher")  # a finished teacher, with its stored scores
  config = cnn_student.get_config("smoke")
  config.data.dir, config.data.cache_dir = str(data_dir), str(cache)
  config.train.update(steps=2, checkpoint_every=2, eval_every=2)
  config.distill.scored.count = 2
  distill.distill(config, str(tmp_path))
  first, second = tmp_path / "cnn_student_round1", tmp_path / "cnn_student"
  assert (first / "complete.json").is_file() and (second / "complete.json").is_file()
  table = scored_negatives.Table.load(second / "scored" / "table.npz")
  assert table.meta["stage"] == str(first.resolve()) and table.count == 2
  saved = json.loads((second / "config.json").read_text())["distill"]["scored"]
  assert saved["stage"] == "cnn_student_round1" and saved["count"] == 2
  assert json.loads((first / "config.json").read_text())["distill"]["scored"]["count"] == 0


def test_scored_negatives_with_an_online_teacher_fail_before_anything_trains(data_dir, tmp_path):
  from kd_jax.modes import distill
  config = cnn_student.get_config("smoke")
  config.data.dir, config.data.cache_dir = str(data_dir), str(tmp_path / "cache")
  config.distill.update(online=True)
  config.distill.scored.count = 2
  with pytest.raises(ValueError, match="cannot run with distill.online=True"):
    distill.distill(config, str(tmp_path))
  assert not (tmp_path / "teacher").exists()

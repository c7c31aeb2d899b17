"""Mined hard negatives: the pure table/draw functions, and a real training run that mines, stores and resumes."""

import jax
import numpy as np
import pytest

from configs import cnn_student
from kd_jax import losses, mined_negatives, search, sharding, train
from kd_jax.data import prepare
from kd_jax.models import build as build_lib


def test_exclude_golds_skips_then_keeps_ranked_non_golds():
  rows = np.array([[5, 3, 9, 1, 7], [2, 4, 6, 8, 0]])
  out = mined_negatives.exclude_golds(rows, [{3}, set()], skip=1, depth=3)
  np.testing.assert_array_equal(out, [[9, 1, 7], [4, 6, 8]])
  short = mined_negatives.exclude_golds(rows[:1], [{5, 3, 9}], skip=0, depth=3)
  np.testing.assert_array_equal(short, [[1, 7, -1]])  # fewer than depth non-golds: -1 pads


def test_draw_takes_distinct_table_entries_and_fills_the_rest_at_random():
  table = np.array([[10, 11, 12, 13], [20, 21, -1, -1]], np.int32)
  index = {"a": 0, "b": 1}
  ids, epochs = np.array([b"a", b"b", b"zz"]), np.array([0, 0, 0])
  out = mined_negatives.draw(table, index, ids, epochs, 3, num_docs=1000, seed=0)
  assert set(out[0]) <= {10, 11, 12, 13} and len(set(out[0])) == 3
  assert set(out[1][:2]) == {20, 21} and 0 <= out[1][2] < 1000  # two mined, one random
  assert ((0 <= out[2]) & (out[2] < 1000)).all()  # a claim without a table row (a pseudo-claim): random rows
  # Per (seed, claim, epoch): the same whatever else is in the batch, new at the next epoch or seed.
  alone = mined_negatives.draw(table, index, ids[:1], epochs[:1], 3, 1000, 0)
  np.testing.assert_array_equal(alone[0], out[0])
  later = [mined_negatives.draw(table, index, ids[:1], np.array([e]), 3, 1000, 0)[0] for e in range(1, 6)]
  assert any(not np.array_equal(x, out[0]) for x in later)
  # Before the first refresh every slot is a random row.
  assert mined_negatives.draw(None, index, ids, epochs, 3, 1000, 0).shape == (3, 3)


def test_bad_settings_fail_in_one_line():
  with pytest.raises(ValueError, match="depth >= count"):
    mined_negatives.Miner("/tmp/x", None, None, None, count=8, depth=4, skip=0, refresh_every=10, seed=0)


@pytest.mark.slow  # trains, prepares real data or compiles large steps: seconds each
def test_mined_run_stores_its_tables_and_resumes_to_identical_params(data_dir, tmp_path):
  config = cnn_student.get_config("smoke")
  config.data.dir, config.data.cache_dir = str(data_dir), str(tmp_path / "cache")
  config.train.update(steps=8, checkpoint_every=4, eval_every=100, eval_full_collection=False,
                      best_metric="ndcg@10")
  config.distill.negatives.mined.update(count=2, depth=6, skip=1, refresh_every=3)
  prepared = prepare.prepare(config.data)
  built = build_lib.build(config.model, prepared)
  loss = losses.distill_loss_fn(2.0, 0.5, "listwise")  # its hard term reads the wide list with the negatives
  straight = train.fit(config, tmp_path / "straight", prepared, built, loss)
  tables = sorted(p.name for p in (tmp_path / "straight" / "mined").iterdir())
  assert tables == ["step_000003.npy", "step_000006.npy"]

  # The stored table: `depth` distinct documents per training claim, none of them gold (test_refresh_... checks
  # that they are the student's own top documents).
  table = np.load(tmp_path / "straight" / "mined" / "step_000003.npy")
  src = prepared.source("train")
  row_of = {d: i for i, d in enumerate(prepared.doc_ids)}
  assert table.shape == (len(src), 6) and (table >= 0).all()
  for i in range(0, len(src), 37):
    cid = src[i]["claim_id"].decode()
    golds = {row_of[d] for d, rel in prepared.qrels["train"].get(cid, {}).items() if rel > 0 and d in row_of}
    assert not golds & set(table[i]) and len(set(table[i])) == 6

  # Killed after 4 steps (after the step-3 refresh), resumed: the step-3 table is read back, and the final
  # parameters are those of the run that never stopped.
  train.fit(config, tmp_path / "killed", prepared, built, loss, stop_after=4)
  resumed = train.fit(config, tmp_path / "killed", prepared, built, loss)
  assert resumed.initial_metrics is None
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), resumed.params,
               straight.params)

  # The mined negatives reach the loss: without them the same run ends elsewhere.
  config.distill.negatives.mined.count = 0
  plain = train.fit(config, tmp_path / "plain", prepared, built, loss)
  assert not np.allclose(np.asarray(jax.tree.leaves(plain.params)[0]), np.asarray(jax.tree.leaves(straight.params)[0]))


@pytest.mark.slow  # trains, prepares real data or compiles large steps: seconds each
def test_refresh_mines_the_students_own_top_documents(data_dir, tmp_path):
  config = cnn_student.get_config("smoke")
  config.data.dir, config.data.cache_dir = str(data_dir), str(tmp_path / "cache")
  prepared = prepare.prepare(config.data)
  built = build_lib.build(config.model, prepared)
  params = built.init(jax.random.key(0))
  mesh = sharding.make_mesh(1)
  miner = mined_negatives.Miner(tmp_path, prepared, built, mesh, count=2, depth=5, skip=0, refresh_every=10,
                                seed=0)
  miner.refresh_if_due(10, params)
  _, rows, _ = search.search_split(built, params, prepared, "train", mesh, k=30)
  src = prepared.source("train")
  row_of = {d: i for i, d in enumerate(prepared.doc_ids)}
  for i in range(len(src)):
    qrels = prepared.qrels["train"].get(src[i]["claim_id"].decode(), {})
    golds = {row_of[d] for d, rel in qrels.items() if rel > 0 and d in row_of}
    np.testing.assert_array_equal(miner.table[i], [r for r in rows[i] if r not in golds][:5])
  np.testing.assert_array_equal(np.load(tmp_path / "mined" / "step_000010.npy"), miner.table)

"""A trained stage on collections beyond its training data: index, search and evaluate zero-shot, on the real
SciFact and FEVER-titles data; the stage folder carries its own vocabulary; a killed indexing run resumes."""

import collections
import json
import logging
import shutil

import jax
import numpy as np
import pytest
import pytrec_eval

from configs import cnn_student
from kd_jax import (calibration, collection, collection_eval, hubness, indexing, modes, restored, search, sharding,
                    stage_inputs, train)
from kd_jax.modes import evaluate
from kd_jax.modes import stage as stage_mode
from kd_jax.modes import search as search_mode
from kd_jax.data import datasets, prepare, tokenize
from kd_jax.models import build as build_lib

pytestmark = pytest.mark.slow  # trains a smoke teacher and student first


@pytest.fixture(scope="module")
def stage(data_dir, smoke_chain, tmp_path_factory):
  """A CNN student (and its teacher) trained at smoke size on SciFact: a copy of the session's smoke chain (these
  tests write evaluations into the stage folder)."""
  root = tmp_path_factory.mktemp("collection")
  workdir, cache = smoke_chain
  shutil.copytree(workdir, root / "work")
  shutil.copytree(cache, root / "cache")
  c = cnn_student.get_config("smoke")
  c.data.dir, c.data.cache_dir = str(data_dir), str(root / "cache")
  return c, root


def _on(config, **collection_fields):
  c = config.copy_and_resolve_references()
  c.collection.update(collection_fields)
  return c


def test_the_stage_folder_carries_its_vocabulary(stage):
  c, root = stage
  inputs = stage_inputs.load(root / "work" / "cnn_student")
  cache = next((root / "cache").glob("scifact-*"))
  assert inputs.vocab == (cache / "vocab.txt").read_text(encoding="utf-8").split("\n")
  assert inputs.settings["doc_word_len"] == c.data.doc_word_len and inputs.settings["data"] == "scifact"


def test_zero_shot_on_fever_titles_equals_a_direct_computation(stage, data_dir):
  c, root = stage
  on = _on(c, dataset="fever_titles", max_claims=300)
  on.search.doc_norms.other, on.search.stop_df, on.search.lex_norms.other = 0.5, 0.3, 0.5
  on.search.unk_drop.other = 0.5
  on.search.hub_bank_beta = 0.5  # the hub correction with a bank of FEVER-titles' dev claims reported too
  on.search.hub_bank_k = 7  # averaged over each document's 7 best bank claims (not hub_norm.k)
  result = evaluate.evaluate_stage(on, str(root / "work"))
  run_dir = root / "work" / "cnn_student"
  saved = json.loads((run_dir / "eval_fever_titles.json").read_text())
  assert saved == json.loads(json.dumps(result))
  assert saved["trained_on"] == "scifact" and saved["collection"] == "fever_titles"
  own = json.loads((run_dir / "eval_test.json").read_text())["hybrid"]
  assert {m: h["weight"] for m, h in saved["hybrid"].items()} == {m: own[m]["full_collection"]["weight"] for m in own}
  assert 0.0 <= saved["hub"]["max_share"] <= 1.0
  assert saved["claims"] == 300 and saved["teacher"]["claims"] == 300
  assert saved["teacher"]["num_candidates"] == c.data.num_candidates and "ndcg@10" in saved["teacher"]["rerank"]
  # Stored in the teacher's folder for every student distilled from it, with what it was computed from: another
  # version of the documents or of the claims is evaluated again, not read back.
  fever_source = collection.from_config(on)
  assert saved["teacher"]["collection_fingerprint"] == fever_source.fingerprint
  assert saved["teacher"]["claims_fingerprint"] == fever_source.claims_fingerprint("test")

  # Directly: the vocabulary file of the stage folder, word ids by the tokenizer (tested in test_data.py), the
  # parameters applied on one device without the index, NumPy scores and top 100, pytrec_eval.
  fever = datasets.load(collection.from_config(_on(c, dataset="fever_titles")).data_cfg)
  vocab = (run_dir / "inputs" / "vocab.txt").read_text(encoding="utf-8").split("\n")
  index = {w: i for i, w in enumerate(vocab)}
  built = build_lib.build(c.model, stage_inputs.load(run_dir))
  params, _ = train.restore_params(run_dir, built, c, sharding.make_mesh(1, 1))
  coll, test = fever.collection, fever.splits["test"]
  test.ids, test.texts = test.ids[:300], test.texts[:300]  # the first 300, as evaluated
  qrels = {q: test.qrels[q] for q in test.ids}
  oov = c.data.oov_buckets  # out-of-vocabulary words hashed as the stage hashes them (its lexical channel reads them)
  docs = tokenize.word_ids(index, [coll.document(i) for i in range(len(coll))], c.data.doc_word_len, oov)
  claims = tokenize.word_ids(index, test.texts, c.data.claim_word_len, oov)
  apply = lambda x, m: np.asarray(built.module.apply({"params": params}, x, method=getattr(built.module, m)))
  d = np.concatenate([apply(docs[i:i + 2048], "encode_docs") for i in range(0, len(docs), 2048)])
  q = apply(claims, "encode_claims")
  scores = q @ d.T
  top = np.argsort(-scores, axis=1, kind="stable")[:, :100]
  run = {cid: {coll.ids[r]: float(scores[i, r]) for r in top[i]} for i, cid in enumerate(test.ids)}
  measures = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut_10", "recall_100"}).evaluate(run)
  ndcg = np.mean([m["ndcg_cut_10"] for m in measures.values()])
  recall = np.mean([m["recall_100"] for m in measures.values()])
  np.testing.assert_allclose(saved["student"]["full_collection"]["ndcg@10"], ndcg, atol=2e-3)
  np.testing.assert_allclose(saved["student"]["full_collection"]["recall@100"], recall, atol=2e-3)

  # The hub correction on the target, at the beta the stage chose on its own dev: the bank's queries are the target's
  # documents cut to claim length; each document loses beta x the mean of its 10 best bank scores (not its own).
  hn = saved["hub_norm"]
  assert hn["beta"] == collection_eval.own_dev_hub_norm(run_dir, bank="documents")["beta"]  # that bank's own
  bank = hubness.bank_rows(len(coll), hn["bank"], hn["seed"])
  bank_scores = apply(tokenize.word_ids(index, [coll.document(int(r)) for r in bank], c.data.claim_word_len, oov),
                      "encode_claims") @ d.T
  bank_scores[np.arange(len(bank)), bank] = -np.inf
  penalty = np.sort(bank_scores, axis=0)[::-1][: hn["k"]].mean(0)
  fixed = scores - hn["beta"] * penalty[None]
  top = np.argsort(-fixed, axis=1, kind="stable")[:, :100]
  run = {cid: {coll.ids[r]: float(fixed[i, r]) for r in top[i]} for i, cid in enumerate(test.ids)}
  measures = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut_10"}).evaluate(run)
  np.testing.assert_allclose(hn["full_collection"]["ndcg@10"], np.mean([m["ndcg_cut_10"] for m in measures.values()]),
                             atol=2e-3)

  # Calibrated (calibration.py): claims and documents encoded with half the <unk> embedding row (an index of its own),
  # documents' dense norms and lexical norms each pulled half way (in log space) to the collection's medians, and the
  # lexical buckets of words found in more than 30% of SciFact's abstracts or of its training claims zeroed in the
  # claims.
  root_unk = indexing.index_root(run_dir, "fever_titles", unk_drop=0.5, private=c.model.lexical_private)
  assert search.Index(root_unk).exists()
  half = jax.tree.map(np.array, params)  # writable copies
  half["encoder"]["tokens"]["embed"]["embedding"][1] *= 0.5  # <unk> is id 1
  apply = lambda x, m: np.asarray(built.module.apply({"params": half}, x, method=getattr(built.module, m)))
  d = np.concatenate([apply(docs[i:i + 2048], "encode_docs") for i in range(0, len(docs), 2048)])
  q = apply(claims, "encode_claims")
  dn, dim = saved["calibrated"], c.model.out_dim
  norms = np.linalg.norm(d[:, :dim], axis=1)
  assert (norms > 0).all()
  lex = np.linalg.norm(d[:, dim:], axis=1)
  lex_factor = np.where(lex > 0, np.sqrt(np.median(lex[lex > 0]) / np.maximum(lex, 1e-30)), 1.0)
  scaled = np.concatenate([d[:, :dim] * np.sqrt(np.median(norms) / norms)[:, None], d[:, dim:] * lex_factor[:, None]],
                          1)
  sci = datasets.load(c.data).collection
  sci_words = tokenize.word_ids(index, [sci.document(i) for i in range(len(sci))], c.data.doc_word_len, oov)
  sci_train = datasets.load(c.data).splits["train"].texts
  train_words = tokenize.word_ids(index, sci_train, c.data.claim_word_len, oov)
  share = lambda rows: {w: n / len(rows) for w, n in collections.Counter(  # noqa: E731
      w for row in rows for w in set(row.tolist()) if 1 < w < len(vocab)).items()}
  in_docs, in_claims = share(sci_words), share(train_words)
  common = np.array(sorted(w for w in set(in_docs) | set(in_claims)
                           if max(in_docs.get(w, 0), in_claims.get(w, 0)) > 0.3))
  assert 5 <= len(common) <= 60 and "the" in {vocab[w] for w in common}
  gold = common.astype(np.uint64) * 0x9E3779B1 % 2**32  # their buckets, at the stage's layout (models/lexical.py)
  private, width = c.model.lexical_private, c.model.lexical_dim
  hashed = (np.where(common < private, common, private + (gold >> 8) % (width - private)) if private
            else gold >> (32 - int(np.log2(width))))
  q_cut = q.copy()
  q_cut[:, dim + hashed.astype(int)] = 0.0
  calibrated = q_cut @ scaled.T
  top = np.argsort(-calibrated, axis=1, kind="stable")[:, :100]
  run = {cid: {coll.ids[r]: float(calibrated[i, r]) for r in top[i]} for i, cid in enumerate(test.ids)}
  measures = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut_10"}).evaluate(run)
  assert (dn["doc_norms"], dn["stop_df"], dn["lex_norms"], dn["unk_drop"]) == (0.5, 0.3, 0.5, 0.5)
  assert set(dn["hybrid"]) == set(saved["hybrid"])
  # Fused at the weights dev chose for the student calibrated on its own collection.
  own_cal = json.loads((run_dir / "eval_test.json").read_text())["calibrated"]["hybrid"]
  assert {m: h["weight"] for m, h in dn["hybrid"].items()} == {m: own_cal[m]["full_collection"]["weight"]
                                                               for m in own_cal}
  np.testing.assert_allclose(dn["full_collection"]["ndcg@10"], np.mean([m["ndcg_cut_10"] for m in measures.values()]),
                             atol=2e-3)
  assert abs(dn["hub"]["max_share"] - collection_eval.hub_share(top)["max_share"]) <= 2 / 300  # near-ties may swap

  # The calibrated search once more, with the hub correction's bank made of the collection's dev claims (what
  # mode=search does with search.hub_bank=dev): each document less 0.5 x the mean of its k best scores over all of
  # them (the first 300, as max_claims cuts every split), encoded and masked as the claims are, over its 7 best.
  dev_claims = tokenize.word_ids(index, fever.splits["dev"].texts[:300], c.data.claim_word_len, oov)
  bank_q = apply(dev_claims, "encode_claims").copy()
  bank_q[:, dim + hashed.astype(int)] = 0.0
  cb = dn["claim_bank"]
  assert (cb["bank"], cb["bank_claims"], cb["beta"], cb["k"]) == ("dev", 300, 0.5, 7)
  assert c.hub_norm.k != 7
  penalty = np.sort(bank_q @ scaled.T, axis=0)[::-1][:7].mean(0)
  fixed = calibrated - 0.5 * penalty[None]
  top = np.argsort(-fixed, axis=1, kind="stable")[:, :100]
  run = {cid: {coll.ids[r]: float(fixed[i, r]) for r in top[i]} for i, cid in enumerate(test.ids)}
  measures = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut_10"}).evaluate(run)
  np.testing.assert_allclose(cb["full_collection"]["ndcg@10"], np.mean([m["ndcg_cut_10"] for m in measures.values()]),
                             atol=2e-3)
  assert abs(cb["hub"]["max_share"] - collection_eval.hub_share(top)["max_share"]) <= 2 / 300


def test_a_finished_stage_works_without_the_prepared_data_cache(stage, tmp_path, capsys):
  c, root = stage
  work = tmp_path / "work"
  shutil.copytree(root / "work", work)
  c = c.copy_and_resolve_references()
  c.data.cache_dir = str(tmp_path / "no_cache")  # an empty cache: nothing prepared
  jsonl = tmp_path / "docs.jsonl"
  docs = [{"_id": "d1", "title": "Vitamin D", "text": "Vitamin D deficiency and the risk of cancer."},
          {"_id": "d2", "title": "Football", "text": "The league final was played in May."},
          {"_id": "d3", "title": "Insulin", "text": "Insulin resistance in type 2 diabetes."}]
  jsonl.write_text("\n".join(json.dumps(d) for d in docs))
  on = _on(c, path=str(jsonl))
  # The stored vectors as trained, until the last checks.
  on.search.doc_norms.other = on.search.lex_norms.other = on.search.unk_drop.other = 0.0
  on.mode = "index"
  modes.run(on, str(work))
  on.mode, on.search.query, on.search.top_k = "search", "vitamin D deficiency cancer risk", 3
  hits = modes.run(on, str(work))
  assert sorted(h[0] for h in hits[0]) == ["d1", "d2", "d3"]
  assert "d1" in capsys.readouterr().out
  assert not any((tmp_path / "no_cache").glob("*")), "the stage read the prepared-data cache"
  index_dir = indexing.index_root(work / "cnn_student", "docs", private=c.model.lexical_private)
  stored = search.Index(index_dir)
  vecs, ids, meta = stored.read()
  assert ids == ["d1", "d2", "d3"] and meta["collection"] == "docs" and vecs.shape[0] == 3

  # With the hub correction at beta 1: each document less the mean of its 2 best scores against the other two
  # documents read as claims (a bank of the whole 3-document collection), by NumPy on the stored vectors. The bank's
  # claims lose the common words' lexical buckets as the searched claim does (stop_df 0.25, calibration.py).
  on.search.hub_beta = 1.0
  corrected = modes.run(on, str(work))[0]
  inputs = stage_inputs.load(work / "cnn_student")
  built = build_lib.build(c.model, inputs)
  params, _ = train.restore_params(work / "cnn_student", built, c, sharding.make_mesh(1, 1))
  texts = [f"{d['title']}. {d['text']}" for d in docs]
  bank = np.asarray(built.module.apply({"params": params}, inputs.claim_words(texts), method=built.module.encode_claims))
  masked = lambda v: calibration.Calibration(stop_df=on.search.stop_df).claims(built, inputs, v)  # noqa: E731
  raw_bank, bank = bank, masked(bank)
  assert (bank != raw_bank).any()  # "the", "and", "of" in these documents: the masking shows
  bank_scores = bank @ np.asarray(vecs).T
  np.fill_diagonal(bank_scores, -np.inf)
  penalty = np.sort(bank_scores, axis=0)[::-1][:2].mean(0)
  query = masked(np.asarray(built.module.apply({"params": params}, inputs.claim_words([on.search.query]),
                                               method=built.module.encode_claims)))[0]
  want = query @ np.asarray(vecs).T - penalty
  assert [h[0] for h in corrected] == [ids[i] for i in np.argsort(-want, kind="stable")]
  np.testing.assert_allclose([h[1] for h in corrected], np.sort(want)[::-1], rtol=1e-4, atol=1e-4)
  assert (index_dir / "hub_penalty.npy").is_file()  # stored for the next search
  on.search.ivf.lists, on.search.ivf.probe = 2, 2  # approximate search probing every list: the same answer
  approx = modes.run(on, str(work))[0]
  assert [h[0] for h in approx] == [h[0] for h in corrected]
  np.testing.assert_allclose([h[1] for h in approx], [h[1] for h in corrected], rtol=1e-4, atol=1e-4)
  assert (index_dir / "ivf-2" / "meta.json").is_file()

  # A bank of real claims instead (search.hub_bank, a file of them): each document less the mean of its best scores
  # over both bank claims (none was cut from a document, so none is left out), the bank masked as the query is; its
  # penalty is stored apart from the documents' bank's, which stays.
  bank_texts = ["insulin and diabetes", "the league final in May"]
  (tmp_path / "bank.txt").write_text("\n".join(bank_texts) + "\n\n")
  on.search.ivf.lists, on.search.hub_bank = 0, str(tmp_path / "bank.txt")
  banked = modes.run(on, str(work))[0]
  claims_bank = masked(np.asarray(built.module.apply({"params": params}, inputs.claim_words(bank_texts),
                                                     method=built.module.encode_claims)))
  k = min(int(c.search.hub_bank_k), 2)
  want = query @ np.asarray(vecs).T - np.sort(claims_bank @ np.asarray(vecs).T, axis=0)[::-1][:k].mean(0)
  assert [h[0] for h in banked] == [ids[i] for i in np.argsort(-want, kind="stable")]
  np.testing.assert_allclose([h[1] for h in banked], np.sort(want)[::-1], rtol=1e-4, atol=1e-4)
  assert json.loads((index_dir / "hub_penalty_claims.json").read_text())["bank_claims"] == 2
  # Other claims in the file: the stored penalty is made again, not read back.
  (tmp_path / "bank.txt").write_text("vitamin D and cancer\n")
  other_bank = modes.run(on, str(work))[0]
  one = masked(np.asarray(built.module.apply({"params": params}, inputs.claim_words(["vitamin D and cancer"]),
                                             method=built.module.encode_claims)))
  want = query @ np.asarray(vecs).T - (one @ np.asarray(vecs).T)[0]
  np.testing.assert_allclose([h[1] for h in other_bank], np.sort(want)[::-1], rtol=1e-4, atol=1e-4)
  assert json.loads((index_dir / "hub_penalty_claims.json").read_text())["bank_claims"] == 1
  assert json.loads((index_dir / "hub_penalty.json").read_text())["bank"] == c.hub_norm.bank
  # A bank that cannot be read fails in one line, before anything loads: a missing file, and "dev" of a collection
  # without dev claims (a document file).
  on.search.hub_bank = str(tmp_path / "no_bank.txt")
  with pytest.raises(FileNotFoundError, match=r"^search\.hub_bank .*no_bank\.txt not found") as e:
    modes.run(on, str(work))
  assert "\n" not in str(e.value)
  on.search.hub_bank = "dev"
  with pytest.raises(ValueError, match=r"^search\.hub_bank=dev: docs has no dev claims") as e:
    modes.run(on, str(work))
  assert "\n" not in str(e.value)
  on.search.hub_bank = ""

  # Every document's dense part at the collection's median norm (doc_norms.py, strength 1), by NumPy.
  on.search.ivf.lists, on.search.hub_beta, on.search.doc_norms.other = 0, 0.0, 1.0
  calibrated = modes.run(on, str(work))[0]
  scaled, dim = np.array(vecs), c.model.out_dim
  norms = np.linalg.norm(scaled[:, :dim], axis=1)
  scaled[:, :dim] *= (np.median(norms) / norms)[:, None]
  want = query @ scaled.T
  assert [h[0] for h in calibrated] == [ids[i] for i in np.argsort(-want, kind="stable")]
  np.testing.assert_allclose([h[1] for h in calibrated], np.sort(want)[::-1], rtol=1e-4, atol=1e-4)
  stored_norms = index_dir / "dense_norms.npy"  # kept for the next search
  np.testing.assert_allclose(np.load(stored_norms), norms, rtol=1e-6)
  assert not (stored_norms.parent / "lexical_norms.npy").exists()  # only the parts scaled: lex_norms 0 here

  # The lexical parts at their median norm too (lex_norms 1): every document brings the same lexical mass.
  on.search.lex_norms.other = 1.0
  both = modes.run(on, str(work))[0]
  lex = np.linalg.norm(scaled[:, dim:], axis=1)
  assert (lex > 0).all()
  scaled[:, dim:] *= (np.median(lex) / lex)[:, None]
  want = query @ scaled.T
  assert [h[0] for h in both] == [ids[i] for i in np.argsort(-want, kind="stable")]
  np.testing.assert_allclose([h[1] for h in both], np.sort(want)[::-1], rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(np.load(stored_norms.parent / "lexical_norms.npy"), lex, rtol=1e-6)

  # Unknown words out of the towers' inputs (unk_drop 1): the vectors change, so they live in an index of their own,
  # which mode=index builds and mode=search asks for by name; then claims and documents are encoded with the <unk>
  # row at 0 (by NumPy from the parameters edited by hand), and calibrated as before.
  on.search.unk_drop.other = 1.0
  with pytest.raises(FileNotFoundError, match=rf"docs-unk1-private{on.model.lexical_private}: build it first with "
                                              r"--config\.mode=index .*--config\.search\.unk_drop\.other=1\.$"):
    modes.run(on, str(work))
  on.mode = "index"
  modes.run(on, str(work))
  on.mode = "search"
  dropped = modes.run(on, str(work))[0]
  zero = jax.tree.map(np.array, params)
  zero["encoder"]["tokens"]["embed"]["embedding"][1] = 0.0
  unk_vecs = np.asarray(built.module.apply({"params": zero}, inputs.doc_words(texts), method=built.module.encode_docs))
  assert np.abs(unk_vecs - np.asarray(vecs)).max() > 1e-4  # "league", "Football": words SciFact's vocabulary lacks
  stored_unk, _, meta = search.Index(indexing.index_root(work / "cnn_student", "docs", unk_drop=1.0,
                                                               private=c.model.lexical_private)).read()
  np.testing.assert_allclose(np.asarray(stored_unk), unk_vecs, rtol=1e-5, atol=1e-6)
  assert meta["unk_drop"] == 1.0
  u_query = masked(np.asarray(built.module.apply({"params": zero}, inputs.claim_words([on.search.query]),
                                                 method=built.module.encode_claims)))[0]
  u = unk_vecs.copy()
  for part in (slice(0, dim), slice(dim, None)):  # both parts at their median norms (doc_norms 1, lex_norms 1)
    n = np.linalg.norm(u[:, part], axis=1)
    u[:, part] *= (np.median(n) / n)[:, None]
  want = u_query @ u.T
  assert [h[0] for h in dropped] == [ids[i] for i in np.argsort(-want, kind="stable")]
  np.testing.assert_allclose([h[1] for h in dropped], np.sort(want)[::-1], rtol=1e-4, atol=1e-4)


def test_a_stage_saved_before_claim_frequencies_gets_them_from_its_dataset(stage, tmp_path, caplog):
  """Stop words count the training claims too (stage_inputs.word_freq): a stage saved before claim_freq.npy existed
  gets it from its dataset's training claims, as its own training stored it, without the prepared data; one that
  cannot be written to keeps the documents' stop words, with a warning."""
  c, root = stage
  old = tmp_path / "old_stage"
  shutil.copytree(root / "work" / "cnn_student", old)
  want = np.load(old / "inputs" / "claim_freq.npy")
  (old / "inputs" / "claim_freq.npy").unlink()
  no_cache = c.copy_and_resolve_references()
  no_cache.data.cache_dir = str(tmp_path / "no_cache")  # the prepared data are not read
  inputs = stage_mode.stage_inputs_of(no_cache, old)
  np.testing.assert_array_equal(inputs.claim_freq, want)
  np.testing.assert_array_equal(inputs.word_freq, np.maximum(inputs.doc_freq, want))
  assert not (tmp_path / "no_cache").exists()
  (old / "inputs" / "claim_freq.npy").unlink()
  no_data = no_cache.copy_and_resolve_references()
  no_data.data.dir = str(tmp_path / "no_data")
  inputs = stage_mode.stage_inputs_of(no_data, old)
  assert inputs.claim_freq is None and inputs.word_freq is inputs.doc_freq
  assert "counted over the training documents alone" in caplog.text


def test_an_index_follows_the_collection_it_was_built_from(stage, tmp_path):
  """A changed collection is encoded again by mode=index (its IVF lists go with the old vectors), mode=search refuses
  the stale index in one line, an empty document's vector is zero, a collection cannot take a split's name, and
  evaluate reads the claims before it encodes anything."""
  c, root = stage
  work = tmp_path / "work"
  shutil.copytree(root / "work", work)
  docs = [{"_id": "d1", "title": "Vitamin D", "text": "Vitamin D deficiency and the risk of cancer."},
          {"_id": "d2", "title": "Insulin", "text": "Insulin resistance in type 2 diabetes."},
          {"_id": "d3", "title": "", "text": ""},
          {"_id": "d4", "title": "Statins", "text": "Statins lower cholesterol and the risk of heart disease."}]
  jsonl = tmp_path / "docs.jsonl"
  jsonl.write_text("\n".join(json.dumps(d) for d in docs))
  on = _on(c, path=str(jsonl))
  on.mode, on.search.query, on.search.top_k, on.search.ivf.lists, on.search.ivf.probe = "index", "vitamin D", 4, 2, 2
  modes.run(on, str(work))
  on.mode = "search"
  hits = {h[0]: h[1] for h in modes.run(on, str(work))[0]}
  root_dir = indexing.index_root(work / "cnn_student", "docs", unk_drop=on.search.unk_drop.other,
                              private=c.model.lexical_private)
  vecs, _, meta = search.Index(root_dir).read()
  vecs = np.array(vecs)  # a copy: the rebuild below writes into the same file
  assert not np.asarray(vecs)[2].any() and np.asarray(vecs)[[0, 1, 3]].any(axis=1).all()  # empty: a zero vector
  assert hits["d3"] == 0.0 and len(meta["fingerprint"]) == 16
  ivf_dirs = list(root_dir.glob("ivf-2*"))  # one IVF per norm strength: ivf-2-norms1-lexnorms1
  assert len(ivf_dirs) == 1 and (ivf_dirs[0] / "meta.json").is_file()

  docs[1]["text"] = "Insulin secretion by pancreatic beta cells."
  jsonl.write_text("\n".join(json.dumps(d) for d in docs))
  with pytest.raises(ValueError, match=r"^The index in .* was built from another version of docs .*--config\.mode="
                                       r"index again") as e:
    modes.run(on, str(work))
  assert "\n" not in str(e.value)
  on.mode = "index"
  modes.run(on, str(work))
  assert not ivf_dirs[0].exists()  # its lists copied the old vectors
  new_vecs, _, new_meta = search.Index(root_dir).read()
  assert new_meta["fingerprint"] != meta["fingerprint"]
  assert np.abs(np.asarray(new_vecs)[1] - np.asarray(vecs)[1]).max() > 1e-4  # d2 encoded again
  np.testing.assert_allclose(np.asarray(new_vecs)[[0, 3]], np.asarray(vecs)[[0, 3]], rtol=1e-5, atol=1e-6)
  on.mode = "search"
  assert {h[0] for h in modes.run(on, str(work))[0]} == {"d1", "d2", "d3", "d4"}

  # A claim without a word the student knows: one alone is refused; in a file it is listed without results while
  # the others are answered; fused, BM25 answers it.
  claims = tmp_path / "claims.txt"
  claims.write_text("维生素D缺乏\nvitamin D and cancer risk\n")
  on.search.query, on.search.query_file = "", str(claims)
  blind, answered = modes.run(on, str(work))
  assert blind == [] and {h[0] for h in answered} == {"d1", "d2", "d3", "d4"}
  on.search.query, on.search.query_file = "维生素D缺乏", ""
  with pytest.raises(ValueError, match="^No word of the claim '维生素D缺乏' is in the student's vocabulary"):
    modes.run(on, str(work))
  on.search.hybrid, on.search.hybrid_weight = "coverage", 0.5
  assert len(modes.run(on, str(work))) == 1
  on.search.hybrid = ""

  with pytest.raises(ValueError, match=r"^A collection named 'test' would overwrite the stage's own eval_test\.json"):
    collection.from_config(_on(c, path=str(jsonl), name="test"))
  beir_dir = tmp_path / "no_queries"
  beir_dir.mkdir()
  (beir_dir / "corpus.jsonl").write_text(jsonl.read_text())
  on = _on(c, path=str(beir_dir))
  on.mode = "evaluate"
  with pytest.raises(FileNotFoundError, match="BEIR queries not found"):
    modes.run(on, str(work))
  assert not (work / "cnn_student" / "index" / "no_queries").exists()  # nothing encoded first


def test_a_killed_indexing_run_resumes_to_the_same_vectors(stage, tmp_path):
  c, root = stage
  run_dir = root / "work" / "cnn_student"
  inputs = stage_inputs.load(run_dir)
  built = build_lib.build(c.model, inputs)
  mesh = sharding.make_mesh()
  params, _ = train.restore_params(run_dir, built, c, mesh)
  source = collection.from_config(_on(c, dataset="scifact"))
  whole = indexing.build_index(built, params, inputs, source, tmp_path / "whole", mesh, {}, chunk=2000)
  (tmp_path / "killed").mkdir()
  np.save(tmp_path / "killed" / "dense_norms.npy", np.ones(3))  # derived from vectors a fresh start replaces
  indexing.build_index(built, params, inputs, source, tmp_path / "killed", mesh, {}, chunk=2000, stop_after_chunks=1)
  assert not search.Index(tmp_path / "killed").exists()
  assert not (tmp_path / "killed" / "dense_norms.npy").exists()
  assert json.loads((tmp_path / "killed" / "progress.json").read_text())["done"] == 2000
  resumed = indexing.build_index(built, params, inputs, source, tmp_path / "killed", mesh, {}, chunk=2000)
  a, ids_a, _ = whole.read()
  b, ids_b, _ = resumed.read()
  assert ids_a == ids_b and len(ids_a) == 5183
  np.testing.assert_array_equal(a, b)
  # A compact index: killed and resumed the same way, and its decoded vectors within int8's half step of float32.
  kw = dict(chunk=2000, dtype="int8")
  indexing.build_index(built, params, inputs, source, tmp_path / "int8", mesh, {}, stop_after_chunks=1, **kw)
  small = indexing.build_index(built, params, inputs, source, tmp_path / "int8", mesh, {}, **kw)
  q, ids_q, meta = small.read()
  assert meta["dtype"] == "int8" and ids_q == ids_a and np.load(tmp_path / "int8" / "doc_vecs.npy").dtype == np.int8
  step = np.abs(a).max(1, keepdims=True) / 127
  assert (np.abs(q - a) <= step / 2 + 1e-6).all()
  assert indexing.index_root(run_dir, "scifact", "int8").name == "scifact-int8"
  # Another lexical layout (model.lexical_private) is another index: its vectors hold other buckets.
  assert indexing.index_root(run_dir, "scifact", "int8", 0.5, 2048).name == "scifact-int8-unk0.5-private2048"
  jax.clear_caches()


def test_geometry_of_constructed_indexes():
  lengths = np.array([[1] * n + [0] * (6 - n) for n in (1, 2, 3, 6)])
  same_way = np.array([[1.0, 1.0]]) * np.array([[1], [2], [3], [6]])  # one direction, norm = length
  g = collection_eval.geometry(same_way, lengths)
  assert abs(g["mean_cos_to_centroid"] - 1) < 1e-9 and abs(g["corr_norm_length"] - 1) < 1e-9
  spread = np.array([[1.0, 0], [-1, 0], [0, 1], [0, -1]])  # unit vectors, centroid zero
  g = collection_eval.geometry(spread, lengths)
  assert g["norm_cv"] == 0 and g["corr_norm_length"] == 0 and abs(g["mean_cos_to_centroid"]) < 1e-9


def test_dev_weights_for_a_calibrated_search(tmp_path):
  assert collection_eval.own_dev_weights(tmp_path, ["linear"]) == {}  # not evaluated yet
  weight = lambda w: {"full_collection": {"weight": w}}  # noqa: E731
  (tmp_path / "eval_test.json").write_text(json.dumps({
      "hybrid": {"linear": weight(0.7), "zscore": weight(0.6), "rrf": weight(1.0)},
      "calibrated": {"doc_norms": 0.25, "hybrid": {"linear": weight(0.8), "zscore": weight(0.5)}}}))
  methods = ["linear", "zscore", "rrf", "gated"]
  assert collection_eval.own_dev_weights(tmp_path, methods) == {"linear": 0.7, "zscore": 0.6, "rrf": 1.0}
  # Calibrated where the file holds a calibrated weight; the uncalibrated one for a method evaluated without it.
  made_at = calibration.Calibration(doc_norms=0.25)
  assert collection_eval.own_dev_weights(tmp_path, methods, made_at) == {"linear": 0.8, "zscore": 0.5, "rrf": 1.0}
  # Weights chosen for the student calibrated at other settings (here: before unk_drop) are no choice for this one.
  today = calibration.Calibration(doc_norms=0.25, unk_drop=0.5)
  assert collection_eval.own_dev_weights(tmp_path, methods, today) == {"linear": 0.7, "zscore": 0.6, "rrf": 1.0}
  assert search_mode._hybrid_weight("linear", -1.0, tmp_path, today) == 0.7  # with a warning to evaluate again
  assert search_mode._hybrid_weight("linear", -1.0, tmp_path, made_at) == 0.8


def test_other_collections_evaluate_the_stage_again_when_its_own_figures_are_stale(tmp_path):
  config = cnn_student.get_config()
  config.model.lexical_private = 0  # the files below were made with every word hashed alike (no field: 0)
  weight = lambda w: {"full_collection": {"weight": w}}  # noqa: E731
  hub = {"bank": 2000, "k": 10, "seed": 0, "beta": 0.0, "banks": {"documents": {"beta": 0.0}, "train": {"beta": 0.0}}}
  home = calibration.of(config, own=True)
  stored = {"hybrid": {m: weight(0.5) for m in config.hybrid.methods}, "hub_norm": hub,
            "calibrated": {**home.settings(), "hub_norm": hub}}
  (tmp_path / "eval_test.json").write_text(json.dumps(stored))
  assert collection_eval.own_dev_current(tmp_path, config)
  before_unk = {k: v for k, v in home.settings().items() if k != "unk_drop"}  # made before unk_drop existed
  (tmp_path / "eval_test.json").write_text(json.dumps({**stored, "calibrated": {**before_unk, "hub_norm": hub}}))
  assert not collection_eval.own_dev_current(tmp_path, config)
  config.search.unk_drop.own = 0.0
  assert collection_eval.own_dev_current(tmp_path, config)
  (tmp_path / "eval_test.json").write_text(json.dumps({**stored, "hybrid": {"linear": weight(0.5)}}))
  assert not collection_eval.own_dev_current(tmp_path, config)  # a fusion method evaluated since
  # The hub ceiling checked on unlabelled claims too (hub_norm.unlabelled_claims): stale for a config that checks it on
  # dev's claims alone (today's default; files made before the field count as that), current for one that does not.
  pooled = {**hub, "unlabelled_claims": True}
  (tmp_path / "eval_test.json").write_text(json.dumps({**stored, "hub_norm": pooled,
                                                       "calibrated": {**before_unk, "hub_norm": hub}}))
  assert not collection_eval.own_dev_current(tmp_path, config)
  config.hub_norm.unlabelled_claims = True
  assert collection_eval.own_dev_current(tmp_path, config)
  config.hub_norm.unlabelled_claims = False
  # The hub correction's bank chosen among other banks than today's hub_norm.own_banks: stale, and current again
  # for a config that tries only those.
  config = cnn_student.get_config()
  config.model.lexical_private = 0
  assert collection_eval.home_banks(config) == ("documents", "train")
  before = {k: v for k, v in hub.items() if k != "banks"}  # made when the documents were the only bank
  (tmp_path / "eval_test.json").write_text(json.dumps({**stored, "hub_norm": before}))
  assert not collection_eval.own_dev_current(tmp_path, config)
  config.hub_norm.own_banks = ("documents",)
  assert collection_eval.own_dev_current(tmp_path, config)
  (tmp_path / "eval_test.json").write_text(json.dumps(stored))
  assert not collection_eval.own_dev_current(tmp_path, config)
  config.hub_norm.own_banks = ("train", "documents")
  assert collection_eval.own_dev_current(tmp_path, config)
  # Made at another lexical layout (model.lexical_private): every score moved, so stale, for search at home too
  # (which then searches without the correction); results saved before the field count as layout 0.
  config.model.lexical_private = 2048  # today's CNN layout
  assert not collection_eval.own_dev_current(tmp_path, config)
  assert collection_eval.home_hub_norm(tmp_path, config) is None
  assert not collection_eval.own_dev_layout_current(tmp_path, config)
  assert not collection_eval.zero_shot_is_current({"hybrid": {m: {} for m in config.hybrid.methods}, "hub_norm": {}},
                                                  tmp_path, config)
  (tmp_path / "eval_test.json").write_text(json.dumps({**stored, "lexical_private": 2048}))
  assert collection_eval.own_dev_current(tmp_path, config) and collection_eval.own_dev_layout_current(tmp_path, config)
  assert collection_eval.home_hub_norm(tmp_path, config) is not None
  config.model.lexical_private = 0
  assert not collection_eval.own_dev_current(tmp_path, config)
  for wrong in ((), ("queries",), ("documents", "documents"), ("train",)):
    config.hub_norm.own_banks = wrong
    with pytest.raises(ValueError, match=r"^hub_norm\.own_banks must list documents \(the bank another collection's "
                                         r"diagnostic reads\) and may list train, each once, got") as e:
      collection_eval.home_banks(config)
    assert "\n" not in str(e.value)


def test_the_calibrated_search_has_a_hub_correction_chosen_for_it_on_dev(stage):
  """eval_test.json's calibrated.hub_norm against NumPy, on dev at every beta of its curve and on test at the beta
  dev chose: claims and documents encoded with half the <unk> embedding row, the SciFact documents' dense norms
  pulled a quarter of the way to their median, the claims' and the bank's common-word buckets zeroed (the code for
  that is tested against NumPy in test_calibration.py), each document less beta x its mean 10 best bank scores; the
  bank either the documents read as claims (each left out for its own document) or the training claims, dev choosing
  the bank with the beta."""
  c, root = stage
  run_dir = root / "work" / "cnn_student"
  saved = json.loads((run_dir / "eval_test.json").read_text())
  assert saved["lexical_private"] == c.model.lexical_private > 0  # the layout its figures were made at
  # At the settings the file was made at: the zero-shot test above evaluates the stage again at its own stop_df.
  h = saved["calibrated"]["hub_norm"]
  cal = calibration.Calibration(**{k: saved["calibrated"][k] for k in calibration.Calibration().settings()})
  assert (cal.doc_norms, cal.lex_norms) == (0.25, 0.0) and cal.stop_df < 1
  assert cal.unk_drop == calibration.of(c, own=True).unk_drop == 0.5
  prepared = prepare.prepare(c.data)
  inputs = stage_inputs.load(run_dir)
  built = build_lib.build(c.model, inputs)
  params, _ = train.restore_params(run_dir, built, c, sharding.make_mesh(1, 1))
  params = jax.tree.map(np.array, params)
  params["encoder"]["tokens"]["embed"]["embedding"][1] *= 0.5  # <unk> is id 1

  def apply(x, method):
    return np.asarray(built.module.apply({"params": params}, x, method=getattr(built.module, method)))
  masked = lambda v: cal.claims(built, inputs, v)  # noqa: E731
  d = np.concatenate([apply(prepared.docs_words[i:i + 2048], "encode_docs")
                      for i in range(0, len(prepared.docs_words), 2048)])
  dim = c.model.out_dim
  norms = np.linalg.norm(d[:, :dim], axis=1)
  d = np.concatenate([d[:, :dim] * ((np.median(norms) / norms) ** 0.25)[:, None], d[:, dim:]], 1)
  bank = hubness.bank_rows(len(d), h["bank"], h["seed"])
  bank_scores = masked(apply(prepared.docs_words[bank, : c.data.claim_word_len], "encode_claims")) @ d.T
  bank_scores[np.arange(len(bank)), bank] = -np.inf
  penalties = {"documents": np.sort(bank_scores, axis=0)[::-1][: h["k"]].mean(0)}
  trained_on = prepared.source("train")  # the training claims as prepared (the code tokenises their texts again)
  train_scores = masked(apply(np.stack([trained_on[i]["claim_words"] for i in range(len(trained_on))]),
                              "encode_claims")) @ d.T
  penalties["train"] = np.sort(train_scores, axis=0)[::-1][: h["k"]].mean(0)

  def ndcg(split: str, beta: float, bank: str, hub: bool = False):
    src = prepared.source(split)
    examples = [src[i] for i in range(len(src))]
    scores = masked(apply(np.stack([e["claim_words"] for e in examples]), "encode_claims")) @ d.T
    scores = scores - beta * penalties[bank]
    top = np.argsort(-scores, axis=1, kind="stable")[:, :100]
    ids = [e["claim_id"].decode() for e in examples]
    run = {q: {prepared.doc_ids[r]: float(scores[i, r]) for r in top[i]} for i, q in enumerate(ids)}
    measures = pytrec_eval.RelevanceEvaluator({q: prepared.qrels[split][q] for q in ids}, {"ndcg_cut_10"}).evaluate(run)
    value = np.mean([m["ndcg_cut_10"] for m in measures.values()])
    return (value, collections.Counter(top[:, :10].ravel().tolist()).most_common(1)[0][1] / len(ids)) if hub else value
  assert set(h["banks"]) == {"documents", "train"}
  for bank, stored in h["banks"].items():
    dev = {f"{b:g}": ndcg("dev", b, bank, hub=True) for b in hubness.BETAS}  # beta 0 and four corrections
    np.testing.assert_allclose([stored["dev_curve"][b] for b in dev], [v[0] for v in dev.values()], atol=2e-3)
    assert all(abs(stored["dev_hub_curve"][b] - v[1]) <= 1 / len(prepared.source("dev")) for b, v in dev.items())
  # dev's choice: within a point of its best nDCG@10, the hub ceiling, over both banks (hubness.choose_bank, tested
  # in test_hubness.py)
  curves = {k: {float(b): (v["dev_curve"][b], v["dev_hub_curve"][b]) for b in v["dev_curve"]}
            for k, v in h["banks"].items()}
  assert (h["bank_from"], h["beta"]) == hubness.choose_bank(curves)
  assert h["dev_curve"] == h["banks"][h["bank_from"]]["dev_curve"]
  np.testing.assert_allclose(h["full_collection"]["ndcg@10"], ndcg("test", h["beta"], h["bank_from"]), atol=2e-3)


def test_the_hub_ceiling_is_checked_on_dev_and_unlabelled_claims_together(stage, data_dir):
  """_hub_norm's dev hub curve with held-out claims that have no labels (FEVER's NOT ENOUGH INFO claims, through the
  stage's own tokenisation): at every beta, the largest share of dev and those claims together with one document in
  their top 10, against NumPy; dev's nDCG@10 curve is the one without them."""
  c, root = stage
  run_dir = root / "work" / "cnn_student"
  config = c.copy_and_resolve_references()
  config.hub_norm.own_banks = ("documents",)
  prepared = prepare.prepare(config.data)
  loaded = restored.Restored.load(config, run_dir, prepared)
  built, params, mesh = loaded.built, loaded.params, loaded.mesh
  inputs = stage_inputs.load(run_dir)
  doc_vecs = search.encode_collection(built, params, prepared, mesh)
  texts = datasets.load(collection.from_config(_on(c, dataset="fever_titles")).data_cfg).unlabelled[:60]
  alone = evaluate._hub_norm(config, built, params, prepared, mesh, doc_vecs, "test", inputs, None, [])
  pooled = evaluate._hub_norm(config, built, params, prepared, mesh, doc_vecs, "test", inputs, None, texts)
  dev = prepared.source("dev")
  assert pooled["hub_claims"] == {"dev": len(dev), "unlabelled": 60} and alone["hub_claims"]["unlabelled"] == 0
  assert pooled["banks"]["documents"]["dev_curve"] == alone["banks"]["documents"]["dev_curve"]
  penalty = hubness.collection_penalty(built, params, doc_vecs, collection_eval.hub_norm_settings(config),
                                       lambda rows: prepared.docs_words[rows, : config.data.claim_word_len], mesh)
  d = np.asarray(doc_vecs)
  claims = np.concatenate([np.stack([dev[i]["claim_words"] for i in range(len(dev))]), inputs.claim_words(texts)])
  scores = np.asarray(built.module.apply({"params": params}, claims, method=built.module.encode_claims)) @ d.T
  for b in hubness.BETAS:
    top = np.argsort(-(scores - b * penalty), axis=1, kind="stable")[:, :10]
    share = collections.Counter(top.ravel().tolist()).most_common(1)[0][1] / len(claims)
    assert abs(pooled["banks"]["documents"]["dev_hub_curve"][f"{b:g}"] - share) <= 1 / len(claims)


def test_search_at_home_applies_the_training_claims_bank_dev_chose(stage, tmp_path, caplog):
  """Where dev chose the training claims as the hub correction's bank (eval_test.json's hub_norm, here written by
  hand at beta 1), mode=search on the stage's own collection lowers each document by its mean 10 best scores over
  the training claims, by NumPy on the stored vectors; searched as trained (no calibration at home), so the
  as-trained choice is the one read."""
  c, root = stage
  work = tmp_path / "work"
  shutil.copytree(root / "work", work)
  run_dir = work / "cnn_student"
  on = c.copy_and_resolve_references()
  on.search.doc_norms.own = on.search.lex_norms.own = on.search.unk_drop.own = 0.0
  on.search.stop_df = 1.0
  saved = json.loads((run_dir / "eval_test.json").read_text())
  saved["hub_norm"].update(bank_from="train", beta=1.0)
  (run_dir / "eval_test.json").write_text(json.dumps(saved))
  on.mode = "index"
  modes.run(on, str(work))
  on.mode, on.search.query, on.search.top_k = "search", "vitamin D deficiency and the risk of cancer", 5
  with caplog.at_level(logging.INFO):
    hits = modes.run(on, str(work))[0]
  texts = prepare.training_claims(c.data)
  assert f"over a bank of {len(texts)} claims (training claims)" in caplog.text
  inputs = stage_inputs.load(run_dir)
  built = build_lib.build(c.model, inputs)
  params, _ = train.restore_params(run_dir, built, c, sharding.make_mesh(1, 1))
  vecs, ids, _ = search.Index(indexing.index_root(run_dir, c.data.name, private=c.model.lexical_private)).read()
  vecs = np.asarray(vecs)
  encode = lambda t: np.asarray(built.module.apply({"params": params}, inputs.claim_words(t),  # noqa: E731
                                                   method=built.module.encode_claims))
  penalty = np.sort(encode(texts) @ vecs.T, axis=0)[::-1][: c.hub_norm.k].mean(0)
  want = encode([on.search.query])[0] @ vecs.T - penalty
  best = np.argsort(-want, kind="stable")[:5]
  assert [h[0] for h in hits] == [ids[i] for i in best]
  np.testing.assert_allclose([h[1] for h in hits], want[best], rtol=1e-4, atol=1e-4)
  root = indexing.index_root(run_dir, c.data.name, private=c.model.lexical_private)
  stored = json.loads((root / "hub_penalty_train.json").read_text())
  assert stored["bank_claims"] == len(texts)
  # A bank of claims asked for (search.hub_bank) takes the place of the one dev chose, averaged over hub_bank_k of
  # its best claims, at hub_bank_beta; the training claims' penalty stays stored beside it.
  bank_texts = ["vitamin D and cancer", "insulin resistance in diabetes"]
  (tmp_path / "bank.txt").write_text("\n".join(bank_texts))
  on.search.hub_bank, on.search.hub_bank_beta, on.search.hub_bank_k = str(tmp_path / "bank.txt"), 0.5, 1
  caplog.clear()
  with caplog.at_level(logging.INFO):
    hits = modes.run(on, str(work))[0]
  assert f"less 0.50 x its mean top-1 score over a bank of 2 claims ({tmp_path / 'bank.txt'})" in caplog.text
  want = encode([on.search.query])[0] @ vecs.T - 0.5 * (encode(bank_texts) @ vecs.T).max(0)
  best = np.argsort(-want, kind="stable")[:5]
  assert [h[0] for h in hits] == [ids[i] for i in best]
  np.testing.assert_allclose([h[1] for h in hits], want[best], rtol=1e-4, atol=1e-4)
  assert (root / "hub_penalty_train.npy").is_file() and (root / "hub_penalty_claims.npy").is_file()


def test_search_takes_the_hub_correction_dev_chose_for_it(tmp_path):
  hub = lambda beta: {"bank": 2000, "k": 10, "seed": 0, "beta": beta}  # noqa: E731
  config = cnn_student.get_config()
  config.model.lexical_private = 0  # the files below were made with every word hashed alike (no field: 0)
  cal = calibration.Calibration(doc_norms=0.25, stop_df=0.25)

  def beta_of(beta, beta_other, own, calibrated_as, bank_beta=None):  # as search_stage asks for it
    chosen = collection_eval.home_hub_norm(tmp_path, config, calibrated_as) if own else None
    return search_mode._hub_beta(beta, beta_other, own, chosen, calibrated_as, tmp_path, bank_beta)
  (tmp_path / "eval_test.json").write_text(json.dumps({"hub_norm": hub(0.0), "calibrated": {**cal.settings(),
                                                                                              "hub_norm": hub(0.25)}}))
  assert beta_of(-1.0, 0.5, True, cal) == 0.25
  assert beta_of(-1.0, 0.5, True, None) == 0.0  # searched as trained
  assert beta_of(-1.0, 0.5, False, cal) == 0.5  # another collection
  assert beta_of(0.75, 0.5, True, cal) == 0.75  # asked for
  # With a bank of claims (search.hub_bank), the beta chosen for such banks, at home or elsewhere, unless asked for.
  assert beta_of(-1.0, 0.5, False, cal, bank_beta=0.75) == 0.75
  assert beta_of(-1.0, 0.5, True, cal, bank_beta=0.0) == 0.0
  assert beta_of(0.25, 0.5, False, cal, bank_beta=0.75) == 0.25
  assert collection_eval.own_dev_hub_norm(tmp_path, cal) == {**hub(0.25), "bank_from": "documents"}
  # Stored before other banks existed: the documents' bank, asked for by name too.
  assert collection_eval.own_dev_hub_norm(tmp_path, cal, bank="documents") == {**hub(0.25), "bank_from": "documents"}
  assert collection_eval.own_dev_hub_norm(tmp_path, cal, bank="train") is None
  # Calibrated otherwise than dev chose at, or evaluated before the calibrated search had its own: no correction
  # (a beta chosen for other vectors is no choice for these), with a warning.
  other = calibration.Calibration(doc_norms=0.25, stop_df=0.25, lex_norms=1.0)
  assert beta_of(-1.0, 0.5, True, other) == 0.0
  (tmp_path / "eval_test.json").write_text(json.dumps({"hub_norm": hub(0.5), "calibrated": cal.settings()}))
  assert beta_of(-1.0, 0.0, True, cal) == 0.0
  assert collection_eval.own_dev_hub_norm(tmp_path) == {**hub(0.5), "bank_from": "documents"}
  # Dev chose the training claims as the bank: search applies that bank at its beta; another collection's diagnostic
  # reads the beta dev chose for the documents' bank, which it has.
  banks = {"documents": {"beta": 0.5}, "train": {"beta": 0.25}}
  (tmp_path / "eval_test.json").write_text(json.dumps({"hub_norm": {**hub(0.25), "bank_from": "train",
                                                                    "banks": banks}}))
  assert collection_eval.own_dev_hub_norm(tmp_path) == {**hub(0.25), "bank_from": "train"}
  assert collection_eval.own_dev_hub_norm(tmp_path, bank="documents") == {**hub(0.5), "bank_from": "documents"}
  assert collection_eval.own_dev_hub_norm(tmp_path, bank="train") == {**hub(0.25), "bank_from": "train"}
  assert beta_of(-1.0, 0.0, True, None) == 0.25
  assert collection_eval.home_hub_norm(tmp_path, config)["bank_from"] == "train"
  # Today's config no longer tries the training claims: search at home takes the documents' bank and its beta.
  config.hub_norm.own_banks = ("documents",)
  assert collection_eval.home_hub_norm(tmp_path, config) == {**hub(0.5), "bank_from": "documents"}
  assert beta_of(-1.0, 0.0, True, None) == 0.5
  # The documents won the joint choice at another beta than their own curve's best (the training claims' best being
  # no better): the beta asked for by bank is that bank's own choice, the joint choice is what search applies.
  banks = {"documents": {"beta": 0.75}, "train": {"beta": 0.25}}
  (tmp_path / "eval_test.json").write_text(json.dumps({"hub_norm": {**hub(0.5), "bank_from": "documents",
                                                                    "banks": banks}}))
  assert collection_eval.own_dev_hub_norm(tmp_path, bank="documents")["beta"] == 0.75
  assert collection_eval.home_hub_norm(tmp_path, config)["beta"] == 0.75  # today: the documents alone
  config.hub_norm.own_banks = ("documents", "train")
  assert collection_eval.home_hub_norm(tmp_path, config)["beta"] == 0.5
  # The same for the calibrated search, read from its own choice.
  (tmp_path / "eval_test.json").write_text(json.dumps({"hub_norm": hub(0.0), "calibrated": {
      **cal.settings(), "hub_norm": {**hub(0.75), "bank_from": "train", "banks": {**banks, "train": {"beta": 0.75}}}}}))
  assert collection_eval.home_hub_norm(tmp_path, config, cal) == {**hub(0.75), "bank_from": "train"}
  assert collection_eval.home_hub_norm(tmp_path, config) == {**hub(0.0), "bank_from": "documents"}
  assert beta_of(-1.0, 0.0, True, cal) == 0.75


@pytest.mark.parametrize("settings, message", [
    ({"hub_beta_other": -0.5}, r"^search\.hub_beta_other must be >= 0"),  # a negative hub beta elsewhere
    ({"hub_bank": "dev", "hub_bank_beta": 0.0}, r"^search\.hub_bank is set but search\.hub_bank_beta is 0"),
    ({"hub_bank_k": 0}, r"^search\.hub_bank_k must be a whole number >= 1"),  # a claim bank with a bad k
    ({"hub_bank_k": -3}, r"^search\.hub_bank_k must be a whole number >= 1"),
])
def test_bad_hub_settings_are_refused_before_anything_loads(tmp_path, settings, message):
  config = cnn_student.get_config()
  config.mode, config.search.query = "search", "a claim"
  config.search.update(settings)
  with pytest.raises(ValueError, match=message) as e:
    modes.run(config, str(tmp_path / "nothing_here"))
  assert "\n" not in str(e.value) and not (tmp_path / "nothing_here").exists()


def test_a_stored_zero_shot_result_is_current_only_at_todays_weights(tmp_path):
  config = cnn_student.get_config()
  config.model.lexical_private = 0  # the files below were made with every word hashed alike (no field: 0)
  config.search.unk_drop.other = 1.0  # unknown words out elsewhere, as configs/lstm_student.py takes them
  methods = list(config.hybrid.methods)
  weight = lambda w: {"weight": w, "full_collection": {"weight": w}}  # noqa: E731
  (tmp_path / "eval_test.json").write_text(json.dumps({
      "hybrid": {m: weight(0.6) for m in methods},
      "calibrated": {**calibration.of(config, own=True).settings(), "hybrid": {m: weight(0.8) for m in methods}}}))
  stored = {"hybrid": {m: weight(0.6) for m in methods}, "hub_norm": {"beta": 0.5},
            "calibrated": {**calibration.of(config, own=False).settings(),
                           "hybrid": {m: weight(0.8) for m in methods}}}
  # The claim-bank figure at today's hub_bank_beta is part of it where the collection has dev claims.
  assert not collection_eval.zero_shot_is_current(stored, tmp_path, config)
  assert collection_eval.zero_shot_is_current(stored, tmp_path, config, has_dev=False)
  k = config.search.hub_bank_k
  stored["calibrated"]["claim_bank"] = {"beta": config.search.hub_bank_beta / 2, "k": k}
  assert not collection_eval.zero_shot_is_current(stored, tmp_path, config)
  stored["calibrated"]["claim_bank"] = {"beta": config.search.hub_bank_beta, "k": k + 1}  # another k
  assert not collection_eval.zero_shot_is_current(stored, tmp_path, config)
  stored["calibrated"]["claim_bank"] = {"beta": config.search.hub_bank_beta, "k": k}
  assert collection_eval.zero_shot_is_current(stored, tmp_path, config)
  # Calibrated at other settings (here: before unknown words were taken out, and before the lexical norms were
  # pulled): evaluated again.
  before_unk = {**stored, "calibrated": {k: v for k, v in stored["calibrated"].items() if k != "unk_drop"}}
  assert not collection_eval.zero_shot_is_current(before_unk, tmp_path, config)
  older = {**stored, "calibrated": {k: v for k, v in before_unk["calibrated"].items() if k != "lex_norms"}}
  config.search.unk_drop.other = 0.0
  assert collection_eval.zero_shot_is_current(before_unk, tmp_path, config)
  assert not collection_eval.zero_shot_is_current(older, tmp_path, config)
  config.search.lex_norms.other = 0.0
  assert collection_eval.zero_shot_is_current(older, tmp_path, config)
  # Calibrated fusions made at the uncalibrated student's weights (before they had their own): evaluated again.
  assert not collection_eval.zero_shot_is_current({**stored, "calibrated": {"hybrid": stored["hybrid"]}}, tmp_path,
                                                  config)
  assert not collection_eval.zero_shot_is_current({k: v for k, v in stored.items() if k != "hub_norm"}, tmp_path,
                                                  config)
  assert not collection_eval.zero_shot_is_current({**stored, "hybrid": {"linear": weight(0.6)}}, tmp_path, config)
  config.search.doc_norms.other, config.search.stop_df, config.search.lex_norms.other = 0.0, 1.0, 0.0  # uncalibrated:
  # no calibrated figures needed
  assert collection_eval.zero_shot_is_current({k: v for k, v in stored.items() if k != "calibrated"}, tmp_path, config)

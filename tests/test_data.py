"""Readers, splits, BM25 candidates, tokenization, TFDS round trip and batches, on the real data."""

import json
import unicodedata

import numpy as np
import pytest

from kd_jax import pretrained
from kd_jax.data import beir, candidates, datasets, fever, pipeline, prepare, tokenize
from kd_jax.data.jsonl import DataFormatError

import configs.common as common_config


# ---------- FEVER ----------

def test_fever_counts(data_dir):
  dev = list(fever.read_claims(data_dir / "fever" / "paper_dev.jsonl"))
  pages = list(fever.read_claims(data_dir / "fever" / "paper_test_pages.jsonl"))
  assert len(dev) == len(pages) == 9999
  assert sum(c.verifiable for c in dev) == sum(c.verifiable for c in pages) == 6666
  assert len({p for c in dev for p in c.gold_pages}) == 1460
  assert all(not c.gold_pages for c in dev if not c.verifiable)  # NEI claims carry no relevance


def test_readable_titles_on_real_pages(data_dir):
  titles = {p for c in fever.read_claims(data_dir / "fever" / "paper_dev.jsonl") for p in c.gold_pages}
  assert fever.readable_title("Soul_Food_-LRB-film-RRB-") == "Soul Food (film)"
  assert "Star_Trek-COLON-_Discovery" in titles
  assert fever.readable_title("Star_Trek-COLON-_Discovery") == "Star Trek: Discovery"
  assert fever.readable_title("Park_Hae-jin") == "Park Hae-jin"  # a real hyphen survives
  readable = [fever.readable_title(t) for t in titles]
  assert not any("-LRB-" in t or "-COLON-" in t or "_" in t for t in readable)
  assert all(unicodedata.is_normalized("NFC", t) for t in readable)
  assert fever.readable_title("Beyonce\u0301") == "Beyonc\u00e9"  # combining accent composed (NFC)


def test_fever_titles_splits(data_dir):
  data = datasets.load_fever(data_dir / "fever" / "paper_test_pages.jsonl", data_dir / "fever" / "paper_dev.jsonl")
  s = data.splits
  assert len(data.collection) == 2892  # union of both files' gold pages
  assert len(s["test"]) == 6666 and s["test"].stats["claims_without_relevant"] == 3333
  assert len(s["train"]) + len(s["dev"]) == 6666
  assert 0.07 < len(s["dev"]) / 6666 < 0.13
  assert not set(s["train"].ids) & set(s["dev"].ids)
  assert s["test"].stats["gold_docs_missing"] == 0
  again = datasets.load_fever(data_dir / "fever" / "paper_test_pages.jsonl", data_dir / "fever" / "paper_dev.jsonl")
  assert again.splits["dev"].ids == s["dev"].ids  # the hash split is deterministic


def test_fever_unlabelled_claims_are_held_out_training_file_claims(data_dir):
  """The training file's NOT ENOUGH INFO claims, read here straight from the json lines: each once, none whose text a
  ranked training, dev or test claim also has, no test claim at all (they measure hubs beside dev's claims)."""
  train_rows, test_rows = ([json.loads(line) for line in (data_dir / "fever" / name).read_text().splitlines() if line]
                           for name in ("paper_test_pages.jsonl", "paper_dev.jsonl"))
  data = datasets.load_fever(data_dir / "fever" / "paper_test_pages.jsonl", data_dir / "fever" / "paper_dev.jsonl")
  nei = {r["claim"] for r in train_rows if r["label"] == "NOT ENOUGH INFO"}
  ranked = {t for split in data.splits.values() for t in split.texts}
  # of 3,333 such claims, 35 repeat a text and 21 more a ranked claim's
  assert len(data.unlabelled) == len(set(data.unlabelled)) == 3277
  assert set(data.unlabelled) == nei - ranked - {r["claim"] for r in test_rows}
  assert not datasets.load_beir(data_dir / "scifact").unlabelled  # a BEIR folder has none


def test_fever_wiki_dump_text(tmp_path, data_dir):
  # The dump is not on these machines; a two-page dump in FEVER's own layout stands in for it.
  wiki = tmp_path / "wiki-pages"
  wiki.mkdir()
  rows = [{"id": "", "text": "", "lines": ""},
          {"id": "Soul_Food_-LRB-film-RRB-", "text": "Soul Food is a 1997 film .", "lines": "0\tSoul Food ..."}]
  (wiki / "wiki-001.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
  data = datasets.load_fever(data_dir / "fever" / "paper_test_pages.jsonl", data_dir / "fever" / "paper_dev.jsonl",
                             wiki)
  i = data.collection.index["Soul_Food_-LRB-film-RRB-"]
  assert data.collection.document(i) == "Soul Food (film). Soul Food is a 1997 film ."


def test_malformed_jsonl_names_file_and_line(tmp_path):
  path = tmp_path / "claims.jsonl"
  path.write_text('{"id": 1, "claim": "a", "label": "NOT ENOUGH INFO", "evidence": []}\n{"id": 2, "claim": \n')
  with pytest.raises(DataFormatError, match=r"claims.jsonl:2: malformed JSON"):
    list(fever.read_claims(path))
  path.write_text('{"id": 1, "claim": "a", "label": "SUPPORTS", "evidence": [[[1, 2, null, 0]]]}\n')
  with pytest.raises(DataFormatError, match=r"claims.jsonl:1: .*names no evidence page"):
    list(fever.read_claims(path))


def test_missing_files_say_what_to_pass(tmp_path):
  with pytest.raises(FileNotFoundError, match="data.dir"):
    list(fever.read_claims(tmp_path / "nope.jsonl"))
  with pytest.raises(FileNotFoundError, match="KD_JAX_DATA_DIR"):
    datasets.resolve_data_dir(str(tmp_path / "absent"))
  with pytest.raises(FileNotFoundError, match="BEIR corpus"):
    list(beir.read_corpus(tmp_path))


# ---------- BEIR / SciFact ----------

def test_scifact_counts(data_dir):
  root = data_dir / "scifact"
  assert sum(1 for _ in beir.read_corpus(root)) == 5183
  assert sum(len(v) for v in beir.read_qrels(root, "train").values()) == 919
  assert sum(len(v) for v in beir.read_qrels(root, "test").values()) == 339
  data = datasets.load_beir(root)
  assert len(data.splits["test"]) == 300 and len(data.splits["train"]) + len(data.splits["dev"]) == 809


def test_gold_doc_missing_from_collection_is_counted(tmp_path, data_dir):
  # SciFact has no such claim; a copy with one qrels row pointing at an absent doc has.
  root = tmp_path / "beir"
  (root / "qrels").mkdir(parents=True)
  (root / "corpus.jsonl").write_text((data_dir / "scifact" / "corpus.jsonl").read_text())
  (root / "queries.jsonl").write_text((data_dir / "scifact" / "queries.jsonl").read_text())
  (root / "qrels" / "train.tsv").write_text((data_dir / "scifact" / "qrels" / "train.tsv").read_text())
  test = (data_dir / "scifact" / "qrels" / "test.tsv").read_text() + "1\tNO_SUCH_DOC\t1\n"
  (root / "qrels" / "test.tsv").write_text(test)
  data = datasets.load_beir(root)
  assert data.splits["test"].stats["gold_docs_missing"] == 1
  assert data.splits["test"].stats["claims_with_missing_gold"] == 1
  assert "NO_SUCH_DOC" in data.splits["test"].qrels["1"]  # kept: recall must count what cannot be found
  (root / "qrels" / "test.tsv").write_text(test + "1\t31715818\tx\n")
  with pytest.raises(DataFormatError, match=r"test.tsv:\d+: relevance 'x'"):
    datasets.load_beir(root)


# ---------- BM25 ----------

@pytest.fixture(scope="module")
def scifact(data_dir):
  data = datasets.load_beir(data_dir / "scifact")
  return data, candidates.BM25Index(data.collection)


def test_bm25_scifact_matches_beir(scifact):
  from kd_jax import metrics
  data, index = scifact
  test = data.splits["test"]
  rows, scores = index.search(test.texts, 100)
  run = {q: {data.collection.ids[r]: float(s) for r, s in zip(rows[i], scores[i])} for i, q in enumerate(test.ids)}
  result = metrics.evaluate_run(run, test.qrels, ks=(10,))
  print(f"BM25 SciFact test nDCG@10 = {result['ndcg@10']:.4f} (BEIR: 0.665)")
  assert abs(result["ndcg@10"] - 0.665) < 0.03


def test_bm25_recall_floors(scifact, data_dir):
  data, index = scifact
  fever_data = datasets.load_fever(data_dir / "fever" / "paper_test_pages.jsonl",
                                   data_dir / "fever" / "paper_dev.jsonl")
  fever_index = candidates.BM25Index(fever_data.collection)
  # Floors sit ~0.02 under what was measured (SciFact 0.858/0.853/0.863, FEVER-titles 0.948/0.937/0.946).
  floors = {"scifact": (data, index, 0.83), "fever_titles": (fever_data, fever_index, 0.92)}
  for name, (d, idx, floor) in floors.items():
    for split in ("train", "dev", "test"):
      c = candidates.candidates_for(idx, d.splits[split], 20, force_gold=False)
      print(f"BM25 recall@20 {name}/{split}: {candidates.recall_at_k(c):.4f}")
      assert candidates.recall_at_k(c) > floor


def test_forced_gold_replaces_lowest_candidates(scifact):
  data, index = scifact
  train = data.splits["train"]
  natural = candidates.candidates_for(index, train, 5, force_gold=False)
  forced = candidates.candidates_for(index, train, 5, force_gold=True)
  assert candidates.recall_at_k(forced) == pytest.approx(1.0)
  doc_index = data.collection.index
  for i in range(len(train)):
    gold = {doc_index[d] for d in train.qrels[train.ids[i]]}
    nat = [int(d) for d in natural.index[i]]
    kept_gold = [d for d in nat if d in gold]
    n_forced = min(5, len(gold)) - len(kept_gold)
    non_gold = [d for d in nat if d not in gold]
    # Every gold doc is in (up to K); only the lowest-ranked non-gold candidates made room.
    assert set(forced.index[i].tolist()) >= set(kept_gold) | set(non_gold[: len(non_gold) - n_forced])
    assert (forced.labels[i] > 0).sum() == min(5, len(gold))


# ---------- tokenization ----------

def test_wordpiece_real_ids():
  tok = tokenize.load_wordpiece(pretrained.hf_model_dir())
  ids = tokenize.wordpiece_ids(tok, ["A man is eating food.", "protein"], 8)
  assert 100 not in ids[0]  # no [UNK]: the transformers-5 vocab_file trap maps everything to 100
  assert ids[0, 4] == tok.token_to_id("food") and ids[1, 0] == tok.token_to_id("protein")
  assert tok.token_to_id("[CLS]") == 101 and tok.token_to_id("[SEP]") == 102


def test_pack_pairs_matches_python_reference():
  rng = np.random.default_rng(0)
  claims = np.zeros((3, 6), np.int32)
  docs = np.zeros((3, 2, 9), np.int32)
  for i in range(3):
    claims[i, : rng.integers(1, 7)] = rng.integers(1000, 2000, 6)[: 1]
    for j in range(2):
      n = int(rng.integers(0, 10))
      docs[i, j, :n] = rng.integers(2000, 3000, n)
  claims[0, :6] = np.arange(1000, 1006)
  max_len = 12
  ids, types, mask = tokenize.pack_pairs(claims, docs, max_len)
  for i in range(3):
    for j in range(2):
      c = [t for t in claims[i] if t][: max_len - 3]
      d = [t for t in docs[i, j] if t][: max_len - 3 - len(c)]
      want = [101] + c + [102] + d + [102]
      assert list(ids[i, j, : len(want)]) == want and not ids[i, j, len(want):].any()
      assert list(types[i, j, : len(want)]) == [0] * (len(c) + 2) + [1] * (len(d) + 1)
      assert mask[i, j].sum() == len(want)


def test_word_vocab():
  vocab = tokenize.build_vocab(["The cat sat.", "the dog, the cat"], 5)
  assert vocab == ["<pad>", "<unk>", "the", "cat", ","]  # frequency, then code point order
  ids = tokenize.word_ids({w: i for i, w in enumerate(vocab)}, ["The zebra sat"], 4)
  assert ids.tolist() == [[2, 1, 1, 0]]


def test_oov_buckets_hash_words_apart():
  import zlib
  vocab = {w: i for i, w in enumerate(["<pad>", "<unk>", "the", "cat"])}
  ids = tokenize.word_ids(vocab, ["The zebra sat on the zebra", "the okapi"], 8, oov_buckets=7)
  bucket = {w: 4 + zlib.crc32(w.encode()) % 7 for w in ("zebra", "sat", "on", "okapi")}  # independent of oov_id
  assert ids.tolist() == [[2, bucket["zebra"], bucket["sat"], bucket["on"], 2, bucket["zebra"], 0, 0],
                          [2, bucket["okapi"], 0, 0, 0, 0, 0, 0]]
  assert ids.max() < 4 + 7


@pytest.mark.parametrize("buckets", [0, 7])
def test_coverage_is_the_share_of_known_words(buckets):
  vocab = {w: i for i, w in enumerate(["<pad>", "<unk>", "the", "cat"])}
  texts = ["The zebra sat on the cat", "the cat", "okapi", ""]
  ids = tokenize.word_ids(vocab, texts, 8, oov_buckets=buckets)
  expected = []
  for t in texts:  # counted on the words themselves, not on ids
    ws = tokenize.words(t)[:8]
    expected.append(sum(w in vocab for w in ws) / len(ws) if ws else 0.0)
  np.testing.assert_allclose(tokenize.coverage(ids, len(vocab)), expected)
  assert expected == [0.5, 1.0, 0.0, 0.0]


@pytest.mark.slow  # trains, prepares real data or compiles large steps: seconds each
def test_oov_buckets_share_the_teachers_scores_key(data_dir, tmp_path):
  """A cache that differs only in the students' word inputs has its own folder but the teacher's scores key of the
  default cache, so a student with hashed rare words or longer documents reuses the teacher's scores."""
  base = common_config.data_config()
  base.dir, base.cache_dir = str(data_dir), str(tmp_path)
  common_config.shrink_data(base)
  hashed = base.copy_and_resolve_references()
  hashed.oov_buckets, hashed.doc_word_len = 64, 96
  a, b = prepare.prepare(base), prepare.prepare(hashed)
  assert a.root != b.root and a.scores_key == b.scores_key
  default = common_config.data_config()
  default.dir = str(data_dir)
  # Caches made with the first student settings keep storing scores under their own name (existing teachers').
  assert prepare.scores_key(default) == f"scifact-{prepare.fingerprint(default)}"
  assert b.oov_buckets == 64 and a.oov_buckets == 0
  words = b.docs_words
  assert words.max() >= len(b.vocab) and words.max() < len(b.vocab) + 64  # some rare words hashed
  assert not (words == 1).any()  # no shared <unk> left
  np.testing.assert_array_equal(np.where(a.docs_words[:, :48] == 1, -1, a.docs_words[:, :48]),
                                np.where(b.docs_words[:, :48] >= len(b.vocab), -1, b.docs_words[:, :48]))


# ---------- prepared TFDS dataset and batches ----------

@pytest.fixture(scope="module")
def prepared(data_dir, tmp_path_factory):
  cfg = common_config.data_config()
  cfg.dir = str(data_dir)
  cfg.cache_dir = str(tmp_path_factory.mktemp("cache"))
  cfg.num_candidates = 10
  return cfg, prepare.prepare(cfg)


@pytest.mark.slow  # trains, prepares real data or compiles large steps: seconds each
def test_tfds_round_trip(prepared, scifact):
  cfg, p = prepared
  data, index = scifact
  test = data.splits["test"]
  src = p.source("test")
  assert len(src) == 300 and len(p.source("train")) + len(p.source("dev")) == 809
  expect = candidates.candidates_for(index, test, 10, force_gold=False)
  row = {q: i for i, q in enumerate(test.ids)}
  for k in (0, 17, 299):
    ex = src[k]
    i = row[ex["claim_id"].decode()]
    np.testing.assert_array_equal(ex["cand_index"], expect.index[i])
    np.testing.assert_array_equal(ex["cand_labels"], expect.labels[i])
    assert ex["num_relevant"] == len(test.qrels[test.ids[i]])
    assert not ex["is_pseudo"] and not ex["teacher_scores"].any()
  assert p.meta["splits"]["test"]["bm25_recall_at_k"] > 0.8
  assert p.meta["splits"]["train"]["candidate_recall"] == pytest.approx(1.0)
  assert prepare.prepare(cfg).root == p.root  # second call reuses the folder


def test_train_batches_deterministic_and_resumable(prepared):
  _, p = prepared
  make = lambda: pipeline.TrainBatches(p.source("train"), 8, seed=3, transform=pipeline.gather_transform(p, "words"))
  a, b = make(), make()
  stream = b.iterate(start_step=a.steps_per_epoch - 1)  # crosses an epoch boundary
  for step in range(a.steps_per_epoch - 1, a.steps_per_epoch + 2):
    got = next(stream)
    np.testing.assert_array_equal(got["claim_words"], a[step]["claim_words"])
  batch = a[0]
  np.testing.assert_array_equal(batch["doc_words"], p.docs_words[batch["cand_index"]])
  epoch0 = {c for s in range(a.steps_per_epoch) for c in a[s]["claim_id"]}
  assert len(epoch0) == a.steps_per_epoch * 8  # no example twice within an epoch
  halves = [pipeline.TrainBatches(p.source("train"), 8, 3, lambda x: x, i, 2)[5]["claim_id"] for i in (0, 1)]
  # Two hosts share one global batch, each a contiguous block, so the assembled batch has one host's row order.
  np.testing.assert_array_equal(np.concatenate(halves), a[5]["claim_id"])


def test_eval_batches_cover_split_once(prepared):
  _, p = prepared
  src = p.source("dev")
  batches = list(pipeline.eval_batches(src, 16, pipeline.gather_transform(p, "pairs", pair_len=64)))
  ids = np.concatenate([b["claim_id"][b["row_mask"]] for b in batches])
  assert len(ids) == len(src) == len(set(ids))
  assert batches[0]["pair_ids"].shape == (16, 10, 64)


def test_datasets_by_name_and_unknown_names(tmp_path):
  assert set(datasets.LOADERS) >= {"fever_titles", "fever", "scifact", "beir"}
  cfg = common_config.data_config()
  cfg.name = "msmarco"
  with pytest.raises(ValueError, match=r"Unknown data.name 'msmarco': use one of fever_titles, fever, scifact, beir"):
    datasets.load(cfg)
  datasets.register("tiny_for_test", lambda c: ("loaded", c.name))  # a dataset defined elsewhere, by name
  try:
    cfg.name = "tiny_for_test"
    assert datasets.load(cfg) == ("loaded", "tiny_for_test")
  finally:
    del datasets.LOADERS["tiny_for_test"]

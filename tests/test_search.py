"""Full-collection dense search: sharded exact top-k == NumPy brute force; index -> search round trip."""

import jax
import numpy as np
import pytest

from configs import cnn_student, lstm_student
from kd_jax import search, sharding
from kd_jax.data import prepare
from kd_jax.models import build as build_lib


@pytest.fixture(scope="module")
def setup(data_dir, tmp_path_factory):
  c = cnn_student.get_config("smoke")
  c.data.dir = str(data_dir)
  c.data.cache_dir = str(tmp_path_factory.mktemp("cache"))
  prepared = prepare.prepare(c.data)
  return c, prepared


@pytest.mark.slow  # trains, prepares real data or compiles large steps: seconds each
@pytest.mark.parametrize("module,scoring", [(cnn_student, "dot"), (lstm_student, "cosine")])
def test_sharded_top_k_equals_numpy_brute_force(module, scoring, setup):
  c, prepared = setup
  mcfg = module.get_config("smoke").model
  mcfg.scoring = scoring
  mcfg.embed_oov = False  # the CNN's prepared data: out-of-vocabulary words are hashed ids without rows
  built = build_lib.build(mcfg, prepared)
  params = built.init(jax.random.key(0))
  mesh = sharding.make_mesh(-1, 1)  # 8 devices: 5,183 documents do not split evenly, padding is exercised
  docs = prepared.docs_words[:1203]  # a real subset keeps the BiLSTM quick
  doc_vecs = search._encode_rows(built, params, docs, mesh, 256, "encode_docs")
  claims = np.stack([prepared.source("test")[i]["claim_words"] for i in range(20)])
  claim_vecs = search.encode_claims(built, params, claims, mesh)
  # Encoding in batches on 8 devices gives the same vectors as one plain apply.
  direct = built.module.apply({"params": params}, docs[:7], method=built.module.encode_docs)
  np.testing.assert_allclose(doc_vecs[:7], np.asarray(direct), atol=1e-5, rtol=1e-5)
  scores, rows = search.top_k(built, params, claim_vecs, doc_vecs, 10, mesh)
  brute = claim_vecs @ doc_vecs.T
  if scoring == "cosine":  # of the dense part; the lexical channel's buckets (after out_dim) stay a dot product
    norm = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)
    d = mcfg.out_dim
    brute = (float(params["cosine_scale"]) * norm(claim_vecs[:, :d]) @ norm(doc_vecs[:, :d]).T
             + claim_vecs[:, d:] @ doc_vecs[:, d:].T)
  want_rows = np.argsort(-brute, axis=1, kind="stable")[:, :10]
  np.testing.assert_allclose(scores, np.take_along_axis(brute, want_rows, 1), rtol=1e-4, atol=1e-4)
  assert (rows < 1203).all()
  assert (rows == want_rows).mean() > 0.99  # near-ties may swap in float32
  # In chunks (a memory-mapped table, 3 chunks of 400 rows + a padded last one): the same top 10.
  table = np.lib.format.open_memmap(setup[1].root.parent / f"vecs_{scoring}.npy", mode="w+", dtype=np.float32,
                                    shape=doc_vecs.shape)
  table[:] = doc_vecs
  chunked_scores, chunked_rows = search.top_k(built, params, claim_vecs, table, 10, mesh, chunk_rows=397)
  np.testing.assert_array_equal(chunked_rows, rows)
  np.testing.assert_allclose(chunked_scores, scores, rtol=1e-6, atol=1e-6)


def test_chunked_top_k_merges_ties_and_padding_like_one_top_k():
  """Constructed scores with ties across chunk borders: the merge keeps the lower rows, padding never appears."""
  class Dot:  # the `built` interface top_k uses: module.apply(..., method=module.score)
    class module:  # noqa: N801
      score = "score"

      @staticmethod
      def apply(_, claims, docs, method):
        return claims @ docs.T
  docs = np.array([[1.0], [3.0], [3.0], [2.0], [3.0], [0.5], [3.0]], np.float32)  # ties at rows 1, 2, 4, 6
  claims = np.array([[1.0], [-1.0]], np.float32)
  mesh = sharding.make_mesh(1, 1)
  for chunk in (1, 2, 3, 7, 100):
    scores, rows = search.top_k(Dot, {}, claims, docs, 5, mesh, chunk_rows=chunk)
    assert rows.tolist() == [[1, 2, 4, 6, 3], [5, 0, 3, 1, 2]], chunk
    np.testing.assert_array_equal(scores[0], [3, 3, 3, 3, 2])


@pytest.mark.slow  # trains, prepares real data or compiles large steps: seconds each
def test_index_then_search_matches_direct_scoring(setup, tmp_path):
  c, prepared = setup
  built = build_lib.build(c.model, prepared)
  params = built.init(jax.random.key(1))
  mesh = sharding.make_mesh(-1, 1)
  doc_vecs = search.encode_collection(built, params, prepared, mesh)
  index = search.Index(tmp_path / "index")
  index.write(doc_vecs, prepared.doc_ids, {"prepared": prepared.root.name})
  stored, ids, _ = index.read()
  assert ids == prepared.doc_ids
  text = "Vitamin D deficiency is associated with an increased risk of cancer."
  q = search.claim_word_ids([text], prepared.vocab, c.data.claim_word_len)
  scores, rows = search.top_k(built, params, search.encode_claims(built, params, q, mesh), stored, 5, mesh)
  # Direct: the model's own __call__ scoring the claim against every document, no stored vectors.
  direct = np.asarray(built.module.apply({"params": params}, q, prepared.docs_words[None]))[0]
  np.testing.assert_array_equal(rows[0], np.argsort(-direct, kind="stable")[:5])
  np.testing.assert_allclose(scores[0], np.sort(direct)[::-1][:5], rtol=1e-4, atol=1e-4)


def test_unsearchable_claims_get_clear_errors(setup, tmp_path):
  _, prepared = setup
  with pytest.raises(ValueError, match="Empty claim"):
    search.claim_word_ids(["   "], prepared.vocab, 32)
  with pytest.raises(ValueError, match="No word of the claim"):
    search.claim_word_ids(["qwxzv zzkjq"], prepared.vocab, 32)
  with pytest.raises(FileNotFoundError, match="mode=index"):
    search.Index(tmp_path / "none").read()


def test_known_ranking_gives_known_figures():
  """evaluate.rerank_metrics and full_collection_metrics on rankings worked out by hand."""
  from kd_jax import evaluate
  # Claim 0: gold at rank 2 of 4 -> MRR 1/2, AP 1/2, nDCG@10 = (1/log2 3) / 1.
  # Claim 1: gold at ranks 1 and 3, a third gold doc outside the candidates (num_relevant 3)
  #   -> MRR 1, AP (1 + 2/3) / 3, recall@1 1/3, nDCG@10 = (1 + 1/2) / (1 + 1/log2 3 + 1/2).
  pred = {"scores": np.array([[0.9, 0.8, 0.1, 0.0], [5.0, 4.0, 3.0, -1.0]]),
          "labels": np.array([[0, 1, 0, 0], [1, 0, 1, 0]]), "mask": np.ones((2, 4), bool),
          "num_relevant": np.array([1, 3])}
  m = evaluate.rerank_metrics(pred)
  ndcg0 = 1 / np.log2(3)
  ndcg1 = 1.5 / (1 + 1 / np.log2(3) + 0.5)
  assert m["mrr@10"] == pytest.approx((0.5 + 1.0) / 2)
  assert m["map"] == pytest.approx((0.5 + (1 + 2 / 3) / 3) / 2)
  assert m["ndcg@10"] == pytest.approx((ndcg0 + ndcg1) / 2)
  assert m["recall@1"] == pytest.approx((0 + 1 / 3) / 2)
  full = search.full_collection_metrics(np.array([[3.0, 2.0, 1.0]]), np.array([[2, 0, 1]]), ["q"],
                                        ["d0", "d1", "d2"], {"q": {"d0": 1}})
  assert full["mrr@10"] == pytest.approx(0.5) and full["recall@1"] == 0.0 and full["recall@5"] == 1.0

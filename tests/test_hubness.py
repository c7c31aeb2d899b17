"""Querybank hub correction: penalties against a loop reference, biased search against brute force, and a planted hub
that stops answering every claim."""

import numpy as np
import pytest

from kd_jax import collection_eval, hubness, search, sharding


class Dot:  # the `built` interface search and hubness use: module.apply(..., method=module.score)
  class module:  # noqa: N801
    score = "score"

    @staticmethod
    def apply(_, claims, docs, method):  # [Q, N] docs shared by every claim, or [Q, U, D] each claim's own
      return claims @ docs.T if docs.ndim == 2 else (claims[:, None, :] * docs).sum(-1)


def _penalty_reference(bank_vecs, bank, docs, k):
  out = []
  for d in range(len(docs)):
    scores = sorted((float(bank_vecs[b] @ docs[d]) for b in range(len(bank)) if bank[b] != d), reverse=True)
    out.append(np.mean(scores[:k]))
  return np.array(out)


def test_bank_rows_are_a_fixed_sample():
  rows = hubness.bank_rows(1000, 50, seed=3)
  assert len(set(rows.tolist())) == 50 and (np.diff(rows) > 0).all() and rows.max() < 1000
  np.testing.assert_array_equal(rows, hubness.bank_rows(1000, 50, seed=3))
  assert not np.array_equal(rows, hubness.bank_rows(1000, 50, seed=4))
  np.testing.assert_array_equal(hubness.bank_rows(7, 50), np.arange(7))


@pytest.mark.parametrize("chunk", [3, 16, 1000])
def test_penalty_leaves_out_each_documents_own_query(chunk):
  rng = np.random.default_rng(0)
  docs = rng.normal(size=(40, 6)).astype(np.float32)
  bank = hubness.bank_rows(40, 12, seed=1)
  bank_vecs = docs[bank] * 2.0  # a query cut from a document scores that document highest: it must not count
  got = hubness.doc_penalty(Dot, {}, bank_vecs, bank, docs, k=3, chunk_rows=chunk)
  np.testing.assert_allclose(got, _penalty_reference(bank_vecs, bank, docs, 3), rtol=1e-5, atol=1e-5)


def test_biased_search_equals_brute_force():
  rng = np.random.default_rng(1)
  docs = rng.normal(size=(57, 5)).astype(np.float32)
  claims = rng.normal(size=(9, 5)).astype(np.float32)
  bias = rng.normal(size=57).astype(np.float32)
  brute = claims @ docs.T - bias[None]
  want = np.argsort(-brute, axis=1, kind="stable")[:, :6]
  mesh = sharding.make_mesh(1, 1)
  for chunk in (10, 57, 1000):
    scores, rows = search.top_k(Dot, {}, claims, docs, 6, mesh, chunk_rows=chunk, doc_bias=bias)
    np.testing.assert_array_equal(rows, want)
    np.testing.assert_allclose(scores, np.take_along_axis(brute, want, 1), rtol=1e-5, atol=1e-5)


def test_a_planted_hub_stops_answering_every_claim():
  """One long document (a large norm along the direction every vector shares) tops every claim's list; the
  correction removes it, and the claims get their own nearest documents back."""
  rng = np.random.default_rng(2)
  common = np.ones(16) / 4.0
  docs = rng.normal(size=(300, 16)) * 0.5 + common
  docs[7] = common * 10.0  # the hub
  source = rng.choice(np.setdiff1d(np.arange(300), [7]), 40, replace=False)
  claims = docs[source] + rng.normal(size=(40, 16)) * 0.1
  docs, claims = docs.astype(np.float32), claims.astype(np.float32)
  mesh = sharding.make_mesh(1, 1)
  _, rows = search.top_k(Dot, {}, claims, docs, 10, mesh)
  hub = collection_eval.hub_share(rows)
  assert hub["row"] == 7 and hub["max_share"] >= 0.75
  bank = hubness.bank_rows(300, 100, seed=0)
  penalty = hubness.doc_penalty(Dot, {}, docs[bank], bank, docs, k=10)
  assert int(np.argmax(penalty)) == 7
  _, fixed = search.top_k(Dot, {}, claims, docs, 10, mesh, doc_bias=1.0 * penalty)
  assert (fixed == 7).any(axis=1).mean() < 0.1
  assert (fixed[:, 0] == source).mean() > (rows[:, 0] == source).mean()


def test_hub_share_counts_claims_and_can_skip_filler_rows():
  rows = np.array([[5, 1, 2], [5, 3, 4], [6, 5, 1], [7, 0, 1]])
  assert collection_eval.hub_share(rows, k=1) == {"k": 1, "max_share": 0.5, "row": 5}
  assert collection_eval.hub_share(rows, k=2) == {"k": 2, "max_share": 0.75, "row": 5}
  assert collection_eval.hub_share(rows, k=3) == {"k": 3, "max_share": 0.75, "row": 1}  # ties: the lower row
  # Rows past a list's real hits (BM25's zero-score filler) are not a hub.
  filler = np.array([[1, 0], [2, 0], [3, 0], [4, 5]])
  assert collection_eval.hub_share(filler, k=2)["max_share"] == 0.75
  valid = np.array([[True, False], [True, False], [True, False], [True, True]])
  assert collection_eval.hub_share(filler, k=2, valid=valid)["max_share"] == 0.25
  assert collection_eval.hub_share(filler, k=2, valid=np.zeros((4, 2), bool))["max_share"] == 0.0


@pytest.mark.parametrize("k", [2, 10])
def test_a_bank_of_claims_leaves_none_out(k):
  """A bank of real claims (search.hub_bank): each document's mean of its k best scores over every bank claim (all of
  them when the bank is smaller than k), by a loop."""
  rng = np.random.default_rng(4)
  docs = rng.normal(size=(30, 6)).astype(np.float32)
  claims = rng.normal(size=(5, 6)).astype(np.float32)
  got = hubness.claims_penalty(Dot, {}, claims, docs, k)
  want = [np.mean(sorted((float(c @ d) for c in claims), reverse=True)[:k]) for d in docs]
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_choose_beta_puts_quality_first_then_the_hub_ceiling():
  dev = {0.0: (0.815, 0.09), 0.25: (0.82, 0.06), 0.5: (0.812, 0.05), 0.75: (0.811, 0.04), 1.0: (0.70, 0.01)}
  # Within a point of the best nDCG@10 (0.82): 0, 0.25, 0.5, 0.75; of those under 5%, 0.5 has the better nDCG@10.
  # 1.0 meets the ceiling best but costs 12 points: not taken.
  assert hubness.choose_beta(dev, 0.05) == 0.5
  assert hubness.choose_beta(dev, 1.0) == 0.25  # no ceiling binds: dev's best nDCG@10
  # None within a point meets the ceiling: the smallest hub among them (0.75), not the cheapest hub overall (1.0).
  assert hubness.choose_beta(dev, 0.03) == 0.75
  assert hubness.choose_beta(dev, 0.03, tolerance=0.2) == 1.0
  # Ties go to the milder correction: equal nDCG@10 under the ceiling, and equal hubs over it.
  assert hubness.choose_beta({0.0: (0.8, 0.01), 0.5: (0.8, 0.01)}, 0.05) == 0.0
  assert hubness.choose_beta({0.0: (0.8, 0.2), 0.5: (0.8, 0.1), 1.0: (0.795, 0.1)}, 0.05) == 0.5


def test_choose_bank_applies_the_beta_rule_over_every_bank():
  curves = {"documents": {0.0: (0.80, 0.08), 0.25: (0.81, 0.06), 0.5: (0.79, 0.05)},
            "train": {0.0: (0.80, 0.08), 0.25: (0.812, 0.04), 0.5: (0.80, 0.03)}}
  # Within a point of the best (0.812): documents 0.25 and train 0.25; under 5%: train 0.25 only.
  assert hubness.choose_bank(curves, 0.05) == ("train", 0.25)
  # No ceiling binding: the best nDCG@10 (train 0.25).
  assert hubness.choose_bank(curves, 1.0) == ("train", 0.25)
  # Beta 0 is no correction in any bank: a tie goes to the smaller beta, then to the bank listed first.
  assert hubness.choose_bank({"documents": {0.0: (0.8, 0.01), 0.5: (0.8, 0.01)},
                              "train": {0.0: (0.8, 0.01), 0.25: (0.8, 0.01)}}, 0.05) == ("documents", 0.0)
  assert hubness.choose_bank({"documents": {0.0: (0.8, 0.2), 0.5: (0.8, 0.1)},
                              "train": {0.0: (0.8, 0.2), 0.5: (0.8, 0.1)}}, 0.05) == ("documents", 0.5)
  # The joint choice need not be either bank's own: documents alone take 0.5 (under the ceiling), but the training
  # claims' best (0.83 at 0.25) moves the point, and 0.5 (0.812) falls outside it.
  curves = {"documents": {0.0: (0.80, 0.08), 0.25: (0.82, 0.06), 0.5: (0.812, 0.04)},
            "train": {0.0: (0.80, 0.08), 0.25: (0.83, 0.04)}}
  assert hubness.choose_beta(curves["documents"], 0.05) == 0.5
  assert hubness.choose_bank(curves, 0.05) == ("train", 0.25)

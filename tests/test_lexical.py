"""The lexical channel (models/lexical.py): buckets, max-pooled term weights, the exact-match dot product, and the
students that carry it (width, padding invariance, claim independence, gradients, refusals)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kd_jax.models import lexical, registry, students


def _np_buckets(ids, dim):
  return ((ids.astype(np.uint64) * 0x9E3779B1) % 2**32 >> (32 - (dim.bit_length() - 1))).astype(np.int64)


def test_buckets_match_numpy_and_spread_evenly():
  ids = np.arange(200_000, dtype=np.int32)
  got = np.asarray(lexical.buckets(jnp.asarray(ids), 4096))
  np.testing.assert_array_equal(got, _np_buckets(ids, 4096))
  counts = np.bincount(got, minlength=4096)
  assert counts.min() > 0.9 * counts.mean() and counts.max() < 1.1 * counts.mean()
  # Consecutive ids (a vocabulary's most frequent words) land apart: no two of the first 2,000 share a bucket
  # more often than chance would have them (birthday bound ~ 2000^2 / (2 * 4096) = 488 pairs).
  assert len(np.unique(got[:2000])) > 2000 - 488


@pytest.mark.parametrize("dim", [-4, 3, 100])
def test_bad_dim_is_refused(dim):
  with pytest.raises(ValueError, match="power of two"):
    lexical.check_dim(dim)


def test_lexical_vectors_match_numpy():
  rng = np.random.default_rng(0)
  ids = rng.integers(0, 60, size=(5, 12)).astype(np.int32)
  ids[:, 9:] = 0  # trailing padding
  weights = rng.uniform(0.1, 2.0, size=ids.shape).astype(np.float32)
  dim = 16  # small, so buckets collide and the max really chooses
  want = np.zeros((5, dim), np.float32)
  for n in range(5):
    for i, w in zip(ids[n], weights[n]):
      if i > 1:
        b = _np_buckets(np.array([i]), dim)[0]
        want[n, b] = max(want[n, b], w)
  got = lexical.lexical_vectors(jnp.asarray(ids), jnp.asarray(weights), dim)
  np.testing.assert_allclose(got, want, rtol=1e-6)


def test_dot_product_is_sum_over_shared_words_of_weight_products():
  dim = 4096
  vocab = np.arange(2, 400)
  vocab = vocab[np.unique(_np_buckets(vocab, dim), return_index=True)[1]]  # words with buckets of their own
  claim = np.array([[vocab[3], vocab[7], vocab[7], 1, vocab[11], 0, 0]], np.int32)  # <unk> and padding ignored
  doc = np.array([[vocab[7], vocab[5], 1, vocab[3], vocab[7], vocab[40], 0]], np.int32)
  cw = np.array([[0.5, 1.0, 3.0, 9.0, 2.0, 7.0, 7.0]], np.float32)
  dw = np.array([[0.25, 4.0, 9.0, 2.0, 1.5, 1.0, 7.0]], np.float32)
  c = lexical.lexical_vectors(jnp.asarray(claim), jnp.asarray(cw), dim)
  d = lexical.lexical_vectors(jnp.asarray(doc), jnp.asarray(dw), dim)
  # Shared words: vocab[3] (0.5 x 2.0) and vocab[7] (max 3.0 x max 1.5); <unk> matches nothing.
  np.testing.assert_allclose(float(c[0] @ d[0]), 0.5 * 2.0 + 3.0 * 1.5, rtol=1e-6)


def _student(kind, **over):
  common = dict(vocab_size=50, embed_dim=8, out_dim=6, dropout_rate=0.2, lexical_dim=64) | over
  if kind == "cnn":
    return students.CNNStudent(students.CNNConfig(widths=(1, 3), num_filters=5, **common))
  return students.BiLSTMStudent(students.BiLSTMConfig(hidden=4, **common))


@pytest.mark.parametrize("kind", ["cnn", "lstm"])
def test_student_vectors_carry_the_channel_and_stay_claim_independent(kind):
  model = _student(kind)
  rng = np.random.default_rng(1)
  claims = rng.integers(2, 50, size=(2, 5)).astype(np.int32)
  docs = rng.integers(2, 50, size=(2, 3, 7)).astype(np.int32)
  docs[..., 5:] = 0
  params = model.init(jax.random.key(0), claims, docs)
  cv = model.apply(params, claims, method=model.encode_claims)
  dv = model.apply(params, docs, method=model.encode_docs)
  assert cv.shape == (2, 6 + 64) and dv.shape == (2, 3, 6 + 64)
  assert float(jnp.min(dv[..., 6:])) >= 0 and float(jnp.max(dv[..., 6:])) > 0
  np.testing.assert_allclose(model.apply(params, claims, docs), jnp.einsum("bd,bkd->bk", cv, dv), rtol=1e-5)
  # Trailing padding changes nothing (a different max length).
  longer = model.apply(params, np.pad(docs, ((0, 0), (0, 0), (0, 4))), method=model.encode_docs)
  np.testing.assert_allclose(longer, dv, rtol=1e-5, atol=1e-6)
  # The term weights learn: the loss reaches their parameters.
  grads = jax.grad(lambda p: model.apply({"params": p}, claims, docs).sum())(params["params"])
  tw = grads["encoder"]["term_weights"]["dense"]["kernel"]
  assert float(jnp.abs(tw).sum()) > 0


@pytest.mark.parametrize("scoring", ["cosine", "doc_cosine"])
def test_cosine_scoring_normalises_only_the_dense_part(scoring):
  model = _student("cnn", scoring=scoring)
  rng = np.random.default_rng(2)
  claims, docs = rng.integers(2, 50, size=(2, 5)).astype(np.int32), rng.integers(2, 50, size=(2, 3, 7)).astype(np.int32)
  params = model.init(jax.random.key(0), claims, docs)
  cv = np.asarray(model.apply(params, claims, method=model.encode_claims))
  dv = np.asarray(model.apply(params, docs, method=model.encode_docs))
  unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731
  claim = unit if scoring == "cosine" else (lambda x: x)  # doc_cosine leaves the claim's norm alone
  scale = float(params["params"]["cosine_scale"])
  want = scale * np.einsum("bd,bkd->bk", claim(cv[:, :6]), unit(dv[..., :6])) + np.einsum("bd,bkd->bk", cv[:, 6:],
                                                                                          dv[..., 6:])
  np.testing.assert_allclose(model.apply(params, claims, docs), want, rtol=1e-5)
  flat = dv.reshape(-1, dv.shape[-1])  # the shared-matrix form search uses
  np.testing.assert_allclose(model.apply(params, cv, flat, method=model.score),
                             scale * claim(cv[:, :6]) @ unit(flat[:, :6]).T + cv[:, 6:] @ flat[:, 6:].T, rtol=1e-5)
  # A document's dense part scaled up changes nothing: its norm cannot make it a hub.
  longer = np.concatenate([3.0 * flat[:, :6], flat[:, 6:]], -1)
  np.testing.assert_allclose(model.apply(params, cv, longer, method=model.score),
                             model.apply(params, cv, flat, method=model.score), rtol=1e-5)


def test_lexical_channel_refuses_a_bad_width():
  claims, docs = np.ones((1, 3), np.int32) * 2, np.ones((1, 2, 3), np.int32) * 3
  with pytest.raises(ValueError, match="power of two"):
    _student("cnn", lexical_dim=100).init(jax.random.key(0), claims, docs)


def test_saved_student_configs_without_the_field_read_as_off():
  old = {"kind": "cnn", "widths": [1, 2], "num_filters": 8, "embed_dim": 50}
  assert registry.model_fields(old) == registry.model_fields({**old, "lexical_dim": 0})
  assert registry.model_fields(old) != registry.model_fields({**old, "lexical_dim": 4096})


def test_out_of_vocabulary_ids_without_rows_read_unk_and_still_match_lexically():
  """embed_oov=False: hashed out-of-vocabulary ids past the table read <unk>'s row (the dense part cannot tell them
  apart) while the lexical channel keeps them apart, so a rare word matches itself and only itself."""
  model = _student("cnn", embed_oov=False)
  rare_a, rare_b = 50 + 123_457, 50 + 987_655  # past the 50-row table
  claims = np.array([[2, 3, rare_a, 0]], np.int32)
  docs = np.array([[[rare_a, 5, 6, 0], [rare_b, 5, 6, 0], [1, 5, 6, 0]]], np.int32)
  params = model.init(jax.random.key(0), claims, docs)
  assert params["params"]["encoder"]["tokens"]["embed"]["embedding"].shape == (50, 8)
  dv = np.asarray(model.apply(params, docs, method=model.encode_docs))[0]
  np.testing.assert_allclose(dv[0, :6], dv[2, :6], rtol=1e-6)  # dense: both rare words read as <unk>
  np.testing.assert_allclose(dv[1, :6], dv[2, :6], rtol=1e-6)
  assert lexical.buckets(jnp.asarray(rare_a), 64) != lexical.buckets(jnp.asarray(rare_b), 64)
  cv = np.asarray(model.apply(params, claims, method=model.encode_claims))[0]
  lex = dv[:, 6:] @ cv[6:]
  assert lex[0] > lex[1] == pytest.approx(lex[2])  # only the document holding the claim's rare word gains


def test_builder_sizes_the_table_by_embed_oov_and_refuses_a_huge_embedded_one():
  import types

  from configs import common
  from kd_jax.models import build as build_lib
  inputs = types.SimpleNamespace(vocab=["<pad>", "<unk>"] + [f"w{i}" for i in range(98)], oov_buckets=1 << 20)
  mcfg = common.student_model("cnn", widths=(1,), num_filters=4)
  mcfg.update(lexical_dim=64, embed_oov=False, glove=False)
  built = build_lib.build(mcfg, inputs)
  params = jax.eval_shape(built.init, jax.random.key(0))
  assert params["encoder"]["tokens"]["embed"]["embedding"].shape == (100, 50)
  mcfg.embed_oov = True  # a million embedded rows: a slip, refused in one line
  with pytest.raises(ValueError, match="embed_oov=False"):
    build_lib.build(mcfg, inputs)


def _np_private_buckets(ids, dim, private):
  shared = private + (((ids.astype(np.uint64) * 0x9E3779B1) % 2**32) >> 8) % (dim - private)
  return np.where(ids < private, ids, shared).astype(np.int64)


@pytest.mark.parametrize("private", [1024, 2048, 3000])
def test_private_buckets_match_numpy_and_no_frequent_word_shares_one(private):
  dim = 4096
  ids = np.arange(300_000, dtype=np.int32)
  got = np.asarray(lexical.buckets(jnp.asarray(ids), dim, private))
  np.testing.assert_array_equal(got, _np_private_buckets(ids, dim, private))
  np.testing.assert_array_equal(got[:private], ids[:private])  # the most frequent ids: a bucket each
  rest = got[private:]
  assert rest.min() >= private and rest.max() < dim  # every other id lands among the rest, so never on a frequent one
  counts = np.bincount(rest - private, minlength=dim - private)
  assert counts.min() > 0.85 * counts.mean() and counts.max() < 1.15 * counts.mean()


@pytest.mark.parametrize("private", [-1, 4096, 5000])
def test_bad_private_is_refused(private):
  with pytest.raises(ValueError, match="lexical_private"):
    lexical.buckets(jnp.arange(4), 4096, private)


def test_private_layout_keeps_the_match_score_and_drops_a_false_match():
  """Two words sharing a golden-hash bucket, one frequent: at private 0 a document holding only the rare one matches
  a claim holding only the frequent one; with private buckets it does not, while true matches score as before."""
  dim, private = 64, 32
  ids = np.arange(2, 5000)
  b = _np_buckets(ids, dim)
  frequent = int(ids[ids < private][0])
  rare = int(ids[(ids >= private) & (b == b[ids == frequent][0])][0])  # a rare id hashed where the frequent one is
  claim, doc = np.array([[frequent, 0]], np.int32), np.array([[rare, 0]], np.int32)
  w = np.array([[2.0, 0.0]], np.float32)
  vec = lambda x, p: np.asarray(lexical.lexical_vectors(jnp.asarray(x), jnp.asarray(w), dim, p))[0]  # noqa: E731
  assert vec(claim, 0) @ vec(doc, 0) == pytest.approx(4.0)  # the false match
  assert vec(claim, private) @ vec(doc, private) == 0.0
  for x in (claim, doc):  # a word still matches itself
    assert vec(x, private) @ vec(x, private) == pytest.approx(4.0)


def test_stop_word_mask_follows_the_layout():
  from kd_jax import stopwords
  keep = stopwords.claim_mask(6 + 64, 6, 64, np.array([5, 40]), private=32)
  masked = 6 + np.asarray(lexical.buckets(jnp.asarray([5, 40]), 64, 32))
  np.testing.assert_array_equal(np.flatnonzero(keep == 0), masked)
  assert keep[6 + 5] == 0  # a frequent id masks its own bucket


def test_student_refuses_a_private_layout_wider_than_the_channel():
  claims, docs = np.ones((1, 3), np.int32) * 2, np.ones((1, 2, 3), np.int32) * 3
  with pytest.raises(ValueError, match="lexical_private"):
    _student("cnn", lexical_private=64).init(jax.random.key(0), claims, docs)

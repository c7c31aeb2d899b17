"""Students: shapes, padding invariance, claim independence, scoring, frozen embeddings, GloVe, sizes."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from kd_jax.models.size import count_params, param_table
from kd_jax.models.students import (BiLSTMConfig, BiLSTMStudent, CNNConfig, CNNStudent, glove_embedding_matrix,
                                    with_embeddings)

VOCAB = 40
KINDS = ["cnn", "lstm-max", "lstm-mean"]


def _make(kind: str, shared: bool = True, **overrides):
  common = dict(vocab_size=VOCAB, embed_dim=8, out_dim=6, shared_towers=shared, dropout_rate=0.2) | overrides
  if kind == "cnn":
    return CNNStudent(CNNConfig(widths=(1, 2, 3), num_filters=5, **common))
  return BiLSTMStudent(BiLSTMConfig(hidden=4, pooling=kind.split("-")[1], **common))


def _ids(seed: int, shape: tuple[int, ...], min_len: int = 1) -> np.ndarray:
  """Random non-padding ids with a random number of trailing zeros per sequence."""
  rng = np.random.default_rng(seed)
  ids = rng.integers(1, VOCAB, size=shape).astype(np.int32)
  lengths = rng.integers(min_len, shape[-1] + 1, size=shape[:-1])
  return np.where(np.arange(shape[-1]) < lengths[..., None], ids, 0).astype(np.int32)


@functools.lru_cache(maxsize=None)
def _model_and_params(kind: str, shared: bool, scoring: str = "dot", freeze: bool = False):
  model = _make(kind, shared, scoring=scoring, freeze_embeddings=freeze)
  params = model.init(jax.random.key(0), jnp.asarray(_ids(0, (2, 5))), jnp.asarray(_ids(1, (2, 3, 7))))
  return model, params


def _apply(model, params, *args, method=None):
  return jax.jit(functools.partial(model.apply, method=method))(params, *args)


def _embedding_paths(params):
  return [p for p in traverse_util.flatten_dict(params) if p[-2:] == ("embed", "embedding")]


@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("kind", KINDS)
def test_shapes_and_params_created_by_init(kind, shared):
  model, params = _model_and_params(kind, shared)
  claims, docs = _ids(2, (3, 5)), _ids(3, (3, 4, 7))
  assert _apply(model, params, claims, docs).shape == (3, 4)
  assert _apply(model, params, claims, method=model.encode_claims).shape == (3, 6)
  assert _apply(model, params, docs, method=model.encode_docs).shape == (3, 4, 6)
  assert _apply(model, params, docs[0], method=model.encode_docs).shape == (4, 6)
  assert len(_embedding_paths(params)) == (1 if shared else 2)
  # Leading dims are only flattened: encoding [B, K, L] equals encoding each [L] on its own.
  flat = _apply(model, params, docs.reshape(12, 7), method=model.encode_docs)
  np.testing.assert_allclose(_apply(model, params, docs, method=model.encode_docs).reshape(12, 6), flat,
                             rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("kind", KINDS)
def test_padding_invariance(kind, shared):
  model, params = _model_and_params(kind, shared)
  ids = _ids(4, (5, 6))
  ids[0] = 0  # an all-padding sequence must still give a finite vector
  for method in (model.encode_claims, model.encode_docs):
    base = _apply(model, params, ids, method=method)
    assert np.isfinite(np.asarray(base)).all()
    # (a) extra trailing zero padding, i.e. a different max length.
    longer = np.pad(ids, ((0, 0), (0, 9)))
    np.testing.assert_allclose(_apply(model, params, longer, method=method), base, rtol=1e-5, atol=1e-6)
    # (b) whatever the padding row of the embedding table holds.
    flat = traverse_util.flatten_dict(params)
    for path in _embedding_paths(params):
      flat[path] = flat[path].at[0].set(100.0 * jax.random.normal(jax.random.key(7), flat[path].shape[1:]))
    garbage = traverse_util.unflatten_dict(flat)
    np.testing.assert_allclose(_apply(model, garbage, longer, method=method), base, rtol=1e-5, atol=1e-6)
  # Real tokens do matter (the test above is not vacuous).
  changed = ids.copy()
  changed[1, 0] = (changed[1, 0] % (VOCAB - 2)) + 2
  assert not np.allclose(_apply(model, params, changed, method=model.encode_docs)[1],
                         _apply(model, params, ids, method=model.encode_docs)[1])


@pytest.mark.parametrize("scoring", ["dot", "cosine"])
@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("kind", ["cnn", "lstm-max"])
def test_claim_independence(kind, shared, scoring):
  """Scores factor into a claim vector and doc vectors computed without the claim."""
  model, params = _model_and_params(kind, shared, scoring)
  claims_a, claims_b, docs = _ids(5, (2, 5)), _ids(6, (2, 5)), _ids(7, (2, 3, 7))
  doc_vecs = np.asarray(_apply(model, params, docs, method=model.encode_docs), np.float64)  # no claim in sight
  for claims in (claims_a, claims_b):
    claim_vecs = np.asarray(_apply(model, params, claims, method=model.encode_claims), np.float64)
    if scoring == "cosine":
      claim_vecs /= np.linalg.norm(claim_vecs, axis=-1, keepdims=True)
      doc_vecs_n = doc_vecs / np.linalg.norm(doc_vecs, axis=-1, keepdims=True)
      expected = float(params["params"]["cosine_scale"]) * np.einsum("bd,bkd->bk", claim_vecs, doc_vecs_n)
    else:
      expected = np.einsum("bd,bkd->bk", claim_vecs, doc_vecs)
    np.testing.assert_allclose(_apply(model, params, claims, docs), expected, rtol=1e-4, atol=1e-5)
  # The doc tower's output does not depend on anything claim-side: its gradient w.r.t. claim-only
  # parameters (separate towers) or claim-only tokens' embedding rows (shared) is exactly zero.
  def doc_sum(p):
    return jnp.sum(model.apply(p, docs, method=model.encode_docs))

  grads = traverse_util.flatten_dict(jax.grad(doc_sum)(params))
  if shared:
    (path,) = _embedding_paths(params)
    unused = np.setdiff1d(np.arange(VOCAB), docs)
    assert unused.size and np.all(np.asarray(grads[path])[unused] == 0.0)
  else:
    assert all(np.all(np.asarray(g) == 0.0) for p, g in grads.items() if p[1] == "claim_encoder")
    assert any(np.any(np.asarray(g) != 0.0) for p, g in grads.items() if p[1] == "doc_encoder")


@pytest.mark.parametrize("scoring", ["dot", "cosine"])
def test_score_per_claim_candidates_and_shared_matrix(scoring):
  model, params = _model_and_params("cnn", True, scoring)
  rng = np.random.default_rng(0)
  claim_vecs = rng.normal(size=(3, 6)).astype(np.float32)
  collection = 5.0 * rng.normal(size=(10, 6)).astype(np.float32)
  full = _apply(model, params, claim_vecs, collection, method=model.score)
  assert full.shape == (3, 10)
  per_claim = _apply(model, params, claim_vecs, np.broadcast_to(collection, (3, 10, 6)), method=model.score)
  np.testing.assert_allclose(full, per_claim, rtol=1e-5, atol=1e-5)
  if scoring == "cosine":
    scale = float(params["params"]["cosine_scale"])
    assert scale == 10.0 and np.all(np.abs(np.asarray(full)) <= scale * (1 + 1e-6))
    same = _apply(model, params, collection[:2], collection[:2, None, :], method=model.score)
    np.testing.assert_allclose(same, scale, rtol=1e-5)
  else:
    np.testing.assert_allclose(full, claim_vecs @ collection.T, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("kind", ["cnn", "lstm-max"])
def test_freeze_embeddings_gives_zero_embedding_gradient(kind, shared):
  model, params = _model_and_params(kind, shared, freeze=True)
  claims, docs = _ids(8, (2, 5)), _ids(9, (2, 3, 7))

  def loss(p):
    return jnp.sum(model.apply(p, claims, docs) ** 2)

  grads = traverse_util.flatten_dict(jax.grad(loss)(params))
  for path, g in grads.items():
    is_embedding = path[-2:] == ("embed", "embedding")
    assert np.all(np.asarray(g) == 0.0) == is_embedding, path
  unfrozen, unfrozen_params = _model_and_params(kind, shared)
  g = traverse_util.flatten_dict(jax.grad(lambda p: jnp.sum(unfrozen.apply(p, claims, docs) ** 2))(unfrozen_params))
  assert all(np.any(np.asarray(g[p]) != 0.0) for p in _embedding_paths(unfrozen_params))


def test_dropout_is_active_only_when_not_deterministic():
  model, params = _model_and_params("cnn", True)
  claims, docs = _ids(10, (2, 5)), _ids(11, (2, 3, 7))
  eval_scores = model.apply(params, claims, docs)
  train = [model.apply(params, claims, docs, deterministic=False, rngs={"dropout": jax.random.key(i)})
           for i in (1, 2)]
  assert not np.allclose(train[0], train[1]) and not np.allclose(train[0], eval_scores)


def test_glove_embedding_matrix_and_with_embeddings():
  from kd_jax.pretrained import glove_6b_50d  # pylint: disable=import-outside-toplevel
  index, vectors = glove_6b_50d()
  vocab = ["<pad>", "<unk>", "the", "protein", "cancer", "Cancer", "qzxv-not-a-glove-word"]
  matrix = glove_embedding_matrix(vocab, index, vectors, rng_seed=0)
  assert matrix.shape == (len(vocab), 50) and matrix.dtype == np.float32
  for row, word in [(2, "the"), (3, "protein"), (4, "cancer"), (5, "cancer")]:
    np.testing.assert_array_equal(matrix[row], vectors[index[word]])
  assert np.all(matrix[0] == 0.0)
  oov = matrix[[1, 6]]
  assert np.all(oov != 0.0) and not np.allclose(oov[0], oov[1])
  glove_std = float(np.std(vectors))
  assert 0.5 * glove_std < float(np.std(oov)) < 1.5 * glove_std
  np.testing.assert_array_equal(glove_embedding_matrix(vocab, index, vectors, rng_seed=0), matrix)

  for shared in (True, False):
    model = CNNStudent(CNNConfig(vocab_size=len(vocab), widths=(1, 2), num_filters=3, out_dim=4, shared_towers=shared))
    params = model.init(jax.random.key(0), jnp.ones((1, 3), jnp.int32), jnp.ones((1, 2, 3), jnp.int32))
    loaded = with_embeddings(params, matrix)
    tables = [traverse_util.flatten_dict(loaded)[p] for p in _embedding_paths(loaded)]
    assert len(tables) == (1 if shared else 2) and all(np.array_equal(t, matrix) for t in tables)
    assert np.all(np.isfinite(np.asarray(model.apply(loaded, jnp.array([[2, 3, 0]]), jnp.array([[[4, 0, 0]]])))))
    with pytest.raises(ValueError):
      with_embeddings(params, matrix[:, :10])


# Default sizes: GloVe 50-d, vocab 20k. The 1,000,000-entry embedding table dominates; the MiniLM-L6
# teacher has ~22.7M parameters, so the shared-tower students are ~19x smaller, as in the paper (~20x).
EXPECTED_PARAMS = {
    ("cnn", True): 1_000_000 + 50 * 128 * (1 + 2 + 3 + 5) + 4 * 128 + 512 * 256 + 256,  # 1,202,240
    ("cnn", False): 2 * 1_202_240,
    ("lstm", True): 1_000_000 + 2 * (4 * 50 * 128 + 4 * (128 * 128 + 128)) + 256 * 256 + 256,  # 1,249,088
    ("lstm", False): 2 * 1_249_088,
}


def test_default_parameter_counts():
  named = {}
  for (kind, shared), expected in EXPECTED_PARAMS.items():
    cfg_cls, model_cls = (CNNConfig, CNNStudent) if kind == "cnn" else (BiLSTMConfig, BiLSTMStudent)
    model = model_cls(cfg_cls(vocab_size=20_000, shared_towers=shared))
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.ones((1, 4), jnp.int32),
                            jnp.ones((1, 2, 4), jnp.int32))
    named[f"{kind} ({'shared' if shared else 'separate'} towers)"] = shapes
    assert count_params(shapes) == expected, (kind, shared, count_params(shapes))
  assert EXPECTED_PARAMS[("cnn", True)] == 1_202_240 and EXPECTED_PARAMS[("lstm", True)] == 1_249_088
  cosine = CNNStudent(CNNConfig(vocab_size=20_000, scoring="cosine"))
  shapes = jax.eval_shape(cosine.init, jax.random.key(0), jnp.ones((1, 4), jnp.int32), jnp.ones((1, 2, 4), jnp.int32))
  assert count_params(shapes) == 1_202_240 + 1  # the learned cosine scale
  table = param_table(named)
  print("\n" + table)
  assert "| cnn (shared towers) | 1,202,240 |" in table

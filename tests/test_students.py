"""Students: shapes, padding invariance, claim independence, scoring, frozen embeddings, GloVe, sizes."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from kd_jax.models.size import count_params
from kd_jax.pretrained import glove_embedding_matrix
from kd_jax.models import students
from kd_jax.models.students import (BiLSTMConfig, BiLSTMStudent, CNNConfig, CNNStudent,
                                    with_embeddings)

VOCAB = 40
CLAIMS_SHAPE, DOCS_SHAPE = (2, 5), (2, 3, 7)  # one shape per test input keeps compiles (LSTM scans) few


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
def _params(kind: str, shared: bool):
  """Parameters depend only on the tower type and sharing, so pooling/scoring/freeze variants reuse them."""
  model = _make("cnn" if kind == "cnn" else "lstm-max", shared)
  # init traced, not compiled (compiling LSTM programs dominates this file's runtime); values drawn here.
  shapes = jax.eval_shape(model.init, jax.random.key(0), _ids(0, CLAIMS_SHAPE), _ids(1, DOCS_SHAPE))
  rng = np.random.default_rng(0)
  return jax.tree_util.tree_map(lambda x: jnp.asarray(0.5 * rng.normal(size=x.shape), x.dtype), shapes)


@functools.lru_cache(maxsize=None)
def _setup(kind: str, shared: bool, scoring: str = "dot", freeze: bool = False):
  """(model, params, jitted fn(params, claims, docs) -> (claim vecs, doc vecs, scores))."""
  model = _make(kind, shared, scoring=scoring, freeze_embeddings=freeze)
  params = _params(kind, shared)
  if scoring == "cosine":
    params = {"params": {**params["params"], "cosine_scale": jnp.asarray(10.0)}}

  def outputs(m, claims, docs):
    return m.encode_claims(claims), m.encode_docs(docs), m(claims, docs)

  return model, params, jax.jit(functools.partial(model.apply, method=outputs))


def _embedding_paths(params):
  return [p for p in traverse_util.flatten_dict(params) if p[-2:] == ("embed", "embedding")]


@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("kind", ["cnn", "lstm-max"])
def test_shapes_and_params_created_by_init(kind, shared):
  # `params` come from init via __call__; apply raises if an encode_* method needed any other parameter.
  model, params, fn = _setup(kind, shared)
  claim_vecs, doc_vecs, scores = fn(params, _ids(2, CLAIMS_SHAPE), _ids(3, DOCS_SHAPE))
  assert (claim_vecs.shape, doc_vecs.shape, scores.shape) == ((2, 6), (2, 3, 6), (2, 3))
  assert len(_embedding_paths(params)) == (1 if shared else 2)


# Pooling does not interact with tower sharing, so one lstm-mean case suffices.
@pytest.mark.parametrize("kind,shared", [("cnn", True), ("cnn", False), ("lstm-max", True), ("lstm-max", False),
                                         ("lstm-mean", True)])
@pytest.mark.slow  # trains, prepares real data or compiles large steps: seconds each
def test_padding_invariance(kind, shared):
  model, params, fn = _setup(kind, shared)
  claims, docs = _ids(4, CLAIMS_SHAPE), _ids(5, DOCS_SHAPE)
  docs[0, 1] = 0  # an all-padding sequence must still give a finite vector
  base = fn(params, claims, docs)
  assert all(np.isfinite(np.asarray(x)).all() for x in base)
  # (a) extra trailing zero padding, i.e. a different max length.
  longer = (np.pad(claims, ((0, 0), (0, 5))), np.pad(docs, ((0, 0), (0, 0), (0, 5))))
  # (b) whatever the padding row of the embedding table holds.
  flat = traverse_util.flatten_dict(params)
  for path in _embedding_paths(params):
    flat[path] = flat[path].at[0].set(100.0 * jax.random.normal(jax.random.key(7), flat[path].shape[1:]))
  garbage = traverse_util.unflatten_dict(flat)
  for p in (params, garbage):
    for got, want in zip(fn(p, *longer), base):
      np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  # Real tokens do matter (the checks above are not vacuous).
  changed = docs.copy()
  changed[1, 0, 0] = (changed[1, 0, 0] % (VOCAB - 2)) + 2
  assert not np.allclose(fn(params, claims, changed)[1][1, 0], base[1][1, 0])


@pytest.mark.parametrize("kind,shared,scoring", [("cnn", True, "dot"), ("cnn", False, "dot"),
                                                 ("cnn", True, "cosine"), ("cnn", False, "cosine"),
                                                 ("lstm-max", True, "dot"), ("lstm-max", False, "dot")])
@pytest.mark.slow  # trains, prepares real data or compiles large steps: seconds each
def test_claim_independence(kind, shared, scoring):
  """Scores factor into a claim vector and doc vectors computed without the claim."""
  model, params, fn = _setup(kind, shared, scoring)
  docs = _ids(7, DOCS_SHAPE)

  def docs_alone(p):  # the doc tower run with no claim in sight, on the [B * K, L] rows
    vecs = model.apply(p, docs.reshape(-1, docs.shape[-1]), method=model.encode_docs)
    return jnp.sum(vecs), vecs

  grads, flat_doc_vecs = jax.jit(jax.grad(docs_alone, has_aux=True))(params)
  grads = traverse_util.flatten_dict(grads)
  # Leading dims are only flattened: encoding [B, K, L] equals encoding the [B * K, L] rows.
  doc_vecs = np.asarray(flat_doc_vecs, np.float64).reshape(*docs.shape[:-1], -1)
  for seed in (5, 6):  # two different claims for the same candidates
    claim_vecs, in_call_doc_vecs, scores = fn(params, _ids(seed, CLAIMS_SHAPE), docs)
    np.testing.assert_allclose(in_call_doc_vecs, doc_vecs, rtol=1e-5, atol=1e-6)
    claim_vecs = np.asarray(claim_vecs, np.float64)
    if scoring == "cosine":
      claim_vecs = claim_vecs / np.linalg.norm(claim_vecs, axis=-1, keepdims=True)
      expected = 10.0 * np.einsum("bd,bkd->bk", claim_vecs, doc_vecs / np.linalg.norm(doc_vecs, axis=-1, keepdims=True))
    else:
      expected = np.einsum("bd,bkd->bk", claim_vecs, doc_vecs)
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-5)
  # The doc tower's output does not depend on anything claim-side: its gradient w.r.t. claim-only
  # parameters (separate towers) or the embedding rows of tokens absent from the docs (shared) is zero.
  if shared:
    (path,) = _embedding_paths(params)
    unused = np.setdiff1d(np.arange(VOCAB), docs)
    assert unused.size and np.all(np.asarray(grads[path])[unused] == 0.0)
  else:
    assert all(np.all(np.asarray(g) == 0.0) for p, g in grads.items() if p[1] == "claim_encoder")
    assert any(np.any(np.asarray(g) != 0.0) for p, g in grads.items() if p[1] == "doc_encoder")


@pytest.mark.slow  # trains, prepares real data or compiles large steps: seconds each
@pytest.mark.parametrize("scoring", ["dot", "cosine", "doc_cosine"])
def test_score_per_claim_candidates_and_shared_matrix(scoring):
  model, _, _ = _setup("cnn", True, scoring)
  params = jax.jit(model.init)(jax.random.key(0), _ids(0, CLAIMS_SHAPE), _ids(1, DOCS_SHAPE))  # real init
  rng = np.random.default_rng(0)
  claim_vecs = rng.normal(size=(3, 6)).astype(np.float32)
  collection = 5.0 * rng.normal(size=(10, 6)).astype(np.float32)
  full = model.apply(params, claim_vecs, collection, method=model.score)
  assert full.shape == (3, 10)
  per_claim = model.apply(params, claim_vecs, np.broadcast_to(collection, (3, 10, 6)), method=model.score)
  np.testing.assert_allclose(full, per_claim, rtol=1e-5, atol=1e-5)
  if scoring == "cosine":
    scale = float(params["params"]["cosine_scale"])
    assert scale == 10.0 and np.all(np.abs(np.asarray(full)) <= scale * (1 + 1e-6))
    same = model.apply(params, collection[:2], collection[:2, None, :], method=model.score)
    np.testing.assert_allclose(same, scale, rtol=1e-5)
  elif scoring == "doc_cosine":
    scale = float(params["params"]["cosine_scale"])
    unit = collection / np.linalg.norm(collection, axis=-1, keepdims=True)
    np.testing.assert_allclose(full, scale * claim_vecs @ unit.T, rtol=1e-5, atol=1e-5)
  else:
    np.testing.assert_allclose(full, claim_vecs @ collection.T, rtol=1e-5, atol=1e-4)


def test_an_unknown_scoring_is_refused_with_the_known_ones():
  with pytest.raises(ValueError, match="dot, cosine, doc_cosine, got 'l2'"):
    _make("cnn", scoring="l2").init(jax.random.key(0), _ids(0, CLAIMS_SHAPE), _ids(1, DOCS_SHAPE))


@pytest.mark.parametrize("kind,shared", [("cnn", True), ("cnn", False), ("lstm-max", False)])
def test_freeze_embeddings_gives_zero_embedding_gradient(kind, shared):
  claims, docs = _ids(8, CLAIMS_SHAPE), _ids(9, DOCS_SHAPE)

  def grads(freeze):
    model, params, _ = _setup(kind, shared, freeze=freeze)
    g = jax.jit(jax.grad(lambda p: jnp.sum(model.apply(p, claims, docs) ** 2)))(params)
    return traverse_util.flatten_dict(g)

  for path, g in grads(freeze=True).items():
    is_embedding = path[-2:] == ("embed", "embedding")
    assert np.all(np.asarray(g) == 0.0) == is_embedding, path
  if kind == "cnn":  # the same parameters unfrozen do get embedding gradients
    g = grads(freeze=False)
    assert all(np.any(np.asarray(g[p]) != 0.0) for p in _embedding_paths(_params(kind, shared)))


def test_dropout_is_active_only_when_not_deterministic():
  model, params, _ = _setup("cnn", True)
  claims, docs = _ids(10, CLAIMS_SHAPE), _ids(11, DOCS_SHAPE)
  apply = jax.jit(lambda key, det: model.apply(params, claims, docs, deterministic=det, rngs={"dropout": key}),
                  static_argnums=1)
  eval_scores = apply(jax.random.key(0), True)
  train = [apply(jax.random.key(i), False) for i in (1, 2)]
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
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.ones((1, 3), jnp.int32), jnp.ones((1, 2, 3), jnp.int32))
    params = jax.tree_util.tree_map(lambda x: jnp.zeros(x.shape, x.dtype), shapes)
    loaded = with_embeddings(params, matrix)
    flat, flat_loaded = traverse_util.flatten_dict(params), traverse_util.flatten_dict(loaded)
    tables = [flat_loaded[p] for p in _embedding_paths(loaded)]
    assert len(tables) == (1 if shared else 2) and all(np.array_equal(t, matrix) for t in tables)
    assert flat_loaded.keys() == flat.keys() and all(np.all(flat[p] == 0.0) for p in _embedding_paths(params))
    inner = with_embeddings(params["params"], matrix)  # the bare 'params' collection works as well
    flat_inner = traverse_util.flatten_dict(inner)
    assert all(np.array_equal(flat_inner[p], matrix) for p in _embedding_paths(inner))
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
  for (kind, shared), expected in EXPECTED_PARAMS.items():
    cfg_cls, model_cls = (CNNConfig, CNNStudent) if kind == "cnn" else (BiLSTMConfig, BiLSTMStudent)
    model = model_cls(cfg_cls(vocab_size=20_000, shared_towers=shared))
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.ones((1, 4), jnp.int32),
                            jnp.ones((1, 2, 4), jnp.int32))
    assert count_params(shapes) == expected, (kind, shared, count_params(shapes))
  cosine = CNNStudent(CNNConfig(vocab_size=20_000, scoring="cosine"))
  shapes = jax.eval_shape(cosine.init, jax.random.key(0), jnp.ones((1, 4), jnp.int32), jnp.ones((1, 2, 4), jnp.int32))
  assert count_params(shapes) == 1_202_240 + 1  # the learned cosine scale


def test_masked_max_and_its_gradient_match_numpy():
  """Value: the max over valid positions (0 for an all-padding row). Gradient: each output's cotangent at the
  position holding that max, zero elsewhere and at padding, as autodiff of a max without ties gives."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=(4, 7, 5)).astype(np.float32)
  x[1, 5:] = 100.0  # padding that would win if it were read
  mask = np.ones((4, 7), bool)
  mask[1, 5:] = False
  mask[2] = False  # all padding
  g = rng.normal(size=(4, 5)).astype(np.float32)
  out, vjp = jax.vjp(lambda v: students.masked_max(v, jnp.asarray(mask)), jnp.asarray(x))
  (gx,) = vjp(jnp.asarray(g))
  ref_out, ref_g = np.zeros((4, 5), np.float32), np.zeros_like(x)
  for b in range(4):
    if mask[b].any():
      valid = np.flatnonzero(mask[b])
      for f in range(5):
        pos = valid[np.argmax(x[b, valid, f])]
        ref_out[b, f], ref_g[b, pos, f] = x[b, pos, f], g[b, f]
  np.testing.assert_array_equal(np.asarray(out), ref_out)
  np.testing.assert_array_equal(np.asarray(gx), ref_g)
  # The same as autodiff of the plain formulation (no ties here).
  plain = lambda v: jnp.where(mask.any(-1)[:, None], jnp.max(jnp.where(mask[..., None], v, -jnp.inf), axis=1), 0.0)
  np.testing.assert_allclose(np.asarray(jax.grad(lambda v: (plain(v) * g).sum())(jnp.asarray(x))), ref_g)

"""The zero-shot bi-encoder reference row: input layout and pooling against NumPy, and that the real MiniLM
weights put a SciFact claim's gold abstract above unrelated ones."""

import jax.numpy as jnp
import numpy as np

from kd_jax import pretrained
from kd_jax.data import tokenize
from kd_jax.models import bi_encoder, hf_weights


def test_with_specials_layout():
  ids = np.array([[5, 6, 7, 0], [8, 0, 0, 0], [1, 2, 3, 4]], np.int32)
  out, mask = bi_encoder.with_specials(ids, 5)
  np.testing.assert_array_equal(out, [[101, 5, 6, 7, 102], [101, 8, 102, 0, 0], [101, 1, 2, 3, 102]])
  np.testing.assert_array_equal(mask, [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
  wide, _ = bi_encoder.with_specials(ids, 8)
  np.testing.assert_array_equal(wide[2], [101, 1, 2, 3, 4, 102, 0, 0])


def test_mean_pool_normalised_matches_numpy():
  rng = np.random.default_rng(0)
  h, m = rng.normal(size=(3, 5, 4)).astype(np.float32), np.array([[1, 1, 0, 0, 0], [1] * 5, [1, 0, 0, 0, 0]])
  ref = np.stack([h[i, m[i] > 0].mean(0) for i in range(3)])
  ref /= np.linalg.norm(ref, axis=1, keepdims=True)
  np.testing.assert_allclose(bi_encoder.mean_pool_normalised(jnp.asarray(h), jnp.asarray(m)), ref, rtol=1e-5)


def test_real_weights_rank_a_paraphrase_first():
  model_dir = pretrained.hf_model_dir()
  config, params = hf_weights.load_bert_encoder_params(model_dir)
  tok = tokenize.load_wordpiece(model_dir)
  texts = ["Vitamin D deficiency raises cancer risk.",
           "Low vitamin D levels are associated with a higher incidence of cancer.",
           "The stock market closed higher on Friday.", "A recipe for chocolate cake with walnuts."]
  vecs = bi_encoder.encode(bi_encoder.make_encoder(config), params, tokenize.wordpiece_ids(tok, texts, 32), 34,
                           batch_size=4)
  np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, rtol=1e-5)
  sims = vecs[1:] @ vecs[0]
  assert sims[0] > 0.5 and sims[0] > sims[1] + 0.3 and sims[0] > sims[2] + 0.3

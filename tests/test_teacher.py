"""Teacher: the Linen BERT against an independent NumPy BERT on the packaged MiniLM weights, and its loader."""

import dataclasses
import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tokenizers
from safetensors.numpy import load_file, save_file

from kd_jax.models.hf_weights import init_teacher_params, load_bert_encoder_params
from kd_jax.models.teacher import BertEncoder, CrossEncoder, TeacherConfig
from kd_jax.pretrained import MissingAssetError, hf_model_dir

SENTENCES = ["A man is eating food.", "A man is eating a piece of bread.",
             "The new movie is awesome and everyone should watch it tonight."]
LEN = 24  # one padded length for most tests, so each jitted function compiles once


@pytest.fixture(scope="module")
def model_dir() -> Path:
  return hf_model_dir()


@pytest.fixture(scope="module")
def tok(model_dir) -> tokenizers.Tokenizer:
  t = tokenizers.Tokenizer.from_file(str(model_dir / "tokenizer.json"))
  t.no_truncation()  # the file bakes in truncation/padding to 128
  t.no_padding()
  return t


@pytest.fixture(scope="module")
def hf_weights(model_dir) -> dict[str, np.ndarray]:
  return load_file(str(model_dir / "model.safetensors"))


@pytest.fixture(scope="module")
def loaded(model_dir):
  return load_bert_encoder_params(model_dir)


@pytest.fixture(scope="module")
def teacher_params(model_dir, loaded):
  return init_teacher_params(loaded[0], jax.random.key(0), pretrained_dir=model_dir, max_len=LEN)


def _batch(encodings: list[tokenizers.Encoding], length: int = LEN) -> tuple[np.ndarray, ...]:
  out = [np.zeros((len(encodings), length), np.int32) for _ in range(3)]
  for row, e in enumerate(encodings):
    for arr, vals in zip(out, (e.ids, e.type_ids, e.attention_mask)):
      arr[row, :len(vals)] = vals
  return tuple(out)


@jax.jit
def _encode(params, ids, types, mask):
  return BertEncoder(TeacherConfig()).apply({"params": params}, ids, types, mask)


def _numpy_bert(w: dict[str, np.ndarray], ids, types, mask, num_layers: int, num_heads: int, eps: float = 1e-12):
  """Plain float64 BERT straight from the HF tensor names; shares no code with kd_jax."""
  g = lambda n: w[n].astype(np.float64)
  erf = np.vectorize(math.erf)

  def ln(x, p):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * g(p + ".weight") + g(p + ".bias")

  def linear(x, p):
    return x @ g(p + ".weight").T + g(p + ".bias")

  b, length = ids.shape
  x = (g("embeddings.word_embeddings.weight")[ids] + g("embeddings.position_embeddings.weight")[:length]
       + g("embeddings.token_type_embeddings.weight")[types])
  x = ln(x, "embeddings.LayerNorm")
  hidden, d = x.shape[-1], x.shape[-1] // num_heads
  bias = np.where(mask[:, None, None, :] > 0, 0.0, -1e9)
  for i in range(num_layers):
    p = f"encoder.layer.{i}."
    q, k, v = (linear(x, p + "attention.self." + n).reshape(b, length, num_heads, d).transpose(0, 2, 1, 3)
               for n in ("query", "key", "value"))
    s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(d) + bias
    s = np.exp(s - s.max(-1, keepdims=True))
    s /= s.sum(-1, keepdims=True)
    a = (s @ v).transpose(0, 2, 1, 3).reshape(b, length, hidden)
    x = ln(x + linear(a, p + "attention.output.dense"), p + "attention.output.LayerNorm")
    h = linear(x, p + "intermediate.dense")
    h = 0.5 * h * (1.0 + erf(h / math.sqrt(2.0)))
    x = ln(x + linear(h, p + "output.dense"), p + "output.LayerNorm")
  return x


def _hf_shapes(vocab: int, pos: int, types: int, hidden: int, inter: int, layers: int) -> dict[str, tuple]:
  """Every tensor a HF BertModel's encoder holds, named as HF names them."""
  s = {"embeddings.word_embeddings.weight": (vocab, hidden), "embeddings.position_embeddings.weight": (pos, hidden),
       "embeddings.token_type_embeddings.weight": (types, hidden),
       "embeddings.LayerNorm.weight": (hidden,), "embeddings.LayerNorm.bias": (hidden,)}
  for i in range(layers):
    p = f"encoder.layer.{i}."
    for n in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
      s[p + n + ".weight"], s[p + n + ".bias"] = (hidden, hidden), (hidden,)
    s[p + "intermediate.dense.weight"], s[p + "intermediate.dense.bias"] = (inter, hidden), (inter,)
    s[p + "output.dense.weight"], s[p + "output.dense.bias"] = (hidden, inter), (hidden,)
    for n in ("attention.output.LayerNorm", "output.LayerNorm"):
      s[p + n + ".weight"], s[p + n + ".bias"] = (hidden,), (hidden,)
  return s


def test_tokenizer_gives_real_ids(tok):
  e = tok.encode("A man is eating food.")
  assert e.ids[0] == 101 and e.ids[-1] == 102
  assert 100 not in e.ids  # [UNK]
  assert tok.token_to_id("food") in e.ids and tok.token_to_id("food") != 100
  pair = tok.encode("claim text", "document text")
  assert pair.ids.count(102) == 2 and pair.type_ids[0] == 0 and pair.type_ids[-1] == 1


def test_config_from_hf(loaded):
  assert loaded[0] == TeacherConfig()  # the defaults are MiniLM's


def test_parity_with_numpy_bert(tok, hf_weights, loaded):
  ids, types, mask = _batch(tok.encode_batch(SENTENCES))
  assert mask.sum(1).min() < LEN  # the batch really has padding
  ours = np.asarray(_encode(loaded[1], ids, types, mask))
  ref = _numpy_bert(hf_weights, ids, types, mask, num_layers=6, num_heads=12)
  diff = np.abs(ours - ref)[mask > 0].max()
  print(f"parity max |diff| over real tokens: {diff:.2e}")
  assert diff < 1e-4


def test_sentence_transformers_cosine(tok, loaded):
  ids, types, mask = _batch(tok.encode_batch(SENTENCES[:2]))
  h = np.asarray(_encode(loaded[1], ids, types, mask), np.float64)
  pooled = (h * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
  e = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
  cosine = float(e[0] @ e[1])
  print(f"cosine(food, bread) = {cosine:.4f}")
  assert cosine == pytest.approx(0.755, abs=0.01)


@pytest.mark.slow  # trains, prepares real data or compiles large steps: seconds each
def test_padding_invariance(tok, loaded, teacher_params):
  e = tok.encode("Aspirin lowers fever.", "Aspirin is an analgesic that reduces fever and inflammation.")
  ids, types, mask = _batch([e, e])
  n = int(mask[0].sum())
  rng = np.random.default_rng(0)
  ids[1, n:] = rng.integers(1000, 30000, LEN - n)  # garbage under mask 0
  types[1, n:] = 1
  h = np.asarray(_encode(loaded[1], ids, types, mask))
  np.testing.assert_allclose(h[1, :n], h[0, :n], atol=1e-5)
  logits = CrossEncoder(loaded[0]).apply({"params": teacher_params}, ids, types, mask)
  np.testing.assert_allclose(logits[1], logits[0], atol=1e-5)


@pytest.mark.slow  # trains, prepares real data or compiles large steps: seconds each
def test_cross_encoder_shape_dropout_and_bf16(tok, loaded, teacher_params):
  pairs = [("A man is eating food.", "Bread is food."), ("The sky is blue.", "Bread is food."),
           ("Fever is a symptom.", "Aspirin reduces fever.")]
  ids, types, mask = _batch(tok.encode_batch(pairs))
  model = CrossEncoder(loaded[0])
  apply = jax.jit(model.apply, static_argnames="deterministic")
  logits = apply({"params": teacher_params}, ids, types, mask)
  assert logits.shape == (3,) and logits.dtype == jnp.float32
  np.testing.assert_array_equal(logits, apply({"params": teacher_params}, ids, types, mask))
  drop = [apply({"params": teacher_params}, ids, types, mask, deterministic=False, rngs={"dropout": jax.random.key(s)})
          for s in (1, 2)]
  assert not np.allclose(drop[0], drop[1]) and not np.allclose(drop[0], logits)

  bf16 = dataclasses.replace(loaded[0], dtype=jnp.bfloat16)
  logits16 = CrossEncoder(bf16).apply({"params": teacher_params}, ids, types, mask)
  h32 = np.asarray(_encode(teacher_params["encoder"], ids, types, mask))[mask > 0]
  h16 = np.asarray(BertEncoder(bf16).apply({"params": teacher_params["encoder"]}, ids, types, mask),
                   np.float32)[mask > 0]
  cos = (h32 * h16).sum(-1) / np.linalg.norm(h32, axis=-1) / np.linalg.norm(h16, axis=-1)
  print(f"bf16 vs fp32: max |logit diff| {np.abs(logits16 - logits).max():.4f}, min token cosine {cos.min():.4f}")
  assert cos.min() > 0.99
  np.testing.assert_allclose(logits16, logits, atol=0.05)
  bf16_params = init_teacher_params(bf16, jax.random.key(0), max_len=8)
  assert {x.dtype for x in jax.tree.leaves(bf16_params)} == {jnp.dtype(jnp.float32)}


@pytest.mark.slow  # trains, prepares real data or compiles large steps: seconds each
def test_init_loads_pretrained_encoder(model_dir, hf_weights, teacher_params, loaded):
  enc = teacher_params["encoder"]
  np.testing.assert_array_equal(enc["embeddings"]["word_embeddings"]["embedding"],
                                hf_weights["embeddings.word_embeddings.weight"])
  np.testing.assert_array_equal(enc["layer_3"]["attention"]["query"]["kernel"],
                                hf_weights["encoder.layer.3.attention.self.query.weight"].T)
  np.testing.assert_array_equal(enc["layer_5"]["output_LayerNorm"]["scale"],
                                hf_weights["encoder.layer.5.output.LayerNorm.weight"])
  assert teacher_params["score"]["kernel"].shape == (384, 1)
  scratch = init_teacher_params(loaded[0], jax.random.key(0), max_len=8)
  assert jax.tree.structure(scratch) == jax.tree.structure(teacher_params)
  q = scratch["encoder"]["layer_3"]["attention"]["query"]["kernel"]
  assert not np.allclose(q, enc["layer_3"]["attention"]["query"]["kernel"])
  assert 0.015 < float(jnp.std(q)) < 0.025  # BERT's N(0, 0.02)
  with pytest.raises(ValueError, match="does not match"):
    init_teacher_params(dataclasses.replace(loaded[0], num_layers=2), jax.random.key(0), model_dir, max_len=8)


def test_param_count(hf_weights, teacher_params):
  hf_count = sum(v.size for k, v in hf_weights.items() if k != "embeddings.position_ids" and not k.startswith("pooler."))
  encoder_count = sum(x.size for x in jax.tree.leaves(teacher_params["encoder"]))
  total = sum(x.size for x in jax.tree.leaves(teacher_params))
  print(f"teacher params: {total:,} (encoder {encoder_count:,})")
  assert encoder_count == hf_count
  assert total == hf_count + 384 + 1
  # The test's own list of HF encoder names covers the real checkpoint exactly.
  real = {k: v.shape for k, v in hf_weights.items() if k != "embeddings.position_ids" and not k.startswith("pooler.")}
  assert real == _hf_shapes(30522, 512, 2, 384, 1536, 6)


TINY = dict(vocab_size=20, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
            max_position_embeddings=16, type_vocab_size=2, hidden_act="gelu", layer_norm_eps=1e-12)


def _tiny_checkpoint(folder: Path, model_dir: Path, tensors: dict[str, np.ndarray]) -> Path:
  folder.mkdir()
  (folder / "config.json").write_text(json.dumps(TINY))
  (folder / "tokenizer.json").symlink_to(model_dir / "tokenizer.json")
  save_file(tensors, str(folder / "model.safetensors"))
  return folder


def _tiny_tensors(prefix: str = "") -> dict[str, np.ndarray]:
  rng = np.random.default_rng(0)
  shapes = _hf_shapes(20, 16, 2, 8, 16, 1)
  return {prefix + k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}


@pytest.mark.slow  # trains, prepares real data or compiles large steps: seconds each
def test_loads_prefixed_checkpoint_and_skips_heads(tmp_path, model_dir):
  t = _tiny_tensors("bert.")
  heads = {"bert.pooler.dense.weight": np.zeros((8, 8), np.float32), "classifier.weight": np.zeros((1, 8), np.float32),
           "bert.embeddings.position_ids": np.arange(16)[None]}
  config, params = load_bert_encoder_params(_tiny_checkpoint(tmp_path / "m", model_dir, {**t, **heads}))
  assert config.hidden_size == 8 and config.num_layers == 1
  np.testing.assert_array_equal(params["layer_0"]["intermediate"]["kernel"],
                                t["bert.encoder.layer.0.intermediate.dense.weight"].T)
  p = init_teacher_params(config, jax.random.key(1), tmp_path / "m", max_len=16)
  ids = jnp.ones((2, 16), jnp.int32)
  assert CrossEncoder(config).apply({"params": p}, ids, ids, ids).shape == (2,)


def test_clear_errors(tmp_path, model_dir):
  with pytest.raises(MissingAssetError, match="does not exist"):
    load_bert_encoder_params(tmp_path / "nowhere")
  t = _tiny_tensors()
  dropped = {k: v for k, v in t.items() if k != "encoder.layer.0.output.dense.bias"}
  with pytest.raises(ValueError, match=r"missing params: \['layer_0/output/bias'\]"):
    load_bert_encoder_params(_tiny_checkpoint(tmp_path / "missing", model_dir, dropped))
  extra = {**t, "encoder.layer.0.attention.self.rotary.weight": np.zeros((8, 8), np.float32)}
  with pytest.raises(ValueError, match=r"unmapped checkpoint tensors: \['encoder.layer.0.attention.self.rotary"):
    load_bert_encoder_params(_tiny_checkpoint(tmp_path / "extra", model_dir, extra))
  wrong = {**t, "encoder.layer.0.output.dense.weight": np.zeros((8, 15), np.float32)}
  with pytest.raises(ValueError, match=r"shape mismatches: \['encoder.layer.0.output.dense.weight"):
    load_bert_encoder_params(_tiny_checkpoint(tmp_path / "wrong", model_dir, wrong))


@pytest.mark.slow  # trains, prepares real data or compiles large steps: seconds each
def test_seg_cosine_head_and_bf16_products_match_references(tok, loaded, teacher_params, model_dir):
  """head='seg_cosine' = scale x cosine of the claim's and document's mean token vectors (NumPy on the encoder's
  output); matmul='bf16_f32' stays within bf16 rounding of f32, and gives gradients close to f32's."""
  pairs = [("Aspirin lowers fever.", "Aspirin is an analgesic that reduces fever."),
           ("Aspirin lowers fever.", "The stock market closed higher on Friday.")]
  ids, types, mask = _batch(tok.encode_batch(pairs))
  seg = dataclasses.replace(loaded[0], head="seg_cosine")
  params = init_teacher_params(seg, jax.random.key(0), model_dir, max_len=LEN)
  assert set(params) == {"encoder", "score_scale"} and float(params["score_scale"]) == 20.0
  logits = np.asarray(CrossEncoder(seg).apply({"params": params}, ids, types, mask))
  h = np.asarray(_encode(params["encoder"], ids, types, mask), np.float64)
  for i in range(2):
    a = h[i][(mask[i] > 0) & (types[i] == 0)].mean(0)
    b = h[i][(mask[i] > 0) & (types[i] == 1)].mean(0)
    np.testing.assert_allclose(logits[i], 20 * a @ b / np.linalg.norm(a) / np.linalg.norm(b), rtol=1e-4)
  assert logits[0] > logits[1] + 2  # meaningful before any training

  fast = dataclasses.replace(seg, matmul="bf16_f32")
  loss = lambda cfg: jax.value_and_grad(lambda p: CrossEncoder(cfg).apply({"params": p}, ids, types, mask)[0])
  (v32, g32), (v16, g16) = loss(seg)(params), loss(fast)(params)
  assert abs(float(v16) - float(v32)) < 0.2
  k32 = np.asarray(g32["encoder"]["layer_2"]["intermediate"]["kernel"]).ravel()
  k16 = np.asarray(g16["encoder"]["layer_2"]["intermediate"]["kernel"]).ravel()
  assert k32 @ k16 / np.linalg.norm(k32) / np.linalg.norm(k16) > 0.98


def test_attention_dropout_matches_softmax_then_dropout(monkeypatch):
  """The attention divides by the softmax sum after the product and drops the unnormalised weights: with one
  fixed mask that must equal the textbook dropout(softmax(q k / sqrt d)) @ v, padding keys excluded."""
  from kd_jax.models import teacher  # pylint: disable=import-outside-toplevel
  c = TeacherConfig(vocab_size=10, hidden_size=8, num_layers=1, num_heads=2, intermediate_size=16,
                    max_position_embeddings=16, attention_dropout_rate=0.25)
  b, length, h, d = 2, 5, 2, 4
  rng = np.random.default_rng(0)
  keep = rng.random((b, h, length, length)) >= 0.25

  def fixed_dropout(module, x, deterministic, rate=None):
    del module
    if deterministic or rate is None:  # only the attention's call passes a rate
      return x
    return jnp.where(keep, x / 0.75, 0.0)

  monkeypatch.setattr(teacher, "_dropout", fixed_dropout)
  x = rng.normal(size=(b, length, c.hidden_size)).astype(np.float32)
  pad = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], np.int32)
  attn = teacher.SelfAttention(c)
  params = attn.init(jax.random.key(0), x, pad, True)
  out = np.asarray(attn.apply(params, x, pad, False))

  p = jax.tree.map(np.asarray, params["params"])
  proj = {n: (x @ p[n]["kernel"] + p[n]["bias"]).reshape(b, length, h, d).transpose(0, 2, 1, 3)
          for n in ("query", "key", "value")}
  s = proj["query"] @ proj["key"].transpose(0, 1, 3, 2) / math.sqrt(d)
  s = np.where(pad[:, None, None, :] > 0, s, -np.inf)
  probs = np.exp(s - s.max(-1, keepdims=True))
  probs /= probs.sum(-1, keepdims=True)
  ref = ((probs * keep / 0.75) @ proj["value"]).transpose(0, 2, 1, 3).reshape(b, length, c.hidden_size)
  np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)

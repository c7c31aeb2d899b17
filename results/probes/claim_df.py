"""Probe (not part of kd_jax; its output is claim_df.json beside it), run from the repository root:

  KD_JAX_DATA_DIR=../shared/data python results/probes/claim_df.py fever/cnn_student fever/lstm_student \
      main_hash/cnn_student+lex4k+oovlex+steps1200_s0 bilstm_layer/lstm_student+lex4k+oovlex_s0

Stop words (stopwords.py, stop_df 0.25) counted over the training documents alone, as before, or over the training
documents and the training claims (stage_inputs.StageInputs.word_freq, today's): each stage searching its own
collection and the other one at its kind's search defaults, without hub correction. (dev, test) nDCG@10 and hub %."""
import importlib, json, sys, dataclasses
from pathlib import Path
import ml_collections, numpy as np
sys.path.insert(0, ".")
from experiments import ablation, calibration as cexp, search_grid
from kd_jax import calibration, collection_eval, search, sharding, stopwords
from kd_jax.data import datasets
from kd_jax.modes import stage
mesh = sharding.make_mesh(1, 1)
out = {}
for st in sys.argv[1:]:
  d = Path("workdir") / st
  cfg = ml_collections.ConfigDict(json.loads((d / "config.json").read_text()))
  built, params, inputs = stage.student(cfg, d, mesh)
  kind = search_grid.stage_kind(d)
  train = datasets.load(cfg.data).splits["train"]
  docs_only = dataclasses.replace(inputs, claim_freq=None)
  new_ids = set(stopwords.stop_ids(inputs.word_freq, .25)) - set(stopwords.stop_ids(inputs.doc_freq, .25))
  print(st, "added stopwords:", sorted(inputs.vocab[i] for i in new_ids))
  for where, coll in (("own", cfg.data.name), ("other", ablation.OTHER[cfg.data.name])):
    cal = calibration.of(importlib.import_module(f"configs.{kind}_student").get_config(""), own=where == "own")
    src, index = cexp.stored_index(d, cfg, built, params, inputs, coll, 1500 if coll == "fever_titles" else 0, mesh)
    p = cal.params(params)
    texts = [t for _, t in src.documents()]
    docs = np.asarray(cal.docs(built, search.encode_docs(built, p, inputs.doc_words(texts), mesh)), np.float32)
    res = {}
    for label, inp in (("docs_df", docs_only), ("docs+claims_df", inputs)):
      for split in ("dev", "test"):
        c = src.claims(split)
        q = cal.claims(built, inp, search.encode_claims(built, p, inputs.claim_words(c.texts), mesh))
        f = collection_eval.corrected_figures(built, p, q, docs, src.collection().ids, c, None, mesh, {})
        res.setdefault(label, []).append((split, round(f["full_collection"]["ndcg@10"], 3), round(100 * f["hub"]["max_share"], 1)))
    print(st, where, res, flush=True)
    out.setdefault(st, {"added_stop_words": sorted(inputs.vocab[i] for i in new_ids)})[where] = res
Path("results/probes/claim_df.json").write_text(json.dumps(out, indent=1))

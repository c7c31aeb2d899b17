"""Probe (not part of kd_jax; its output is unlabelled_hub.json beside it), run from the repository root:

  KD_JAX_DATA_DIR=../shared/data python results/probes/unlabelled_hub.py [stages, e.g. fever/cnn_student_s1]

The FEVER-titles students at home, searched calibrated as mode=search does (configs/<kind>_student.py's defaults),
with the hub correction's bank and beta chosen on dev by hubness.choose_bank two ways: the hub ceiling checked on
dev's 667 claims alone (the rule until hub_norm.unlabelled_claims), and on those together with the training file's
3,277 unlabelled claims (NOT ENOUGH INFO; what mode=evaluate does now). Per bank and beta: dev nDCG@10, dev's hub,
the pooled hub, the unlabelled claims' own hub, and test nDCG@10 and hub; then each rule's choice and its test
figures."""
import importlib
import json
import sys
from pathlib import Path

import ml_collections
import numpy as np

sys.path.insert(0, ".")
from experiments import calibration as cexp  # noqa: E402
from kd_jax import calibration, collection_eval, hubness, search, sharding  # noqa: E402
from kd_jax.data import datasets, prepare  # noqa: E402
from kd_jax.modes import stage  # noqa: E402

STAGES = [f"fever/{kind}_student{seed}" for kind in ("cnn", "lstm") for seed in ("", "_s1", "_s2")]
MESH = sharding.make_mesh(1, 1)
TOP = collection_eval.HUB_K


def main():
  only = sys.argv[1:]
  path = Path("results/probes/unlabelled_hub.json")
  out = json.loads(path.read_text()) if path.is_file() else {"betas": hubness.BETAS, "rows": {}}
  for name in STAGES:
    if only and name not in only:
      continue
    d = Path("workdir") / name
    cfg = ml_collections.ConfigDict(json.loads((d / "config.json").read_text()))
    built, params, inputs = stage.student(cfg, d, MESH)
    kind = "lstm" if cfg.model.kind == "lstm" else "cnn"
    defaults = importlib.import_module(f"configs.{kind}_student").get_config("")
    h = collection_eval.hub_norm_settings(defaults)
    cal = calibration.of(defaults, own=True)
    src, _ = cexp.stored_index(d, cfg, built, params, inputs, cfg.data.name, 0, MESH)
    p = cal.params(params)
    texts = [t for _, t in src.documents()]
    docs = np.asarray(cal.docs(built, search.encode_docs(built, p, inputs.doc_words(texts), MESH)), np.float32)
    doc_ids = src.collection().ids
    enc = lambda t: cal.claims(built, inputs, np.asarray(search.encode_claims(  # noqa: E731
        built, p, inputs.claim_words(t), MESH)))
    sets = {s: src.claims(s) for s in ("dev", "test")}
    vecs = {s: enc(c.texts) for s, c in sets.items()}
    unlabelled = datasets.load(cfg.data).unlabelled
    extra = enc(unlabelled)
    words = lambda rows: inputs.claim_words([texts[int(r)] for r in rows])  # noqa: E731
    pens = {"documents": hubness.collection_penalty(built, p, docs, h, words, MESH,
                                                    lambda v: cal.claims(built, inputs, np.asarray(v))),
            "train": hubness.claims_penalty(built, p, enc(prepare.training_claims(cfg.data)), docs, int(h["k"]))}

    def figures(bias):
      f = {}
      for s in ("dev", "test"):
        sc, r = search.top_k(built, p, vecs[s], docs, 100, MESH, doc_bias=bias)
        f[s] = search.full_collection_metrics(sc, r, sets[s].ids, doc_ids, sets[s].qrels)["ndcg@10"]
        f[f"{s}_hub"] = collection_eval.hub_share(r)["max_share"]
        if s == "dev":
          dev_rows = r[:, :TOP]
      u = search.top_k(built, p, extra, docs, TOP, MESH, doc_bias=bias)[1]
      f["unlabelled_hub"] = collection_eval.hub_share(u)["max_share"]
      f["pooled_hub"] = collection_eval.hub_share(np.concatenate([dev_rows, u]))["max_share"]
      return f

    curves = {bank: {b: figures(b * pen) for b in hubness.BETAS} for bank, pen in pens.items()}
    row = {"calibration": cal.settings(), "claims": {**{s: len(c.ids) for s, c in sets.items()},
                                                     "unlabelled": len(unlabelled)},
           "curves": {bank: {f"{b:g}": v for b, v in c.items()} for bank, c in curves.items()}}
    for rule, hub in (("dev_only", "dev_hub"), ("pooled", "pooled_hub")):
      bank, beta = hubness.choose_bank({k: {b: (v["dev"], v[hub]) for b, v in c.items()} for k, c in curves.items()})
      f = curves[bank][beta]
      row[rule] = {"bank": bank, "beta": beta, "test_ndcg@10": f["test"], "test_hub": f["test_hub"]}
      print(name, rule, row[rule], flush=True)
    out["rows"][name] = row
    path.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
  main()

"""Probe (not part of kd_jax; its output is home_train_bank.json beside it), run from the repository root:

  KD_JAX_DATA_DIR=../shared/data python results/probes/home_train_bank.py

At home (each stage searching its own collection, calibrated as mode=search does: configs/<kind>_student.py's
search defaults), the hub correction's bank (kd_jax/hubness.py) made of the stage's own *training* claims (texts only;
disjoint from dev and test) against today's bank of the collection's documents read as claims. Per bank: dev and
test (nDCG@10, hub) per beta, beta chosen on dev by hubness.choose_beta; and the bank itself chosen on dev by the
same rule over both banks' betas."""
import importlib
import json
import sys
from pathlib import Path

import ml_collections
import numpy as np

sys.path.insert(0, ".")
from experiments import calibration as cexp  # noqa: E402
from kd_jax import calibration, collection_eval, hubness, search, sharding  # noqa: E402
from kd_jax.data import prepare  # noqa: E402
from kd_jax.modes import stage  # noqa: E402

STAGES = [f"main_hash/cnn_student+lex4k+oovlex+steps1200_s{s}" for s in range(3)] + \
         [f"bilstm_layer/lstm_student+lex4k+oovlex_s{s}" for s in range(3)] + ["fever/cnn_student", "fever/lstm_student"]
MESH = sharding.make_mesh(1, 1)


def main():
  only = sys.argv[1:]
  path = Path("results/probes/home_train_bank.json")
  out = json.loads(path.read_text()) if path.is_file() else {"betas": hubness.BETAS, "rows": {}}
  for name in STAGES:
    if only and not any(o in name for o in only):
      continue
    d = Path("workdir") / name
    cfg = ml_collections.ConfigDict(json.loads((d / "config.json").read_text()))
    built, params, inputs = stage.student(cfg, d, MESH)
    kind = "lstm" if cfg.model.kind == "lstm" else "cnn"
    defaults = importlib.import_module(f"configs.{kind}_student").get_config("")
    h = collection_eval.hub_norm_settings(defaults)
    cal = calibration.of(defaults, own=True)
    src, index = cexp.stored_index(d, cfg, built, params, inputs, cfg.data.name, 0, MESH)
    p = cal.params(params)
    texts = [t for _, t in src.documents()]
    docs = np.asarray(cal.docs(built, search.encode_docs(built, p, inputs.doc_words(texts), MESH)), np.float32)
    doc_ids = src.collection().ids
    enc = lambda t: cal.claims(built, inputs, np.asarray(search.encode_claims(  # noqa: E731
        built, p, inputs.claim_words(t), MESH)))
    sets = {s: src.claims(s) for s in ("dev", "test")}
    vecs = {s: enc(c.texts) for s, c in sets.items()}
    words = lambda rows: inputs.claim_words([texts[int(r)] for r in rows])  # noqa: E731
    pens = {"documents": hubness.collection_penalty(built, p, docs, h, words, MESH,
                                                    lambda v: cal.claims(built, inputs, np.asarray(v))),
            "train": hubness.claims_penalty(built, p, enc(prepare.training_claims(cfg.data)), docs, int(h["k"]))}

    def figures(bias, s):
      sc, r = search.top_k(built, p, vecs[s], docs, 100, MESH, doc_bias=bias)
      m = search.full_collection_metrics(sc, r, sets[s].ids, doc_ids, sets[s].qrels)
      return (m["ndcg@10"], collection_eval.hub_share(r)["max_share"])

    row = {"calibration": cal.settings(), "claims": {s: len(c.ids) for s, c in sets.items()}}
    both = {}
    for bank, pen in pens.items():
      curve = {b: {"dev": figures(b * pen, "dev"), "test": figures(b * pen, "test")} for b in hubness.BETAS}
      chosen = hubness.choose_beta({b: v["dev"] for b, v in curve.items()})
      row[bank] = {"curve": {f"{b:g}": v for b, v in curve.items()}, "chosen": chosen}
      both.update({(bank, b): v["dev"] for b, v in curve.items()})
      print(name, bank, "chosen", chosen, {b: tuple(round(x, 3) for x in v["dev"] + v["test"])
                                            for b, v in curve.items()}, flush=True)
    # The bank chosen on dev too: choose_beta's rule over (bank, beta) pairs (ties: the documents' bank, listed first).
    keys = list(both)
    pick = hubness.choose_beta({i: both[k] for i, k in enumerate(keys)})
    row["bank_chosen"] = list(keys[pick])
    print(name, "bank chosen", keys[pick], flush=True)
    out["rows"][name] = row
    path.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
  main()

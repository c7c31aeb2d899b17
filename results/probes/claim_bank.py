"""Probe (not part of kd_jax; its output is claim_bank.json beside it), run from the repository root:

  KD_JAX_DATA_DIR=../shared/data python results/probes/claim_bank.py

The hub correction (kd_jax/hubness.py: score - beta x r_d, r_d a document's mean of its k best scores over a bank of
queries) with a bank of real claims instead of the collection's documents read as claims. On FEVER-titles the
documents read as claims are 2-6-word titles, nothing like the claims, and dev chose a beta that raised the BiLSTM's
hub (17.3% -> 21.3%). Here the bank is the searched collection's dev claims (texts only, no labels), each stage
searching its own collection and the other one at its config's search defaults (configs/<kind>_student.py).

- beta is chosen on dev by cross-fitting: the bank is one half of the dev claims and the other half is scored, both
  ways, mean nDCG@10; test is then searched with the whole dev set as the bank, at that beta.
- `plain`: r_d as hubness.py; `clipped`: max(r_d - median r, 0), so only documents that score above the usual level
  against the bank lose, and none gains (plain CSLS pushes documents far from every bank query up at large beta).
Printed per stage and collection: dev (cross-fitted) and test (nDCG@10, hub %) per beta."""
import importlib
import json
import sys
from pathlib import Path

import jax.numpy as jnp
import ml_collections
import numpy as np

sys.path.insert(0, ".")
from experiments import ablation, calibration as cexp  # noqa: E402
from kd_jax import calibration, collection_eval, search, sharding  # noqa: E402
from kd_jax.data import datasets  # noqa: E402
from kd_jax.modes import stage  # noqa: E402

STAGES = [f"main_hash/cnn_student+lex4k+oovlex+steps1200_s{s}" for s in range(3)] + \
         [f"bilstm_layer/lstm_student+lex4k+oovlex_s{s}" for s in range(3)] + ["fever/cnn_student", "fever/lstm_student"]
BETAS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5)
MESH = sharding.make_mesh(1, 1)


def sub(c, idx):
  ids = [c.ids[i] for i in idx]
  return datasets.ClaimSet(ids=ids, texts=[c.texts[i] for i in idx], qrels={q: c.qrels[q] for q in ids}, stats={})


def penalty(bank_vecs, docs, k, mode):
  r = np.sort(np.asarray(jnp.asarray(bank_vecs) @ jnp.asarray(docs).T), 0)[-k:].mean(0)
  return np.maximum(r - np.median(r), 0) if mode == "clipped" else r


def main():
  out = {"betas": BETAS, "rows": {}}
  for name in STAGES:
    d = Path("workdir") / name
    cfg = ml_collections.ConfigDict(json.loads((d / "config.json").read_text()))
    built, params, inputs = stage.student(cfg, d, MESH)
    kind = "lstm" if cfg.model.kind == "lstm" else "cnn"
    defaults = importlib.import_module(f"configs.{kind}_student").get_config("")
    k = collection_eval.hub_norm_settings(cfg)["k"]
    for where, coll in (("own", cfg.data.name), ("other", ablation.OTHER[cfg.data.name])):
      cal = calibration.of(defaults, own=where == "own")
      src, _ = cexp.stored_index(d, cfg, built, params, inputs, coll, 1500 if coll == "fever_titles" else 0, MESH)
      texts = [t for _, t in src.documents()]
      p = cal.params(params)
      docs = np.asarray(cal.docs(built, search.encode_docs(built, p, inputs.doc_words(texts), MESH)), np.float32)
      doc_ids = src.collection().ids
      enc = lambda c: cal.claims(built, inputs, np.asarray(search.encode_claims(  # noqa: E731
          built, p, inputs.claim_words(c.texts), MESH)))
      dev, test = src.claims("dev"), src.claims("test")
      qd, qt = enc(dev), enc(test)
      halves = np.array_split(np.random.default_rng(0).permutation(len(dev.ids)), 2)

      def figures(bias, claims, q):
        s, r = search.top_k(built, p, q, docs, 100, MESH, doc_bias=bias)
        m = search.full_collection_metrics(s, r, claims.ids, doc_ids, claims.qrels)
        return {"ndcg@10": m["ndcg@10"], "hub": collection_eval.hub_share(r)["max_share"]}

      row = {"calibration": cal.settings()}
      for mode in ("plain", "clipped"):
        pens = [penalty(qd[h], docs, k, mode) for h in halves]
        full = penalty(qd, docs, k, mode)
        for beta in BETAS:
          cross = [figures(beta * pens[a], sub(dev, halves[1 - a]), qd[halves[1 - a]]) for a in (0, 1)]
          row.setdefault(mode, {})[f"{beta:g}"] = {
              "dev": {m: float(np.mean([c[m] for c in cross])) for m in ("ndcg@10", "hub")},
              "test": figures(beta * full, test, qt)}
        r = row[mode]
        best = max(BETAS, key=lambda b: round(r[f"{b:g}"]["dev"]["ndcg@10"], 6))
        row[mode + "_chosen"] = best
        print(name, where, mode, "chosen", best, {b: (round(v["dev"]["ndcg@10"], 3), round(100 * v["dev"]["hub"], 1),
                                                     round(v["test"]["ndcg@10"], 3), round(100 * v["test"]["hub"], 1))
                                                 for b, v in r.items()}, flush=True)
      out["rows"].setdefault(name, {})[where] = row
    Path("results/probes/claim_bank.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
  main()

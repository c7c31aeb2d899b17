"""Three search-time probes against the hubs left after calibration (README, "Lexical norms too"), on the main
commands' CNN and BiLSTM (3 seeds each), each searching SciFact and FEVER-titles (first 1,500 test claims) calibrated
as chosen (stop_df 0.25; dense norms 0.25 at home, 1 elsewhere; lexical norms 0 at home, 1 elsewhere, except the
querybank rows, measured before the lexical norms existed, without them):
- `coverage`: each document's dense part times (share of its words in the student's vocabulary) ** s;
- `center`: the dense parts less c x the searched collection's mean dense document vector, before the norm pull;
- `querybank`: the hub correction (kd_jax/hubness.py, bank of 2,000 documents read as claims, k 10) on top, at beta.
Not part of kd_jax; a record of how hub_search_time.json was made:

  KD_JAX_DATA_DIR=../shared/data python results/probes/hub_search_time.py
"""
import json
import sys
from pathlib import Path

import ml_collections
import numpy as np

sys.path.insert(0, ".")  # run from the repository root
from experiments import ablation, calibration as cexp  # noqa: E402
from kd_jax import calibration, collection_eval, doc_norms, hubness, search, sharding  # noqa: E402
from kd_jax.data import tokenize  # noqa: E402
from kd_jax.modes import stage  # noqa: E402

STAGES = [f"workdir/main_hash/cnn_student+lex4k+oovlex+steps1200_s{s}" for s in range(3)] + \
         [f"workdir/bilstm_layer/lstm_student+lex4k+oovlex_s{s}" for s in range(3)]
GRID = {"coverage": (0.0, 0.5, 1.0, 2.0), "center": (0.0, 0.5, 0.75, 1.0), "querybank": hubness.BETAS}


def main():
  mesh = sharding.make_mesh(1, 1)
  out = {"stages": STAGES, "grid": {k: list(v) for k, v in GRID.items()}, "rows": {}}
  for st in STAGES:
    d = Path(st)
    cfg = ml_collections.ConfigDict(json.loads((d / "config.json").read_text()))
    built, params, inputs = stage.student(cfg, d, mesh)
    dim = doc_norms.dense_dim(built)
    for where, (name, max_claims) in {"own": (cfg.data.name, 0), "other": (ablation.OTHER[cfg.data.name], 1500)}.items():
      src, index = cexp.stored_index(d, cfg, built, params, inputs, name, max_claims, mesh)
      raw = np.array(index.read()[0], np.float32)
      doc_ids = index.read()[1]
      texts = [t for _, t in src.documents()]
      home = where == "own"
      cal = calibration.Calibration(doc_norms=0.25 if home else 1.0, stop_df=0.25, lex_norms=0.0 if home else 1.0)
      before_lex = calibration.Calibration(doc_norms=cal.doc_norms, stop_df=0.25)
      cov = tokenize.coverage(inputs.doc_words(texts), len(inputs.vocab))
      mu = raw[:, :dim].mean(0)
      bank = hubness.bank_rows(len(raw), 2000, 0)
      bank_vecs = before_lex.claims(built, inputs, search.encode_claims(
          built, params, inputs.claim_words([texts[r] for r in bank]), mesh))
      qb_docs = np.asarray(before_lex.docs(built, raw))
      penalty = hubness.doc_penalty(built, params, bank_vecs, bank, qb_docs, 10)
      for split in ("dev", "test"):
        claims = src.claims(split)
        q = cal.claims(built, inputs, search.encode_claims(built, params, inputs.claim_words(claims.texts), mesh))

        def measure(docs, bias=None):
          scores, rows = search.top_k(built, params, q, docs, 100, mesh, doc_bias=bias)
          m = search.full_collection_metrics(scores, rows, claims.ids, doc_ids, claims.qrels)
          return {"ndcg@10": m["ndcg@10"], "hub": collection_eval.hub_share(rows)["max_share"]}
        row = out["rows"].setdefault(st, {}).setdefault(where, {}).setdefault(split, {})
        calibrated = np.asarray(cal.docs(built, raw))
        for s in GRID["coverage"]:
          docs = calibrated.copy()
          docs[:, :dim] *= (cov ** s)[:, None].astype(np.float32)
          row.setdefault("coverage", {})[f"{s:g}"] = measure(docs)
        for c in GRID["center"]:
          shifted = raw.copy()
          shifted[:, :dim] -= c * mu[None]
          row.setdefault("center", {})[f"{c:g}"] = measure(np.asarray(cal.docs(built, shifted)))
        for b in GRID["querybank"]:
          row.setdefault("querybank", {})[f"{b:g}"] = measure(qb_docs, b * penalty)
      print(st, where, flush=True)
  Path("results/probes/hub_search_time.json").write_text(json.dumps(out, indent=1))
  for fam in ("cnn", "lstm"):
    for where in ("own", "other"):
      for probe, values in GRID.items():
        for v in values:
          got = {sp: np.mean([[out["rows"][st][where][sp][probe][f"{v:g}"][k] for k in ("ndcg@10", "hub")]
                              for st in STAGES if fam in Path(st).name[:4]], 0) for sp in ("dev", "test")}
          print(fam, where, probe, v, "dev %.4f hub %.3f | test %.4f hub %.3f" % (*got["dev"], *got["test"]))


if __name__ == "__main__":
  main()

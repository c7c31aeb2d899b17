"""Probe (not part of kd_jax; its output is own_claims_bank.json beside it), run from the repository root:

  KD_JAX_DATA_DIR=../shared/data python results/probes/own_claims_bank.py

On a collection the student was not trained on and with no claims of it at hand, the hub correction's bank can only
be that collection's documents read as claims (dev chose none of it: search.hub_beta_other 0) or claims the stage
already has: its own training claims (texts only). Here each stage searches the other dataset's collection at its
kind's search defaults (configs/<kind>_student.py) with the training claims of its own dataset as the bank, at each
k and beta; dev and test (nDCG@10, hub) of the searched collection (its dev claims are not in the bank, so no
cross-fitting is needed)."""
import importlib
import json
import sys
from pathlib import Path

import ml_collections
import numpy as np

sys.path.insert(0, ".")
from experiments import ablation, calibration as calibration_experiment, claim_bank, search_grid  # noqa: E402
from kd_jax import calibration, collection_eval, hubness, search, sharding  # noqa: E402
from kd_jax.data import prepare  # noqa: E402
from kd_jax.modes import stage  # noqa: E402

KS = (10, 50, 100)
BETAS = (0.0, 0.25, 0.5, 0.75, 1.0)
MESH = sharding.make_mesh(1, 1)


def main():
  out = {"ks": KS, "betas": BETAS, "stages": {}}
  for name in calibration_experiment.finished_stages("workdir", [], claim_bank.STAGES, (0, 1, 2)):
    d = Path("workdir") / name
    cfg = ml_collections.ConfigDict(json.loads((d / "config.json").read_text()))
    built, params, inputs = stage.student(cfg, d, MESH)
    kind = search_grid.stage_kind(d)
    cal = calibration.of(importlib.import_module(f"configs.{kind}_student").get_config(""), own=False)
    other = ablation.OTHER[cfg.data.name]
    src, index = calibration_experiment.stored_index(d, cfg, built, params, inputs, other,
                                                     1500 if other == "fever_titles" else 0, MESH)
    p = cal.params(params)
    texts = [t for _, t in src.documents()]
    doc_vecs = search.encode_docs(built, p, inputs.doc_words(texts), MESH) if cal.encodes else index.read()[0]
    docs = np.asarray(cal.docs(built, doc_vecs), np.float32)
    enc = lambda t: cal.claims(built, inputs, search.encode_claims(built, p, inputs.claim_words(t), MESH))  # noqa: E731
    sets = {s: src.claims(s) for s in ("dev", "test")}
    vecs = {s: enc(c.texts) for s, c in sets.items()}
    bank = enc(prepare.training_claims(cfg.data))
    rows = {}
    for k in KS:
      pen = hubness.claims_penalty(built, p, bank, docs, k)
      for b in BETAS:
        for s, c in sets.items():
          f = collection_eval.corrected_figures(built, p, vecs[s], docs, src.collection().ids, c, b * pen, MESH, {})
          rows.setdefault(str(k), {}).setdefault(f"{b:g}", {})[s] = (f["full_collection"]["ndcg@10"],
                                                                     f["hub"]["max_share"])
    out["stages"][name] = {"kind": kind, "other": other, "bank_claims": len(bank), "rows": rows}
    print(name, {k: {b: [round(x, 3) for x in v["dev"] + v["test"]] for b, v in r.items()} for k, r in rows.items()},
          flush=True)
    Path("results/probes/own_claims_bank.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
  main()

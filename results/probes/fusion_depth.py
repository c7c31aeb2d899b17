"""Probe (not part of kd_jax; its output is fusion_depth.json beside it), run from the repository root:

  KD_JAX_DATA_DIR=../shared/data python results/probes/fusion_depth.py workdir/main_hash

The fusion pool's depth (hybrid.depth: each system's top-`depth` documents are pooled, standardised and fused, the
best 100 kept): z-score and zcoverage fusion with BM25 at depths 20-400, the weight chosen on dev per seed."""
import json
import sys

import numpy as np

import probe_common
from kd_jax import collection_eval, hybrid, search
from kd_jax.data import candidates

W = hybrid.WEIGHTS
DEPTHS = [20, 50, 100, 200, 400]
mesh = probe_common.MESH
out = {}
for seed in range(3):
  stage_dir, cfg, built, params, inputs, src, doc_vecs, doc_ids = probe_common.load(sys.argv[1], seed)
  coll = src.collection()
  bm = candidates.BM25Index(coll)
  for depth in DEPTHS:
    res = {}
    for split in ("dev", "test"):
      claims = src.claims(split)
      cv = search.encode_claims(built, params, inputs.claim_words(claims.texts), mesh)
      pool = hybrid.full_collection_pool(built, params, cv, doc_vecs, claims.texts, claims.ids, claims.qrels, bm, mesh,
                                         depth, *collection_eval.reach_of(inputs, claims.texts, coll))
      res[split] = {m: {w: hybrid.full_collection_metrics(pool, m, w, doc_ids, 100)["ndcg@10"] for w in W}
                    for m in ("zscore", "zcoverage")}
    row = {}
    for m in ("zscore", "zcoverage"):
      best = max(W, key=lambda w: (res["dev"][m][w], -w))
      row[m] = {"weight": best, "dev": res["dev"][m][best], "test": res["test"][m][best]}
    out[f"s{seed} depth={depth}"] = row
    print(seed, depth, row, flush=True)
json.dump(out, open("results/probes/fusion_depth.json", "w"), indent=1)
for depth in DEPTHS:
  for m in ("zscore", "zcoverage"):
    rows = [out[f"s{s} depth={depth}"][m] for s in range(3)]
    print(depth, m, "dev", round(np.mean([r["dev"] for r in rows]), 4), "test",
          round(np.mean([r["test"] for r in rows]), 4), "+-", round(np.std([r["test"] for r in rows]), 4))

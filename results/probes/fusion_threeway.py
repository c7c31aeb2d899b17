"""Probe (not part of kd_jax; its output is fusion_threeway.json beside it), run from the repository root:

  KD_JAX_DATA_DIR=../shared/data python results/probes/fusion_threeway.py workdir/main_hash

Three-way z-score fusion: the student's dense part, its lexical part, BM25; weights chosen on dev."""
import itertools
import json
import sys

import numpy as np

import probe_common
from kd_jax import collection_eval, fusion, hybrid, metrics, search
from kd_jax.data import candidates

G = [round(x, 2) for x in np.arange(0, 1.01, 0.1)]
mesh = probe_common.MESH
out = {}
for seed in range(3):
  stage_dir, cfg, built, params, inputs, src, doc_vecs, doc_ids = probe_common.load(sys.argv[1], seed)
  D = cfg.model.out_dim
  coll = src.collection()
  bm = candidates.BM25Index(coll)
  res = {}
  for split in ("dev", "test"):
    claims = src.claims(split)
    cv = search.encode_claims(built, params, inputs.claim_words(claims.texts), mesh)
    pool = hybrid.full_collection_pool(built, params, cv, doc_vecs, claims.texts, claims.ids, claims.qrels, bm, mesh,
                                       100, *collection_eval.reach_of(inputs, claims.texts, coll))
    dv = doc_vecs[np.maximum(pool.rows, 0)]
    dense = np.einsum("qd,qud->qu", cv[:, :D], dv[..., :D])
    lex = np.einsum("qd,qud->qu", cv[:, D:], dv[..., D:])
    zd, zl, zb = (fusion.standardise(x, pool.mask) for x in (dense, lex, pool.bm25))
    r = {}
    for wd, wl in itertools.product(G, G):
      if wd + wl > 1.0001:
        continue
      f = np.where(pool.mask, wd * zd + wl * zl + (1 - wd - wl) * zb, -np.inf)
      run = search.run_from_arrays(f, pool.rows, pool.mask, pool.claim_ids, doc_ids, 100)
      r[(wd, wl)] = metrics.evaluate_run(run, pool.qrels, ks=(10,))["ndcg@10"]
    res[split] = r
  best = max(res["dev"], key=lambda k: (res["dev"][k], -k[0] - k[1]))
  out[seed] = res
  print(seed, "best", best, round(res["dev"][best], 4), round(res["test"][best], 4), flush=True)
json.dump({f"s{s}": {split: {f"dense={k[0]:g} lexical={k[1]:g}": v for k, v in r.items()} for split, r in d.items()}
           for s, d in out.items()}, open("results/probes/fusion_threeway.json", "w"), indent=1)
keys = list(out[0]["dev"])
mean_dev = {k: np.mean([out[s]["dev"][k] for s in out]) for k in keys}
for k in sorted(keys, key=lambda k: -mean_dev[k])[:8]:
  print(k, round(mean_dev[k], 4), round(np.mean([out[s]["test"][k] for s in out]), 4),
        [round(out[s]["test"][k], 4) for s in out])

"""Probe (not part of kd_jax; its output is fusion_feedback.json beside it), run from the repository root:

  KD_JAX_DATA_DIR=../shared/data python results/probes/fusion_feedback.py workdir/main_hash 0,1,2

Dense Rocchio pseudo-relevance feedback for the student, then z-score / zcoverage fusion with BM25.
q' = q + beta_d * |q_d|/|m_d| * m_d (dense part) + beta_l * |q_l|/|m_l| * m_l (lexical part), m = mean of the top-k
documents' vectors from a first pass (student alone, or the zcoverage fusion at the stage's dev weight)."""
import itertools
import json
import sys
import time

import numpy as np

import probe_common
from kd_jax import collection_eval, fusion, hybrid, search
from kd_jax.data import candidates

W = hybrid.WEIGHTS
KS = [3, 5, 10]
BETAS = [0.0, 0.25, 0.5, 1.0]
out = {}
mesh = probe_common.MESH
for seed in [int(s) for s in sys.argv[2].split(",")]:
  stage_dir, cfg, built, params, inputs, src, doc_vecs, doc_ids = probe_common.load(sys.argv[1], seed)
  D = cfg.model.out_dim
  coll = src.collection()
  bm = candidates.BM25Index(coll)
  w0 = collection_eval.own_dev_weights(stage_dir, ("zcoverage",))["zcoverage"]
  data = {}
  for split in ("dev", "test"):
    claims = src.claims(split)
    cv = search.encode_claims(built, params, inputs.claim_words(claims.texts), mesh)
    reach = collection_eval.reach_of(inputs, claims.texts, coll)
    pool = hybrid.full_collection_pool(built, params, cv, doc_vecs, claims.texts, claims.ids, claims.qrels, bm, mesh,
                                       100, *reach)
    fused = fusion.fuse("zcoverage", pool.student, pool.bm25, w0, pool.mask, pool.reach)
    order = np.argsort(-fused, axis=1)
    first = {"student": search.top_k(built, params, cv, doc_vecs, 10, mesh)[1],
             "fused": np.take_along_axis(pool.rows, order[:, :10], 1)}
    data[split] = (claims, cv, reach, first)
  t0 = time.time()
  for source, k, bd, bl in itertools.product(("student", "fused"), KS, BETAS, BETAS):
    if bd == 0 and bl == 0 and (source, k) != ("student", 3):
      continue
    res = {}
    for split, (claims, cv, reach, first) in data.items():
      q = probe_common.rocchio(cv, doc_vecs, first[source], k, D, bd, bl)
      pool = hybrid.full_collection_pool(built, params, q, doc_vecs, claims.texts, claims.ids, claims.qrels, bm, mesh,
                                         100, *reach)
      res[split] = {"alone": hybrid.full_collection_metrics(pool, "linear", 1.0, doc_ids)["ndcg@10"]}
      for meth in ("zscore", "zcoverage"):
        res[split][meth] = {w: hybrid.full_collection_metrics(pool, meth, w, doc_ids)["ndcg@10"] for w in W}
    row = {"alone": (round(res["dev"]["alone"], 4), round(res["test"]["alone"], 4))}
    for meth in ("zscore", "zcoverage"):
      best = max(W, key=lambda w: (res["dev"][meth][w], -w))
      row[meth] = (best, round(res["dev"][meth][best], 4), round(res["test"][meth][best], 4))
    key = f"s{seed} {source} k={k} bd={bd} bl={bl}"
    out[key] = row
    print(key, row, f"{time.time()-t0:.0f}s", flush=True)
    json.dump(out, open("results/probes/fusion_feedback.json", "w"), indent=1)

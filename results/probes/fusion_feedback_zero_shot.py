"""Probe (not part of kd_jax; its output is fusion_feedback_zero_shot.json beside it), run from the repository root
after fusion_feedback.py:

  KD_JAX_DATA_DIR=../shared/data python results/probes/fusion_feedback_zero_shot.py workdir/main_hash

The feedback round zero-shot on FEVER-titles (first 1,500 test claims), weights from own (SciFact) dev."""
import json
import sys

import numpy as np

import probe_common
from kd_jax import collection_eval, fusion, hybrid, search

probe = {}
probe.update(json.load(open("results/probes/fusion_feedback.json")))
out = {}
CFGS = [(3, 0.0, 0.25), (3, 0.25, 0.0), (3, 0.25, 0.25), (3, 0.5, 0.25), (3, 0.5, 0.5)]
mesh = probe_common.MESH
for seed in range(3):
  stage_dir, cfg, built, params, inputs, src, doc_vecs, doc_ids = probe_common.load(sys.argv[1], seed,
                                                                                     "fever_titles", 1500)
  D = cfg.model.out_dim
  coll = src.collection()
  bm = src.bm25
  w0 = collection_eval.own_dev_weights(stage_dir, ("zcoverage", "zscore"))
  claims = src.claims("test")
  cv = search.encode_claims(built, params, inputs.claim_words(claims.texts), mesh)
  reach = collection_eval.reach_of(inputs, claims.texts, coll)
  pool = hybrid.full_collection_pool(built, params, cv, doc_vecs, claims.texts, claims.ids, claims.qrels, bm, mesh,
                                     100, *reach)
  base = {m: hybrid.full_collection_metrics(pool, m, w0[m], doc_ids)["ndcg@10"] for m in ("zscore", "zcoverage")}
  fused = fusion.fuse("zcoverage", pool.student, pool.bm25, w0["zcoverage"], pool.mask, pool.reach)
  top = np.take_along_axis(pool.rows, np.argsort(-fused, axis=1)[:, :10], 1)
  out[f"s{seed} base"] = {**{m: round(v, 4) for m, v in base.items()},
                          "bm25": round(hybrid.full_collection_metrics(pool, "linear", 0.0, doc_ids)["ndcg@10"], 4)}
  for k, bd, bl in CFGS:
    q = probe_common.rocchio(cv, doc_vecs, top, k, D, bd, bl)
    p2 = hybrid.full_collection_pool(built, params, q, doc_vecs, claims.texts, claims.ids, claims.qrels, bm, mesh,
                                     100, *reach)
    row = probe[f"s{seed} fused k={k} bd={bd} bl={bl}"]
    res = {meth: round(hybrid.full_collection_metrics(p2, meth, row[meth][0], doc_ids)["ndcg@10"], 4)
           for meth in ("zscore", "zcoverage")}
    alone = hybrid.full_collection_metrics(p2, "linear", 1.0, doc_ids)["ndcg@10"]
    out[f"s{seed} k={k} bd={bd} bl={bl}"] = {**res, "alone": round(alone, 4)}
json.dump(out, open("results/probes/fusion_feedback_zero_shot.json", "w"), indent=1)

"""Probe (not part of kd_jax; its output is bm25_params_fusion.json beside it), run from the repository root:

  KD_JAX_DATA_DIR=../shared/data python results/probes/bm25_params_fusion.py

The main command's CNN (3 seeds, as trained) fused with BM25 over the whole SciFact collection, as mode=evaluate fuses
(hybrid.full_collection_pool, depth 100, the weight chosen on dev per method), with BM25 at its defaults (k1 1.2,
b 0.75) and at the k1 and b its own dev nDCG@10 prefers (k1 1.5, b 1: bm25_params.json)."""
import json
import sys
from pathlib import Path

import ml_collections
import numpy as np

sys.path.insert(0, ".")
from kd_jax import hybrid, search, sharding  # noqa: E402
from kd_jax.data import candidates, datasets, prepare, tokenize  # noqa: E402
from kd_jax.modes import stage  # noqa: E402

STAGES = [f"main_hash/cnn_student+lex4k+oovlex+steps1200_s{s}" for s in range(3)]
METHODS = ("linear", "zscore", "coverage", "zcoverage")
MESH = sharding.make_mesh(1, 1)


def main():
  out = {"stages": {}}
  for name in STAGES:
    d = Path("workdir") / name
    cfg = ml_collections.ConfigDict(json.loads((d / "config.json").read_text()))
    built, params, inputs = stage.student(cfg, d, MESH)
    prepared = prepare.prepare(cfg.data)
    data = datasets.load(cfg.data)
    doc_vecs = search.encode_collection(built, params, prepared, MESH)
    vocab_size = len(prepared.vocab)
    doc_cov = tokenize.coverage(prepared.docs_words, vocab_size)
    row = {}
    for label, (k1, b) in (("default", (1.2, 0.75)), ("dev_best", (1.5, 1.0))):
      bm25 = candidates.BM25Index(data.collection, k1, b)
      pools = {}
      for s in ("dev", "test"):
        src = prepared.source(s)
        ex = [src[i] for i in range(len(src))]
        ids = [e["claim_id"].decode() for e in ex]
        text = dict(zip(data.splits[s].ids, data.splits[s].texts))
        words = np.stack([e["claim_words"] for e in ex])
        pools[s] = hybrid.full_collection_pool(built, params, search.encode_claims(built, params, words, MESH), doc_vecs,
                                               [text[c] for c in ids], ids, prepared.qrels[s], bm25, MESH, 100,
                                               tokenize.coverage(words, vocab_size), lambda rows: doc_cov[rows])
      row[label] = {m: hybrid.choose(
          lambda w: hybrid.full_collection_metrics(pools["dev"], m, w, prepared.doc_ids),
          lambda w: hybrid.full_collection_metrics(pools["test"], m, w, prepared.doc_ids)) for m in METHODS}
      print(name, label, {m: (v["weight"], round(v["dev_ndcg@10"], 3), round(v["test"]["ndcg@10"], 3))
                          for m, v in row[label].items()}, flush=True)
    out["stages"][name] = row
  for label in ("default", "dev_best"):
    print(label, {m: round(float(np.mean([r[label][m]["test"]["ndcg@10"] for r in out["stages"].values()])), 4)
                  for m in METHODS})
  Path("results/probes/bm25_params_fusion.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
  main()

"""Probe (not part of kd_jax; its output is bm25_params.json beside it), run from the repository root:

  KD_JAX_DATA_DIR=../shared/data python results/probes/bm25_params.py

Would a BM25 tuned on dev lift the student + BM25 fusion? BM25 (kd_jax/data/candidates.py: bm25s, English stop words,
Snowball stemmer) over SciFact's whole collection at a 5 x 5 grid of k1 and b; nDCG@10 per split."""
import json
import sys
from pathlib import Path

sys.path.insert(0, ".")
from configs import cnn_student  # noqa: E402
from kd_jax import search  # noqa: E402
from kd_jax.data import candidates, datasets  # noqa: E402


def main():
  data = datasets.load(cnn_student.get_config().data)
  coll = data.collection
  rows = {}
  for k1 in (0.6, 0.9, 1.2, 1.5, 2.0):
    for b in (0.3, 0.5, 0.75, 0.9, 1.0):
      index = candidates.BM25Index(coll, k1, b)
      for split in ("train", "dev", "test"):
        claims = data.splits[split]
        top, scores = index.search(claims.texts, 100)
        m = search.full_collection_metrics(scores, top, claims.ids, coll.ids, claims.qrels)
        rows.setdefault(f"k1={k1:g} b={b:g}", {})[split] = m["ndcg@10"]
      print(k1, b, {s: round(v, 3) for s, v in rows[f"k1={k1:g} b={b:g}"].items()}, flush=True)
  best = max(rows, key=lambda r: rows[r]["dev"])
  out = {"default": "k1=1.2 b=0.75", "best_on_dev": best, "rows": rows}
  Path("results/probes/bm25_params.json").write_text(json.dumps(out, indent=1))
  print("default", rows["k1=1.2 b=0.75"], "best on dev", best, rows[best])


if __name__ == "__main__":
  main()

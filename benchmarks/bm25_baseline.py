"""BM25 (bm25s, Lucene BM25, English stopwords + Snowball stemming, title + text) on both collections.

  KD_JAX_DATA_DIR=../shared/data python -m benchmarks.bm25_baseline --out results/BM25.md

Full-collection ranking of each split's claims (top 100), scored with kd_jax.metrics; the first-stage
candidate recall the training pipeline sees is the recall@K column (K = data.num_candidates). Hub: the largest share
of claims with one document among their top 10 matching (score > 0) documents, the students' hub check for BM25.
"""

import argparse
import os
import time
from pathlib import Path

from configs import common
from kd_jax import metrics
from kd_jax.collection_eval import hub_share
from kd_jax.data import candidates, datasets

COLUMNS = ("mrr@10", "ndcg@10", "recall@1", "recall@10", "recall@16", "recall@20", "recall@100")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default="")
  args = parser.parse_args()
  lines = ["# BM25 baseline", "", f"`python -m benchmarks.bm25_baseline --out {args.out}` (load average at the start "
           f"{os.getloadavg()[0]:.1f}: claims/s fall with load)", "",
           "| dataset | split | claims | " + " | ".join(COLUMNS) + " | hub | claims/s |",
           "|---|---|---:|" + "---:|" * (len(COLUMNS) + 2)]
  for name in ("scifact", "fever_titles"):
    cfg = common.data_config()
    cfg.name = name
    data = datasets.load(cfg)
    index = candidates.BM25Index(data.collection)
    for split in ("train", "dev", "test"):
      claims = data.splits[split]
      start = time.perf_counter()
      rows, scores = index.search(claims.texts, 100)
      rate = len(claims) / (time.perf_counter() - start)
      run = {q: {data.collection.ids[r]: float(s) for r, s in zip(rows[i], scores[i])}
             for i, q in enumerate(claims.ids)}
      m = metrics.evaluate_run(run, claims.qrels, ks=(1, 10, 16, 20, 100))
      lines.append(f"| {name} ({len(data.collection):,} docs) | {split} | {m['num_queries']} | "
                   + " | ".join(f"{m[c]:.4f}" for c in COLUMNS)
                   + f" | {100 * hub_share(rows, 10, scores > 0)['max_share']:.1f}% | {rate:,.0f} |")
  lines += ["", "Published BEIR BM25 (Elasticsearch) on SciFact test: nDCG@10 0.665 (Thakur et al. 2021)."]
  text = "\n".join(lines) + "\n"
  print(text)
  if args.out:
    Path(args.out).write_text(text)


if __name__ == "__main__":
  main()

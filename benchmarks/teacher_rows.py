"""Rows that explain the teacher on SciFact: BM25, all-MiniLM-L6-v2 zero-shot as a bi-encoder, and finished
teacher runs (each with and without a dev-weighted BM25 term), on dev and test.

  KD_JAX_DATA_DIR=../shared/data python -m benchmarks.teacher_rows --out results/teacher.json \
      --teacher=teacher_256=workdir/teacher [--teacher=name=dir ...] [--probe=name=dir ...] \
      [--previous=git:600a5b9:results/results.json]

Writes the JSON, a Markdown section beside it (`teacher.md`) and RESULTS.md again (which includes it). `--probe` adds short recipe-selection runs'
dev curves (their metrics.jsonl); `--previous` adds the teacher row of an earlier results.json.

Reranking is over each claim's 16 BM25 candidates (the lists the students train on); the bi-encoder also searches
the whole collection (its published BEIR SciFact nDCG@10 is 0.645, with 256-token documents). A teacher row reads
that run's `eval_test.json` (mode=evaluate writes it, with the best checkpoint's dev figures and the BM25 term's
dev-chosen weight).
"""

import argparse
import json
import subprocess
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from configs import common
from experiments import reproduce, results_md
from kd_jax import metrics, pretrained
from kd_jax.data import prepare
from kd_jax.models import bi_encoder, hf_weights

MAX_LEN = 256  # sentence-transformers' max_seq_length for all-MiniLM-L6-v2


def _split_arrays(prepared, split):
  src = prepared.source(split)
  rows = [src[i] for i in range(len(src))]
  return {k: np.stack([r[k] for r in rows]) for k in ("claim_wp", "cand_index", "cand_labels", "cand_mask",
                                                      "num_relevant", "bm25_scores")} | {
      "claim_id": [r["claim_id"].decode() for r in rows]}


def bi_encoder_rows(prepared) -> dict:
  config, params = hf_weights.load_bert_encoder_params(pretrained.hf_model_dir())
  fn = bi_encoder.make_encoder(config)
  start = time.perf_counter()
  docs = bi_encoder.encode(fn, params, prepared.docs_wp, MAX_LEN)
  doc_seconds = time.perf_counter() - start
  out = {"docs_per_s": len(docs) / doc_seconds}
  for split in ("dev", "test"):
    a = _split_arrays(prepared, split)
    claims = bi_encoder.encode(fn, params, a["claim_wp"], MAX_LEN)
    cand = np.einsum("qd,qkd->qk", claims, docs[a["cand_index"]])
    full = claims @ docs.T
    top = np.argsort(-full, axis=1, kind="stable")[:, :100]
    run = {q: {prepared.doc_ids[r]: float(full[i, r]) for r in top[i]} for i, q in enumerate(a["claim_id"])}
    out[split] = {"rerank": metrics.evaluate_candidates(cand, a["cand_labels"], a["cand_mask"], a["num_relevant"]),
                  "full_collection": metrics.evaluate_run(run, {q: prepared.qrels[split][q] for q in a["claim_id"]})}
  return out


def bm25_rows(prepared) -> dict:
  out = {}
  for split in ("dev", "test"):
    a = _split_arrays(prepared, split)
    out[split] = {"rerank": metrics.evaluate_candidates(a["bm25_scores"], a["cand_labels"], a["cand_mask"],
                                                        a["num_relevant"])}
  return out


def teacher_rows(name: str, run_dir: Path) -> dict:
  path = run_dir / "eval_test.json"
  if not path.is_file():
    raise FileNotFoundError(f"{path} missing: run --config.mode=evaluate for teacher {name!r} first.")
  e = json.loads(path.read_text())
  if "dev_rerank" not in e or "bm25_term" not in e:
    raise ValueError(f"{path} predates the teacher's dev figures and BM25 term: rerun --config.mode=evaluate.")
  return {"dir": str(run_dir), "config": json.loads((run_dir / "config.json").read_text()),
          "dev": {"rerank": e["dev_rerank"]}, "test": {"rerank": e["rerank"]}, "bm25_term": e["bm25_term"]}


def probe_rows(run_dir: Path, window: tuple[int, int] = (10, 40)) -> dict:
  """A selection run's settings, dev nDCG@10 by step, its last logged step, and the mean training loss over
  `window` (steps, inclusive): one logged step is a single 4-claim batch, too noisy to compare runs by."""
  cfg = json.loads((run_dir / "config.json").read_text())
  lines = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines() if l.strip()]
  losses = [l["loss"] for l in lines if l["split"] == "train" and window[0] <= l["step"] <= window[1]]
  return {"dir": str(run_dir), "head": cfg["model"].get("head", "cls"), "learning_rate": cfg["train"]["learning_rate"],
          "planned_steps": cfg["train"]["steps"], "last_step": max((l["step"] for l in lines), default=0),
          "pair_len": cfg["model"]["pair_len"],
          "dev_ndcg@10": {str(l["step"]): l["ndcg@10"] for l in lines if l["split"] == "dev"},
          "loss_window": list(window), "mean_loss_in_window": sum(losses) / len(losses) if losses else float("nan")}


COLS = ("ndcg@10", "mrr@10", "map", "recall@1", "recall@5", "recall@10")


def markdown(r: dict, command: str) -> str:
  head = "| model | dev nDCG@10 | " + " | ".join(f"test {c}" for c in COLS) + " |"
  lines = ["## The teacher, and what explains it (SciFact)", "", f"Produced by `{command}`. SciFact; reranking each claim's {r['data']['num_candidates']} BM25 candidates "
           "(the lists the students learn from) unless marked full collection.", "", head,
           "|---|" + "---:|" * (len(COLS) + 1)]

  def row(name, dev, test):
    lines.append(f"| {name} | {dev:.3f} | " + " | ".join(f"{test[c]:.3f}" for c in COLS) + " |")
  row("BM25 (bm25s, stemmed): its own order", r["bm25"]["dev"]["rerank"]["ndcg@10"], r["bm25"]["test"]["rerank"])
  z = r["minilm_bi_encoder_zero_shot"]
  row("all-MiniLM-L6-v2 zero-shot bi-encoder (mean pooling, cosine)", z["dev"]["rerank"]["ndcg@10"],
      z["test"]["rerank"])
  row("same, full collection (BEIR's published figure: 0.645)", z["dev"]["full_collection"]["ndcg@10"],
      z["test"]["full_collection"])
  if "previous_teacher" in r:
    p = r["previous_teacher"]
    lines.append(f"| previous teacher ({p['recipe']}) | — | " + " | ".join(f"{p['rerank'][c]:.3f}" for c in COLS)
                 + " |")
  for name, t in r["teachers"].items():
    m = t["config"]["model"]
    tc = t["config"]["train"]
    masks = "hashed" if m.get("dropout_rng") == "hash" else f"{m.get('dropout_bits', 32)}-bit threefry"
    desc = (f"{name}: cross-encoder, {m['pair_len']} tokens, {m.get('head', 'cls')} head, {tc['steps']} steps x "
            f"{tc['batch_size']} claims x {tc.get('list_size') or 'all'} candidates, {masks} dropout masks")
    row(desc, t["dev"]["rerank"]["ndcg@10"], t["test"]["rerank"])
    b = t["bm25_term"]
    row(f"{name} + per-list BM25 term (teacher share {b['weight']:g}, chosen on dev)", b["dev_ndcg@10"], b["test"])
  if r.get("probes"):
    w = next(iter(r["probes"].values()))["loss_window"]
    lines += ["", "Recipe selection on dev (short runs, 256-token pairs, 4 claims x 4 candidates a step; 75 dev claims, "
              "so differences of a point are within noise). A listwise loss of log(4) = 1.386 is chance:", "",
              f"| run | head | learning rate | steps run (planned) | dev nDCG@10 by step | mean train loss, steps {w[0]}-{w[1]} |",
              "|---|---|---:|---:|---|---:|"]
    for name, p in r["probes"].items():
      curve = ", ".join(f"{s}: {v:.3f}" for s, v in p["dev_ndcg@10"].items()) or "—"
      lines.append(f"| {name} | {p['head']} | {p['learning_rate']:g} | {p['last_step']} ({p['planned_steps']}) | "
                   f"{curve} | {p['mean_loss_in_window']:.3f} |")
  return "\n".join(lines) + "\n"


def _read_previous(spec: str) -> str:
  """A file path, or `git:<rev>:<path>` for a results file as committed at <rev> (tables made by an earlier
  teacher stay citable after the reproduction overwrote them)."""
  if spec.startswith("git:"):
    return subprocess.run(["git", "show", spec[4:]], check=True, capture_output=True, text=True).stdout
  return Path(spec).read_text()


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default="results/teacher.json")
  parser.add_argument("--teacher", action="append", default=[], help="name=run_dir (repeatable)")
  parser.add_argument("--probe", action="append", default=[], help="name=run_dir of a selection run (repeatable)")
  parser.add_argument("--previous", default="", help="an earlier results.json (or git:<rev>:<path>) whose scifact "
                      "teacher row to show")
  args = parser.parse_args()
  cfg = common.data_config()
  prepared = prepare.prepare(cfg)
  result = {"data": {k: cfg[k] for k in ("name", "num_candidates", "doc_wp_len")}, "bm25": bm25_rows(prepared),
            "minilm_bi_encoder_zero_shot": bi_encoder_rows(prepared),
            "teachers": {n: teacher_rows(n, Path(d)) for n, d in (t.split("=", 1) for t in args.teacher)},
            "probes": {n: probe_rows(Path(d)) for n, d in (t.split("=", 1) for t in args.probe)}}
  if args.previous:
    old = json.loads(_read_previous(args.previous))
    result["previous_teacher"] = {
        "recipe": reproduce.teacher_desc(old["config"]).removeprefix("Teacher: ").rstrip("."),
        "rerank": old["datasets"]["scifact"]["rows"]["Teacher (MiniLM-L6 cross-encoder)"][0]["rerank"]}
  command = "python -m benchmarks.teacher_rows " + shlex.join(sys.argv[1:])
  result["command"] = command
  Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
  # Always `teacher.md` beside the JSON: RESULTS.md (experiments/results_md.py) includes it under that name.
  (Path(args.out).parent / "teacher.md").write_text(markdown(result, command))
  results_md.write(Path(args.out).parent)
  for name in ("bm25", "minilm_bi_encoder_zero_shot"):
    print(name, {s: round(result[name][s]["rerank"]["ndcg@10"], 4) for s in ("dev", "test")})


if __name__ == "__main__":
  main()

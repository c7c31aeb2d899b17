"""The paper's setting at its size: a student indexing and searching 5.4M documents (all of Wikipedia's FEVER pages)
on this machine. Writes results/wikipedia_scale.json, results/WIKIPEDIA_SCALE.md and the same table as a section of
results/BENCHMARKS.md (the README quotes it).

  KD_JAX_DATA_DIR=../shared/data python -m benchmarks.wikipedia_scale \
      --stage=workdir/reproduce/scifact/cnn_T2_a0.5_s0 --num_docs=5400000 --index_dir=/tmp/kd_jax_wiki

The documents are synthetic, and honest about it: each takes its length from SciFact's distribution (in the stage's
words, capped at its doc_word_len) and its words from the stage's own vocabulary, drawn with their frequencies in
SciFact (out-of-vocabulary words included). They are generated as the word ids the tokenizer would give, so the
indexing rate is the model's and the writer's; tokenising text is measured apart, on the real SciFact documents,
and the whole-pipeline time is given with it. Chunks are generated from (seed, chunk number), so a killed run
resumes where it stopped, like `mode=index`.

Measured: indexing docs/s and wall time, peak memory (max RSS, and per phase), index size on disk for float32,
bfloat16 and int8 (per-row scale), the recall cost of the compact forms on real SciFact, and search latency per
claim: exact chunked top-100 (`search.top_k`) over the memory-mapped float32 index and over the int8 one (decoded
chunk by chunk, compact.Table), one claim at a time and in batches, `lax.approx_max_k`, and an IVF index (k-means
lists, kd_jax/ivf.py) at a few probe counts, each approximate search with its recall@100 against exact.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import tempfile
import threading
import time
from pathlib import Path

import jax
import ml_collections
import numpy as np

from benchmarks import host, sections
from kd_jax import atomic, compact, ivf, search, sharding
from kd_jax.data import datasets
from kd_jax.modes import stage as stage_lib

REPO = Path(__file__).resolve().parents[1]
CHUNK = 16384


def peak_rss_gb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def _status_gb(field: str) -> float:
  for line in Path("/proc/self/status").read_text().splitlines():
    if line.startswith(field + ":"):
      return int(line.split()[1]) / 2**20  # kB
  return float("nan")


@contextlib.contextmanager
def phase_memory(into: dict, name: str):
  """Peak memory of one phase, two ways. Resident (VmHWM; Linux resets it when "5" is written to
  /proc/self/clear_refs) counts the pages of memory-mapped index files the phase touched: page cache, which the
  kernel drops under pressure. Private (RssAnon, sampled every 20 ms by a thread) is what the process itself needs."""
  Path("/proc/self/clear_refs").write_text("5")
  peak, done = [0.0], threading.Event()

  def sample():
    while not done.wait(0.02):
      peak[0] = max(peak[0], _status_gb("RssAnon"))
  thread = threading.Thread(target=sample, daemon=True)
  thread.start()
  try:
    yield
  finally:
    done.set()
    thread.join()
    into[name] = {"resident_peak_gb": _status_gb("VmHWM"), "private_peak_gb": max(peak[0], _status_gb("RssAnon"))}


def scifact_profile(inputs, data_cfg):
  """SciFact's documents in the stage's words: their lengths and the frequency of every id."""
  data = datasets.load(data_cfg)
  coll = data.collection
  texts = [coll.document(i) for i in range(len(coll))]
  start = time.perf_counter()
  ids = inputs.doc_words(texts)
  tokenize_rate = len(texts) / (time.perf_counter() - start)
  lengths = (ids != 0).sum(1)
  counts = np.bincount(ids[ids != 0], minlength=int(ids.max()) + 1).astype(np.float64)
  return lengths, counts / counts.sum(), tokenize_rate, data, ids


def synthetic_chunk(seed: int, i: int, n: int, width: int, lengths: np.ndarray, probs: np.ndarray) -> np.ndarray:
  rng = np.random.default_rng([seed, i])
  lens = rng.choice(lengths, n)
  words = rng.choice(len(probs), size=(n, width), p=probs).astype(np.int32)
  return np.where(np.arange(width)[None] < lens[:, None], words, 0)


def build_index(args, built, params, mesh, lengths, probs, width) -> dict:
  """float32 vectors in `<index_dir>/doc_vecs.npy`, resumable; returns docs/s over this run's chunks."""
  root = Path(args.index_dir)
  root.mkdir(parents=True, exist_ok=True)
  dim = int(search.encode_docs(built, params, np.ones((1, width), np.int32), mesh).shape[1])
  path, progress = root / "doc_vecs.npy", root / "progress.json"
  state = json.loads(progress.read_text()) if progress.is_file() else {}
  if state.get("num_docs") != args.num_docs or state.get("seed") != args.seed or not path.is_file():
    np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(args.num_docs, dim)).flush()
    state = {"num_docs": args.num_docs, "seed": args.seed, "done": 0, "encode_seconds": 0.0}
    atomic.write_text(progress, json.dumps(state))
  table = np.lib.format.open_memmap(path, mode="r+")
  while state["done"] < args.num_docs:
    start = time.perf_counter()
    n = min(CHUNK, args.num_docs - state["done"])
    ids = synthetic_chunk(args.seed, state["done"] // CHUNK, n, width, lengths, probs)
    table[state["done"]:state["done"] + n] = search.encode_docs(built, params, ids, mesh, batch_size=512)
    table.flush()
    state["done"] += n
    state["encode_seconds"] += time.perf_counter() - start
    atomic.write_text(progress, json.dumps(state))
    if state["done"] // CHUNK % 20 == 0 or state["done"] == args.num_docs:
      rate = state["done"] / state["encode_seconds"]
      print(f"[index] {state['done']:,}/{args.num_docs:,} ({rate:.0f} docs/s, "
            f"{(args.num_docs - state['done']) / rate / 60:.1f} min left, peak RSS {peak_rss_gb():.2f} GB)", flush=True)
  del table
  return {"docs_per_s": state["done"] / state["encode_seconds"], "encode_minutes": state["encode_seconds"] / 60,
          "dim": dim, "path": str(path)}


def quiet_rate(args, built, params, mesh, lengths, probs, width) -> float:
  """Docs/s encoding and writing `args.rate_docs` fresh synthetic documents (chunks the index does not hold) into a
  scratch table: the indexing rate of this process now, whatever load the resumable index was built under."""
  scratch = Path(args.index_dir) / "rate_scratch.npy"
  dim = int(search.encode_docs(built, params, np.ones((1, width), np.int32), mesh).shape[1])
  table = np.lib.format.open_memmap(scratch, mode="w+", dtype=np.float32, shape=(args.rate_docs, dim))
  start = time.perf_counter()
  for done in range(0, args.rate_docs, CHUNK):
    n = min(CHUNK, args.rate_docs - done)
    ids = synthetic_chunk(args.seed + 1, done // CHUNK, n, width, lengths, probs)
    table[done:done + n] = search.encode_docs(built, params, ids, mesh, batch_size=512)
    table.flush()
  rate = args.rate_docs / (time.perf_counter() - start)
  del table
  scratch.unlink()
  return rate


def compact_forms(f32_path: Path) -> dict:
  """bfloat16 and int8 with one float32 scale per row (kd_jax/compact.py, what mode=index writes with
  --config.index.dtype), converted chunk by chunk."""
  table = np.load(f32_path, mmap_mode="r")
  n, d = table.shape
  bf16 = np.lib.format.open_memmap(f32_path.with_name("doc_vecs_bf16.npy"), mode="w+", dtype=np.uint16, shape=(n, d))
  int8 = np.lib.format.open_memmap(f32_path.with_name("doc_vecs_int8.npy"), mode="w+", dtype=np.int8, shape=(n, d))
  scales = np.lib.format.open_memmap(f32_path.with_name("doc_scales.npy"), mode="w+", dtype=np.float32, shape=(n,))
  for start in range(0, n, 1 << 18):
    x = np.asarray(table[start:start + (1 << 18)])
    bf16[start:start + len(x)] = compact.to_bf16(x)
    q, s = compact.to_int8(x)
    int8[start:start + len(x)], scales[start:start + len(x)] = q, s
  for m in (bf16, int8, scales):
    m.flush()
  sizes = {name: os.path.getsize(f32_path.with_name(f)) / 2**30 for name, f in (
      ("float32", "doc_vecs.npy"), ("bfloat16", "doc_vecs_bf16.npy"), ("int8", "doc_vecs_int8.npy"))}
  sizes["int8"] += os.path.getsize(f32_path.with_name("doc_scales.npy")) / 2**30
  return sizes


def compact_recall_on_scifact(built, params, mesh, data, doc_ids_words, inputs) -> dict:
  """Whole-collection SciFact test figures with the index stored as float32, bfloat16 and int8 (decoded to score),
  and searched through an IVF of 64 lists."""
  vecs = search.encode_docs(built, params, doc_ids_words, mesh)
  test = data.splits["test"]
  claims = search.encode_claims(built, params, inputs.claim_words(test.texts), mesh)
  forms = {dtype: compact.decode(*compact.encode(vecs, dtype), dtype) for dtype in compact.DTYPES}
  out, exact_rows = {}, None
  for name, table in forms.items():
    scores, rows = search.top_k(built, params, claims, table, 100, mesh)
    if exact_rows is None:
      exact_rows = rows
    m = search.full_collection_metrics(scores, rows, test.ids, data.collection.ids, test.qrels)
    overlap = np.mean([len(set(a) & set(b)) / 100 for a, b in zip(rows, exact_rows)])
    out[name] = {"ndcg@10": m["ndcg@10"], "recall@100": m["recall@100"], "top100_overlap_with_float32": overlap}
  # IVF on real documents (synthetic ones are bags of random words, without the topical clusters IVF relies on).
  with tempfile.TemporaryDirectory() as tmp:
    index = ivf.IVF(ivf.build(Path(tmp), vecs, lists=64))
    for probe in (4, 16):
      scores, rows = index.search(built, params, claims, 100, probe)
      keep = np.maximum(rows, 0)
      m = search.full_collection_metrics(np.where(rows >= 0, scores, -np.inf), keep, test.ids, data.collection.ids,
                                         test.qrels)
      overlap = np.mean([len(set(a) & set(b)) / 100 for a, b in zip(rows, exact_rows)])
      out[f"IVF, {probe} of 64 lists probed"] = {"ndcg@10": m["ndcg@10"], "recall@100": m["recall@100"],
                                                 "top100_overlap_with_float32": overlap}
  return out


def time_search(built, params, mesh, table, claim_vecs, batch: int, approx: float = 0.0, repeats: int = 1):
  """Seconds per claim searching `table` for top 100, claims `batch` at a time (the first batch compiles: untimed)."""
  search.top_k(built, params, claim_vecs[:batch], table, 100, mesh, approx_recall=approx)
  start, done, rows = time.perf_counter(), 0, []
  for _ in range(repeats):
    for s in range(0, len(claim_vecs), batch):
      rows.append(search.top_k(built, params, claim_vecs[s:s + batch], table, 100, mesh, approx_recall=approx)[1])
      done += len(claim_vecs[s:s + batch])
  return (time.perf_counter() - start) / done, np.concatenate(rows)[: len(claim_vecs)]


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--stage", default=str(REPO / "workdir/reproduce/scifact/cnn_T2_a0.5_s0"))
  parser.add_argument("--num_docs", type=int, default=5_400_000)
  parser.add_argument("--index_dir", default="/tmp/kd_jax_wiki")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--claims", type=int, default=64, help="SciFact test claims timed in search.")
  parser.add_argument("--big_batch", type=int, default=256, help="Claims a batch in the second timing.")
  parser.add_argument("--ivf_lists", type=int, default=4096, help="k-means lists of the IVF index.")
  parser.add_argument("--ivf_probe", type=lambda v: [int(x) for x in v.split(",")], default=[16, 64],
                      help="Lists probed per claim (comma-separated: each is timed).")
  parser.add_argument("--rate_docs", type=int, default=262144, help="Documents timed for the indexing rate.")
  parser.add_argument("--out", default=str(REPO / "results/wikipedia_scale.json"))
  args = parser.parse_args()
  stage = Path(args.stage)
  config = ml_collections.ConfigDict(json.loads((stage / "config.json").read_text()))
  mesh = sharding.make_mesh(-1, 1)
  built, params, inputs = stage_lib.student(config, stage, mesh)
  width = inputs.settings["doc_word_len"]
  lengths, probs, tokenize_rate, data, scifact_words = scifact_profile(inputs, config.data)
  started = time.time()
  memory: dict[str, dict] = {}
  with phase_memory(memory, "indexing (encode and write float32)"):
    index = build_index(args, built, params, mesh, lengths, probs, width)
    index["quiet_docs_per_s"] = quiet_rate(args, built, params, mesh, lengths, probs, width)
  index["quiet_minutes_for_all"] = args.num_docs / index["quiet_docs_per_s"] / 60
  result = {"machine": {"cpu": host.cpu_name(), "cores": os.cpu_count(), "jax": jax.__version__,
                        "devices": len(jax.devices())},
            "command": "python -m benchmarks.wikipedia_scale " + " ".join(
                f"--{k}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in vars(args).items()
                if k != "out"),
            "stage": str(stage), "num_docs": args.num_docs, "doc_word_len": width, "rate_docs": args.rate_docs,
            "mean_words": float(lengths.mean()), "indexing": index,
            "tokenize_docs_per_s": tokenize_rate,
            "pipeline_minutes_with_tokenizing": index["quiet_minutes_for_all"] + args.num_docs / tokenize_rate / 60}
  with phase_memory(memory, "compact copies (bfloat16, int8)"):
    result["sizes_gb"] = compact_forms(Path(index["path"]))
  result["compact_on_scifact"] = compact_recall_on_scifact(built, params, mesh, data, scifact_words, inputs)
  root = Path(index["path"]).parent
  tables = {"float32": np.load(index["path"], mmap_mode="r"),
            "int8": compact.Table(np.load(root / "doc_vecs_int8.npy", mmap_mode="r"),
                                  np.load(root / "doc_scales.npy", mmap_mode="r"), "int8")}
  test = data.splits["test"]
  claims = search.encode_claims(built, params, inputs.claim_words(test.texts[: args.big_batch]), mesh)
  timings, rows = {}, {}
  for dtype, table in tables.items():
    with phase_memory(memory, f"search over the {dtype} index"):
      timings[f"exact, {dtype} index, {args.claims} claims a batch"], rows[dtype] = time_search(
          built, params, mesh, table, claims[: args.claims], batch=args.claims)
      timings[f"exact, {dtype} index, {args.big_batch} claims a batch"], _ = time_search(
          built, params, mesh, table, claims, batch=args.big_batch)
  single, _ = time_search(built, params, mesh, tables["float32"], claims[:4], batch=1)
  timings["exact, float32 index, one claim at a time"] = single
  approx, approx_rows = time_search(built, params, mesh, tables["float32"], claims[: args.claims],
                                    batch=args.claims, approx=0.95)
  timings[f"approx_max_k (recall target 0.95), float32 index, {args.claims} claims a batch"] = approx
  overlap = lambda a, b: float(np.mean([len(set(x) & set(y)) / 100 for x, y in zip(a, b)]))  # noqa: E731
  # IVF (kd_jax/ivf.py): k-means lists built once, then each claim scores only its best `probe` lists.
  with phase_memory(memory, f"IVF build ({args.ivf_lists} lists)"):
    ivf_root = ivf.build(root / f"ivf-{args.ivf_lists}", tables["float32"], args.ivf_lists)
    index_ivf = ivf.IVF(ivf_root)
    result["ivf_build_minutes"] = json.loads((ivf_root / "meta.json").read_text())["build_minutes"]
  result["ivf_recall_at_100_vs_exact"] = {}
  for probe in args.ivf_probe:
    with phase_memory(memory, f"IVF search, {probe} lists probed"):
      index_ivf.search(built, params, claims[:2], 100, probe)  # compiles
      start = time.perf_counter()
      _, ivf_rows = index_ivf.search(built, params, claims[: args.claims], 100, probe)
      timings[f"IVF, {probe} of {args.ivf_lists} lists probed, one claim at a time"] = (
          (time.perf_counter() - start) / args.claims)
    result["ivf_recall_at_100_vs_exact"][str(probe)] = overlap(ivf_rows, rows["float32"])
  result["search_seconds_per_claim"] = timings
  result["approx_recall_at_100_vs_exact"] = overlap(approx_rows, rows["float32"])
  result["int8_recall_at_100_vs_float32"] = overlap(rows["int8"], rows["float32"])
  result["memory_by_phase_gb"] = memory
  result["peak_rss_gb"] = peak_rss_gb()
  result["wall_minutes"] = (time.time() - started) / 60
  Path(args.out).parent.mkdir(parents=True, exist_ok=True)
  atomic.write_text(Path(args.out), json.dumps(result, indent=2, default=float))
  md = render(result)
  atomic.write_text(Path(args.out).with_name("WIKIPEDIA_SCALE.md"), md)
  # BENCHMARKS.md carries the same figures as its own section (speed.py keeps it when it rewrites the rest).
  sections.splice(Path(args.out).with_name("BENCHMARKS.md"), "wikipedia_scale", "#" + md)
  print(md)


def render(r: dict) -> str:
  ix, t = r["indexing"], r["search_seconds_per_claim"]
  lines = ["# Wikipedia scale: one student, 5.4M documents, this CPU", "",
           f"Produced by `{r['command']}` on {r['machine']['cpu']} ({r['machine']['cores']} cores, JAX "
           f"{r['machine']['jax']}). Stage: `{r['stage']}`. {r['num_docs']:,} synthetic documents with SciFact's "
           f"length distribution (mean {r['mean_words']:.0f} words, cut at {r['doc_word_len']}) and its word "
           "frequencies over the stage's vocabulary, generated as word ids.", "",
           "| measure | value |", "|---|---:|",
           f"| indexing (encode + write float32), {r['rate_docs']:,} documents timed with the CPU to itself | "
           f"{ix['quiet_docs_per_s']:,.0f} docs/s: {ix['quiet_minutes_for_all']:.1f} min for all {r['num_docs']:,} |",
           f"| the stored index's own encode time (resumable runs, under whatever load they met) | "
           f"{ix['encode_minutes']:.1f} min |",
           f"| tokenising real SciFact text (measured apart) | {r['tokenize_docs_per_s']:,.0f} docs/s |",
           f"| whole pipeline from text, estimated | {r['pipeline_minutes_with_tokenizing']:.1f} min |",
           f"| peak memory (max RSS of the whole process, every phase) | {r['peak_rss_gb']:.2f} GB |"]
  lines += [f"| peak memory, {k}: private / resident with mapped index pages | {v['private_peak_gb']:.2f} / "
            f"{v['resident_peak_gb']:.2f} GB |" for k, v in r.get("memory_by_phase_gb", {}).items()]
  lines += [f"| index on disk, {k} | {v:.2f} GB |" for k, v in r["sizes_gb"].items()]
  lines += [f"| search, {k} | {1000 * v:.1f} ms/claim |" for k, v in t.items()]
  lines += [f"| approx_max_k recall@100 against exact | {r['approx_recall_at_100_vs_exact']:.3f} |"]
  for probe, recall in r.get("ivf_recall_at_100_vs_exact", {}).items():
    lines.append(f"| IVF, {probe} lists probed: recall@100 against exact | {recall:.3f} |")
  if "ivf_build_minutes" in r:
    lines.append(f"| IVF build (k-means on 100,000 sampled vectors, assignment, grouped copy) | "
                 f"{r['ivf_build_minutes']:.1f} min |")
  if "int8_recall_at_100_vs_float32" in r:
    lines.append(f"| int8 index: top-100 overlap with float32 | {r['int8_recall_at_100_vs_float32']:.3f} |")
  lines += ["",
            "Compact storage and IVF, their cost on real SciFact (whole collection, test claims, the same stage):", "",
            "| stored as / searched by | nDCG@10 | R@100 | top-100 overlap with float32 |", "|---|---:|---:|---:|"]
  lines += [f"| {k} | {v['ndcg@10']:.4f} | {v['recall@100']:.4f} | {v['top100_overlap_with_float32']:.3f} |"
            for k, v in r["compact_on_scifact"].items()]
  return "\n".join(lines) + "\n"


if __name__ == "__main__":
  main()

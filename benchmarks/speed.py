"""Speed and size: teacher vs students, kd_jax vs PyTorch peers, student full-collection search vs BM25.

  python -m benchmarks.speed --out results/BENCHMARKS.md          # ~7 min on 2 busy CPU cores
  python -m benchmarks.speed --out /tmp/bench.md --quick          # ~3 min, for checking the script

1. Reranking K=100 BM25 candidates per SciFact test claim: the MiniLM cross-encoder teacher (100 pair forward
   passes) vs each student (claim encoding + dot products against document vectors stored beforehand, and
   also with the 100 documents encoded per claim).
2. Parameters, teacher / student (default configs, 20k-word student vocabulary).
3. Training steps per second, kd_jax vs PyTorch peers doing the same work (benchmarks/torch_peers.py).
4. Full-collection search (5,183 docs, the 300 test claims, top-100): student vs BM25 (bm25s).

The process restarts itself with glibc keeping freed memory for reuse (benchmarks/host.py, STEADY_MALLOC) unless
`--malloc=default`: by default glibc returns large freed buffers to the OS, and PyTorch, which frees and re-allocates
its buffers every step, then spends up to half of a BiLSTM step in page faults (ours does not); the header says which.

Each comparison warms up first (so jit compilation is excluded), then alternates the contenders within each
of several timed rounds and reports the median, so background load hits them alike: the ratios are the
result, absolute numbers depend on the machine and its load. Students are freshly initialised (speed does
not depend on the weights); the teacher loads all-MiniLM-L6-v2.

Data: $KD_JAX_DATA_DIR (default ../shared/data beside the checkout); prepared data is cached in
$KD_JAX_CACHE, else a temporary folder. PyTorch is a benchmark peer, not a kd_jax dependency: install it
with `pip install torch==2.13.0`; without it the PyTorch rows are skipped with a message.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import statistics
import shlex
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from benchmarks import host
from benchmarks import sections as bench_sections
from configs import cnn_student, common, lstm_student, teacher as teacher_configs
from kd_jax import losses, pretrained, train, xla_cpu
from kd_jax.data import candidates, datasets, pipeline, prepare, tokenize
from kd_jax.models import build, size

REPO = Path(__file__).resolve().parents[1]
THREADS = len(os.sched_getaffinity(0))  # XLA's CPU client uses every core it may run on; torch is told the same
K_RERANK, RERANK_PAIR_LEN, TOP_K, CHUNK = 100, 128, 100, 512
SIZES = {  # claims / steps per timed round, and rounds
    "full": dict(teacher_claims=3, student_claims=50, rounds=3, train_steps=2, search_rounds=5, packed_lstm=True),
    "quick": dict(teacher_claims=1, student_claims=5, rounds=2, train_steps=1, search_rounds=2, packed_lstm=False),
}
logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs every index build at DEBUG
TORCH_HINT = "PyTorch is not installed: PyTorch peer rows skipped (install with `pip install torch==2.13.0`)."

try:
  import torch
  from benchmarks import torch_peers
  torch.set_num_threads(THREADS)
except ImportError:
  torch = torch_peers = None


def compare(fns: dict[str, Callable[[], Any]], rounds: int, warmup: int = 1) -> dict[str, float]:
  """Median seconds per call of each fn (each must block until its work is done)."""
  for fn in fns.values():
    for _ in range(warmup):
      fn()
  times: dict[str, list[float]] = {name: [] for name in fns}
  for _ in range(rounds):
    for name, fn in fns.items():  # alternating: a load spike slows every contender, not just one
      start = time.perf_counter()
      fn()
      times[name].append(time.perf_counter() - start)
  return {name: statistics.median(t) for name, t in times.items()}


def fmt(v: Any) -> str:
  """3 significant digits below 100, else whole numbers with thousands separators; strings as given."""
  if isinstance(v, float):
    return f"{v:.3g}" if abs(v) < 100 else f"{v:,.0f}"
  return f"{v:,}" if isinstance(v, int) else str(v)


def table(header: list[str], rows: list[list[Any]]) -> str:
  lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if i else "---" for i in range(len(header))) + "|"]
  return "\n".join(lines + ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows])


def claims_batch(prepared: prepare.Prepared, split: str, start: int, n: int, k: int) -> dict[str, np.ndarray]:
  """n prepared claims of `split` as one batch, keeping each claim's first k candidates."""
  source = prepared.source(split)
  rows = [source[i] for i in range(start, start + n)]
  batch = {key: np.stack([r[key] for r in rows]) for key in rows[0] if key != "claim_id"}
  for key in ("cand_index", "cand_labels", "cand_mask", "bm25_scores", "teacher_scores"):
    batch[key] = batch[key][:, :k]
  return batch


def on_device(batch: dict[str, np.ndarray], keys: tuple[str, ...]) -> dict[str, jax.Array]:
  return {key: jnp.asarray(batch[key]) for key in keys}


def student_fns(built: build.Built):
  """Jitted (params, doc ids [N, L]) -> vectors, and (params, doc matrix, claim ids, rows) -> scores of rows."""
  m = built.module
  encode_docs = jax.jit(lambda p, d: m.apply({"params": p}, d, method=m.encode_docs))

  def score(p, matrix, claims, rows):
    return m.apply({"params": p}, m.apply({"params": p}, claims, method=m.encode_claims), matrix[rows],
                   method=m.score)
  return encode_docs, jax.jit(score)


def encode_collection(encode_docs, params, docs: np.ndarray) -> jax.Array:
  """Every document's vector [N, D], in fixed-size chunks so one compiled shape serves all."""
  padded = np.pad(docs, ((0, -len(docs) % CHUNK), (0, 0)))
  return jnp.concatenate([encode_docs(params, padded[i:i + CHUNK]) for i in range(0, len(padded), CHUNK)])[
      :len(docs)]


def bench_rerank(prepared, models, matrices, s) -> tuple[str, dict]:
  pairs = pipeline.gather_transform(prepared, "pairs", RERANK_PAIR_LEN)
  words = pipeline.gather_transform(prepared, "words")
  t_built, t_params = models["teacher"]
  t_logits = jax.jit(lambda p, b: t_built.logits(p, b))
  claim = lambda i: claims_batch(prepared, "test", i, 1, K_RERANK)
  t_in = [on_device(pairs(claim(i)), ("pair_ids", "pair_types", "pair_mask")) for i in range(s["teacher_claims"])]
  s_in = [on_device(words(claim(i)), ("claim_words", "doc_words", "cand_index")) for i in range(s["student_claims"])]
  fns = {"teacher": lambda: [jax.block_until_ready(t_logits(t_params, b)) for b in t_in]}
  for kind in ("cnn", "lstm"):
    built, params = models[kind]
    _, score = student_fns(built)
    logits = jax.jit(lambda p, b, built=built: built.logits(p, b))
    fns[f"{kind} stored"] = lambda score=score, params=params, mat=matrices[kind]: [
        jax.block_until_ready(score(params, mat, b["claim_words"], b["cand_index"])) for b in s_in]
    fns[f"{kind} online"] = lambda logits=logits, params=params: [
        jax.block_until_ready(logits(params, b)) for b in s_in]
  secs = compare(fns, s["rounds"])
  per_claim = {name: secs[name] / (s["teacher_claims"] if name == "teacher" else s["student_claims"]) for name in fns}
  label = {"teacher": "teacher: MiniLM-L6 cross-encoder, 100 pairs x 128 tokens",
           "cnn stored": "CNN student: claim encoding + dot products with stored doc vectors",
           "lstm stored": "BiLSTM student: claim encoding + dot products with stored doc vectors",
           "cnn online": "CNN student, the 100 docs encoded per claim",
           "lstm online": "BiLSTM student, the 100 docs encoded per claim"}
  rows = [[label[n], per_claim[n] * 1e3, 1 / per_claim[n], per_claim["teacher"] / per_claim[n]] for n in fns]
  text = table(["model (one claim per call)", "ms / claim", "claims / s", "speed-up vs teacher"], rows)
  text += (f"\n\nTeacher timed on {s['teacher_claims']} claims, students on {s['student_claims']}, median of "
           f"{s['rounds']} rounds. Inputs pre-tokenized for every model. Paper: students 12x faster than the teacher.")
  return text, per_claim


def param_counts(models) -> tuple[str, dict]:
  def no_words(params):  # the word-embedding table dominates the students and is a lookup, not compute
    flat = traverse_util.flatten_dict(params)
    return sum(int(np.prod(v.shape)) for k, v in flat.items() if not {"word_embeddings", "embed"} & set(k))
  counts = {n: (size.count_params(p), no_words(p)) for n, (_, p) in models.items()}
  t = counts["teacher"]
  rows = [[n, c[0], c[1], t[0] / c[0], t[1] / c[1]] for n, c in counts.items()]
  text = table(["model", "parameters", "without word embeddings", "teacher / model", "same, without embeddings"],
               rows)
  return text + "\n\nPaper: teacher 20x the students' parameters.", counts


def jax_trainer(built, params, tc, loss_fn, batch) -> Callable[[int], float]:
  tx = train.make_optimizer(tc)
  # The step as run.py compiles it on this CPU, with the model's XLA:CPU options (kd_jax/xla_cpu.py).
  step = jax.jit(train.make_train_step(built, tx, loss_fn), donate_argnums=0,
                 compiler_options=xla_cpu.options(tc.get("xla_cpu_options"), jax.devices()) or None)
  params = jax.tree.map(jnp.copy, params)  # the state is donated; the benchmarks' params must survive
  box = {"state": {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": tx.init(params)}}
  rng = jax.random.key(0)

  def run(steps: int) -> float:
    for _ in range(steps):
      box["state"], metrics = step(box["state"], batch, rng)
    return float(metrics["loss"])  # blocks
  return run


def bench_train(prepared, models, s) -> tuple[str, dict]:
  """Ours vs PyTorch, one fixed real batch per model (data loading is not part of the step)."""
  t_cfg, rows, out = teacher_configs.get_config(), [], {}
  tb = pipeline.gather_transform(prepared, "pairs", t_cfg.model.pair_len)(claims_batch(prepared, "train", 0, 2, 16))
  sb = pipeline.gather_transform(prepared, "words")(claims_batch(prepared, "train", 0, 32, 16))
  sb["teacher_scores"] = np.random.default_rng(0).normal(size=sb["cand_labels"].shape).astype(np.float32)
  cases = {"teacher": (t_cfg, tb, ("pair_ids", "pair_types", "pair_mask")),
           "cnn": (cnn_student.get_config(), sb, ("claim_words", "doc_words")),
           "lstm": (lstm_student.get_config(), sb, ("claim_words", "doc_words"))}
  for name, (cfg, batch, inputs) in cases.items():
    built, params = models[name]
    d, tc = cfg.get("distill"), cfg.train
    loss_fn = losses.hard_loss_fn if d is None else losses.distill_loss_fn(d.temperature, d.alpha, d.hard)
    keys = inputs + ("cand_labels", "cand_mask") + (("teacher_scores", "is_pseudo") if d is not None else ())
    fns = {"ours": jax_trainer(built, params, tc, loss_fn, on_device(batch, keys))}
    if torch is not None:
      labels, scores = torch.from_numpy(batch["cand_labels"]), torch.from_numpy(batch["teacher_scores"])
      if d is None:
        loss = lambda x: torch_peers.listwise_loss(x, labels)
      else:
        loss = lambda x: torch_peers.distill_loss(x, labels, scores, d.temperature, d.alpha)

      def peer(packed: bool = False):
        if name == "teacher":
          model = torch_peers.BertPeer(str(pretrained.hf_model_dir()))
        elif name == "cnn":
          model = torch_peers.DualEncoder(torch_peers.CNNTower(len(prepared.vocab)))
        else:
          model = torch_peers.DualEncoder(torch_peers.BiLSTMTower(len(prepared.vocab), packed=packed))
        return torch_peers.make_trainer(model, [batch[k].astype(np.int64) for k in inputs], loss,
                                        tc.learning_rate, tc.weight_decay, tc.grad_clip)
      fns["peer"] = peer()
      if name == "teacher":
        attn = fns["peer"].model.bert.config._attn_implementation  # pylint: disable=protected-access
    for fn in fns.values():
      fn(1)  # compile / first-touch allocations
    n = s["train_steps"]
    secs = compare({k: (lambda fn=fn: fn(n)) for k, fn in fns.items()}, s["rounds"], warmup=0)
    pairs = [(name, secs["ours"] / n, secs["peer"] / n if "peer" in secs else None)]
    if name == "lstm" and "peer" in fns and s["packed_lstm"]:
      # ~60 s a step on 2 busy cores: one step each, no warm-up (eager PyTorch has nothing to compile).
      packed = peer(packed=True)
      extra = compare({"ours": lambda: fns["ours"](1), "packed": lambda: packed(1)}, 1, warmup=0)
      pairs.append(("lstm, PyTorch packed sequences, 1 step", extra["ours"], extra["packed"]))
    b, k = batch["cand_labels"].shape
    shape = (f"{b} claims x {k} pairs x {t_cfg.model.pair_len} tokens" if name == "teacher"
             else f"{b} claims (32 words) x {k} docs (128 words)")
    for label, ours, other in pairs:  # seconds per step
      rows.append([label, shape, 1 / ours, b * k / ours, 1 / other if other else "skipped",
                   b * k / other if other else "skipped", other / ours if other else "-"])
      out[label] = (ours, other)
  text = table(["model", "batch", "ours steps/s", "ours pairs/s", "PyTorch steps/s", "PyTorch pairs/s",
                "ours / PyTorch"], rows)
  peer_note = (f"PyTorch {torch.__version__}, torch.set_num_threads({THREADS}). Teacher peer: HF "
               "BertForSequenceClassification(num_labels=1) from the same safetensors folder, attention "
               f"implementation '{attn}'. BiLSTM peer: two "
               "nn.LSTMs over the padded batch, the backward one reading each sequence reversed within its length "
               "(equal outputs to packed sequences, which are also shown when measured)."
               if torch is not None else TORCH_HINT)
  return (text + f"\n\nSteps of AdamW + global-norm clipping, dropout on; median of {s['rounds']} rounds of "
          f"{s['train_steps']} steps. {peer_note}"), out


def bench_search(cfg, prepared, models, s) -> tuple[str, dict]:
  data = datasets.load(cfg)
  texts, coll = data.splits["test"].texts, data.collection
  vocab = {w: i for i, w in enumerate(prepared.vocab)}
  index = candidates.BM25Index(coll)
  fns = {"BM25 (bm25s)": lambda: index.search(texts, TOP_K)}
  index_fns = {"BM25 index build": lambda: candidates.BM25Index(coll)}
  for kind, name in (("cnn", "CNN"), ("lstm", "BiLSTM")):
    built, params = models[kind]
    m = built.module
    encode_docs, _ = student_fns(built)
    matrix = encode_collection(encode_docs, params, prepared.docs_words)
    search = jax.jit(lambda p, mat, ids, m=m: jax.lax.top_k(
        m.apply({"params": p}, m.apply({"params": p}, ids, method=m.encode_claims), mat, method=m.score), TOP_K)[1])
    # From raw text, like BM25: word tokenization is part of the student's search time.
    fns[f"{name} student"] = lambda search=search, p=params, mat=matrix: np.asarray(
        search(p, mat, tokenize.word_ids(vocab, texts, cfg.claim_word_len)))
    index_fns[f"{name} student doc encoding"] = lambda e=encode_docs, p=params: jax.block_until_ready(
        encode_collection(e, p, prepared.docs_words))
  secs = compare(fns, s["search_rounds"])
  index_secs = compare(index_fns, s["rounds"])
  n, bm25 = len(texts), secs["BM25 (bm25s)"]
  rows = [[name, t / n * 1e3, n / t, bm25 / t] for name, t in secs.items()]
  text = table([f"method ({n} claims per call, top-{TOP_K} of {len(coll):,} docs)", "ms / claim", "claims / s",
                "speed-up vs BM25"], rows)
  text += "\n\n" + table(["one-off indexing", "seconds", "docs / s"],
                         [[k, v, len(coll) / v] for k, v in index_secs.items()])
  text += (f"\n\nMedian of {s['search_rounds']} (search) / {s['rounds']} (indexing) rounds. Student search = word "
           "tokenization + claim encoding + one matrix product + jax.lax.top_k; BM25 = BM25Index.search "
           "(tokenize, stem, retrieve).")
  return text, {**secs, **index_secs}


def machine() -> str:
  cpu = host.cpu_name()
  mem = next(int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal")) / 2**20
  versions = []
  for pkg in ("jax", "jaxlib", "flax", "optax", "torch", "transformers", "bm25s"):
    try:
      versions.append(f"{pkg} {metadata.version(pkg)}")
    except metadata.PackageNotFoundError:
      versions.append(f"{pkg} (not installed)")
  return (f"- CPU: {cpu}, {os.cpu_count()} cores ({THREADS} usable), {mem:.1f} GiB RAM; JAX backend "
          f"{jax.default_backend()} ({jax.device_count()} device)\n- Python {sys.version.split()[0]}; "
          + ", ".join(versions))


def load(window: float = 1.0) -> str:
  """Load averages, and other processes busy on the CPU now (the ratios survive them; absolute numbers do not).

  Busy = at least 20% of a core over the last `window` seconds, from /proc: `ps`'s %CPU is a lifetime average, which
  names a paused or finished-its-burst process as busy."""
  def cpu_ticks() -> dict[int, tuple[int, str]]:
    out = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
      try:
        pid = int(stat.parent.name)
        fields = stat.read_text().rsplit(")", 1)[1].split()
        cmd = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
      except (OSError, ValueError):
        continue  # gone meanwhile
      out[pid] = (int(fields[11]) + int(fields[12]), cmd)  # utime + stime, in clock ticks
    return out

  before = cpu_ticks()
  time.sleep(window)
  after, hz = cpu_ticks(), os.sysconf("SC_CLK_TCK")
  busy = []
  for pid, (ticks, cmd) in after.items():
    share = 100 * (ticks - before.get(pid, (ticks, ""))[0]) / hz / window
    if share >= 20 and pid != os.getpid() and cmd:
      busy.append(f"`{cmd[:70]}` ({share:.0f}% CPU)")
  return f"load average {' / '.join(open('/proc/loadavg').read().split()[:3])}; other busy processes: " + (
      ", ".join(busy) or "none")


def conditions(load_start: str, cpu_start: tuple[int, int], load_end: str | None = None) -> str:
  """A benchmark header's lines on the run's conditions: the load at its start and end (`load_end`, or now), and the
  CPU time the hypervisor stole in between (`cpu_start`: host.cpu_times() at the start)."""
  return (f"- At start: {load_start}\n- At end: {load_end or load()}\n"
          f"- {host.steal_note(cpu_start, host.cpu_times())}\n")


def reading(r: dict[str, dict], quick: bool, shared: bool) -> str:
  """The paragraph under the tables, its numbers filled from this run."""
  rr, pc, tr, se = r["rerank"], r["params"], r["train"], r["search"]
  up = lambda a, b: fmt(a / b) + "x"
  text = (f"Reranking: with document vectors stored beforehand, a student reranks a claim's 100 candidates "
          f"{up(rr['teacher'], rr['cnn stored'])} (CNN) / {up(rr['teacher'], rr['lstm stored'])} (BiLSTM) faster "
          "than the teacher, far beyond the paper's 12x, because a claim then costs one short encoding and a "
          "100-row dot product (under a millisecond, mostly per-call overhead) while the teacher runs 100 full "
          "transformer passes; even encoding the 100 documents "
          f"per claim (no stored vectors) the students are {up(rr['teacher'], rr['cnn online'])} / "
          f"{up(rr['teacher'], rr['lstm online'])} faster. Size: the teacher has "
          f"{up(pc['teacher'][0], pc['cnn'][0])} / {up(pc['teacher'][0], pc['lstm'][0])} the students' parameters "
          f"(paper: 20x), but the students are mostly word embeddings (a lookup): without them the teacher is "
          f"{up(pc['teacher'][1], pc['cnn'][1])} / {up(pc['teacher'][1], pc['lstm'][1])} larger. ")
  peers = {k: v for k, v in tr.items() if v[1]}
  if peers:
    text += ("Training: our Flax steps run at " + ", ".join(f"{up(v[1], v[0])} ({k})" for k, v in peers.items())
             + " the PyTorch peers' speed on the same batch (above 1 = ours faster). ")
  text += (f"Search: over the whole 5,183-document collection, the CNN / BiLSTM student answers "
           f"{up(se['BM25 (bm25s)'], se['CNN student'])} / {up(se['BM25 (bm25s)'], se['BiLSTM student'])} the speed "
           "of bm25s, which is already sub-millisecond per claim at this size: a dense student's speed argument "
           "is against the teacher, not against BM25; its document encoding (one-off) takes "
           f"{se['CNN student doc encoding']:.3g} s / {se['BiLSTM student doc encoding']:.3g} s vs "
           f"{se['BM25 index build']:.3g} s for the BM25 index. ")
  where = "shared with other jobs (see the load above)" if shared else "otherwise idle"
  return text + (f"Numbers are from a {THREADS}-core CPU, {where}, and from few rounds: read the ratios, not the "
                 "absolute times, and expect them to move by tens of percent between runs on a loaded machine"
                 + (", and nothing from a --quick run." if quick else "."))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out", default="results/BENCHMARKS.md")
  parser.add_argument("--quick", action="store_true", help="fewer claims, steps and rounds (checks the script)")
  host.add_malloc_argument(parser)
  args = parser.parse_args()
  host.restart_with_steady_malloc("benchmarks.speed", args.malloc)
  s = SIZES["quick" if args.quick else "full"]
  if torch is None:
    print(TORCH_HINT)
  start, load_start, cpu_start = time.time(), load(), host.cpu_times()
  with tempfile.TemporaryDirectory(prefix="kd_jax_bench_") as tmp:
    cfg = common.data_config()
    cfg.dir = os.environ.get(datasets.DATA_DIR_ENV) or str(REPO.parent / "shared" / "data")
    cfg.cache_dir = os.environ.get("KD_JAX_CACHE") or tmp
    cfg.num_candidates = K_RERANK
    prepared = prepare.prepare(cfg)
    mcfgs = {"teacher": common.teacher_model(), "cnn": cnn_student.get_config().model,
             "lstm": lstm_student.get_config().model}
    models = {}
    for name, mcfg in mcfgs.items():
      mcfg.glove = False  # fresh students: speed and size do not depend on the weights' values
      if "lexical_dim" in mcfg:
        mcfg.lexical_dim = 0  # the PyTorch peers are dense; benchmarks/lexical_cost.py times the lexical channel
      built = build.build(mcfg, prepared)
      models[name] = (built, built.init(jax.random.key(0)))
    matrices = {k: encode_collection(student_fns(models[k][0])[0], models[k][1], prepared.docs_words)
                for k in ("cnn", "lstm")}
    benches = {
        "rerank": ("1. Reranking 100 BM25 candidates per claim (SciFact test)",
                   lambda: bench_rerank(prepared, models, matrices, s)),
        "params": ("2. Parameters", lambda: param_counts(models)),
        "train": ("3. Training throughput: kd_jax (Flax) vs PyTorch, same batch, loss and optimizer",
                  lambda: bench_train(prepared, models, s)),
        "search": ("4. Full-collection search: student vs BM25",
                   lambda: bench_search(cfg, prepared, models, s)),
    }
    sections, results = [], {}
    for key, (title, fn) in benches.items():
      t0 = time.time()
      text, results[key] = fn()
      sections.append(f"## {title}\n\n{text}\n")
      print(f"\n## {title} ({time.time() - t0:.0f} s)\n\n{text}\n", flush=True)
  cmd, load_end = "python -m benchmarks.speed " + shlex.join(sys.argv[1:]), load()
  shared = not (load_start.endswith("none") and load_end.endswith("none"))
  quick = " (quick sizes: checks the script, numbers are rough)" if args.quick else ""
  header = (f"# Benchmarks\n\nGenerated by `{cmd}` on {datetime.datetime.now():%Y-%m-%d %H:%M} in "
            f"{time.time() - start:.0f} s{quick}.\n\n"
            f"{machine()}\n- Memory allocator: {host.malloc_note()}\n"
            f"{conditions(load_start, cpu_start, load_end)}\n"
            "Contenders run in the same process, alternating within each timed round after a warm-up that excludes "
            "jit compilation; medians reported. Ratios are the result; absolute numbers move with the machine "
            "and its load. Students are freshly initialised (speed does not depend on their weights).\n\n"
            "The teacher's train step at the old and new pair lengths, its variants, the PyTorch peer and the share "
            "of this CPU's GEMM peak: [TEACHER_SPEED.md](TEACHER_SPEED.md) (`python -m benchmarks.teacher_speed`).\n")
  Path(args.out).parent.mkdir(parents=True, exist_ok=True)
  body = header + "\n" + "\n".join(sections) + "\n## Reading\n\n" + reading(results, args.quick, shared) + "\n"
  carried = bench_sections.kept(Path(args.out))  # other benchmarks' sections (Wikipedia scale) stay
  Path(args.out).write_text(body + ("\n" + carried if carried else ""))
  print(f"Wrote {args.out}")


if __name__ == "__main__":
  main()

"""The modes `run.py` dispatches to, and the chain that reuses finished stages.

Stage folders live under `--workdir`: `<workdir>/<config.name>` (e.g. `teacher`, `cnn_student`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import ml_collections
import numpy as np

from kd_jax import (atomic, collection, collection_eval, evaluate, fusion, hybrid, indexing, multihost, pseudo_claims,
                    search, sharding, stage_inputs, summary, teacher_scores, train)
from kd_jax.data import candidates, datasets, pipeline, prepare
from kd_jax.models import build as build_lib
from kd_jax.models.size import count_params


def stage_dir(config, workdir: str) -> Path:
  return Path(workdir) / config.name


def _check_writable(data_cfg, *folders: Path) -> None:
  """Fails in a second rather than after hours of work: every folder the stage writes must be writable, and so
  must the prepared-data cache unless this data config's prepared data are already there (reading is enough)."""
  for folder in folders:
    atomic.ensure_writable(folder, "Output folder")
  prepared_root = prepare.cache_root(data_cfg) / f"{data_cfg.name}-{prepare.fingerprint(data_cfg)}"
  if not (prepared_root / "meta.json").is_file():
    atomic.ensure_writable(prepare.cache_root(data_cfg), "Prepared-data cache",
                           "pass --config.data.cache_dir=/a/writable/folder (or set KD_JAX_CACHE)")


def _teacher_config(config, workdir: str):
  """The teacher run the student learns from: `distill.teacher_dir` if set, else `<workdir>/teacher`."""
  if config.distill.teacher_dir:
    tdir = Path(config.distill.teacher_dir).expanduser()
    if tdir.name in ("", ".."):  # e.g. '.': the folder needs a name of its own to be trained into (below)
      tdir = tdir.resolve()
  else:
    tdir = Path(workdir) / config.teacher.name
  tcfg = ml_collections.ConfigDict(config.teacher.to_dict())
  saved = tdir / "config.json"
  if saved.is_file():
    tcfg = ml_collections.ConfigDict(_saved_teacher_config(saved))
  # A missing teacher is trained into `tdir` itself (train_teacher writes `<parent>/<name>`), so the next run
  # finds it there instead of training it again.
  tcfg.name = tdir.name
  # Soft labels must score the very candidate lists the student trains on.
  tcfg.data = ml_collections.ConfigDict(config.data.to_dict())
  tcfg.mesh = ml_collections.ConfigDict(config.mesh.to_dict())
  return tdir, tcfg


def _saved_teacher_config(path: Path) -> dict:
  """The config a teacher run saved; a student's (a mistaken distill.teacher_dir) is refused here, not deep in
  its restore."""
  try:
    saved = json.loads(path.read_text())
  except ValueError as e:
    raise ValueError(f"{path} is not valid JSON ({e}): restore it, or point --config.distill.teacher_dir at "
                     "another teacher run.") from e
  kind = saved.get("model", {}).get("kind")
  if kind != "teacher":
    raise ValueError(f"{path.parent} holds {train.describe_model(kind)} (model.kind={kind!r} in {path}), not a "
                     "teacher: point --config.distill.teacher_dir at a teacher run (configs/teacher.py), or leave it "
                     "empty for <workdir>/teacher.")
  return saved


def _no_teacher(tdir: Path) -> FileNotFoundError:
  # configs/teacher.py trains into <workdir>/teacher: another folder name must be passed along.
  name = "" if tdir.name == "teacher" else f" --config.name={tdir.name}"
  return FileNotFoundError(f"No finished teacher in {tdir}: train it (python run.py --config=configs/teacher.py "
                           f"--workdir={tdir.parent}{name}) or set --config.distill.teacher_dir.")


def train_teacher(config, workdir: str) -> dict:
  _check_writable(config.data, stage_dir(config, workdir))
  prepared = prepare.prepare(config.data)
  built = build_lib.build(config.model, prepared)
  out = stage_dir(config, workdir)
  result = train.fit(config, out, prepared, built, train.hard_loss_fn)
  logging.info("Teacher (%s params) in %s, dev %s", f"{count_params(result.params):,}", out, result.metrics)
  return result.metrics


def score_candidates(tcfg, tdir: Path, split: str = "train") -> Path:
  """Runs the finished teacher in `tdir` over every `split` candidate list once and stores the logits."""
  _check_writable(tcfg.data)
  prepared = prepare.prepare(tcfg.data)
  path = teacher_scores.path_for(tdir, prepared, split)
  if path.is_file():
    logging.info("Teacher scores already stored in %s; reusing them.", path)
    return path
  atomic.ensure_writable(path.parent, "Teacher scores folder", "pass a writable --config.distill.teacher_dir")
  if not (tdir / "complete.json").is_file():
    raise _no_teacher(tdir)
  built = build_lib.build(tcfg.model, prepared)
  mesh = sharding.make_mesh(tcfg.mesh.data, tcfg.mesh.model)
  params, params_sh = train.restore_params(tdir, built, tcfg, mesh)
  predict = evaluate.make_predict(built, mesh, params_sh)
  pred = evaluate.predict_split(predict, params, prepared, split, tcfg.train.eval_batch_size, mesh, built.tokens,
                                tcfg.model.pair_len)
  multihost.primary_writes(f"teacher scores {path}", lambda: teacher_scores.save(
      path, pred["claim_id"].astype(str), pred["scores"], pred["cand_index"]))
  logging.info("Stored teacher scores for %d %s claims in %s", len(pred["scores"]), split, path)
  return path


def distill(config, workdir: str) -> dict:
  """The chain: [teacher] -> [scores] -> student -> test evaluation; finished stages are reused."""
  tdir, tcfg = _teacher_config(config, workdir)
  _check_writable(config.data, stage_dir(config, workdir))  # before the teacher's hours, not after them
  prepared = prepare.prepare(config.data)
  if not (tdir / "complete.json").is_file() and not teacher_scores.path_for(tdir, prepared, "train").is_file():
    if not config.distill.train_teacher_if_missing:
      raise _no_teacher(tdir)
    logging.info("No finished teacher in %s: training it first.", tdir)
    train_teacher(tcfg, str(tdir.parent))
  else:
    logging.info("Using the finished teacher in %s.", tdir)
  built = build_lib.build(config.model, prepared)
  out = stage_dir(config, workdir)
  source = _train_source(config, tdir, tcfg, prepared)
  if config.distill.online:
    teacher_built = build_lib.build(tcfg.model, prepared)
    mesh = sharding.make_mesh(config.mesh.data, config.mesh.model)
    tparams, _ = train.restore_params(tdir, teacher_built, tcfg, mesh)
    result = train.fit(config, out, prepared, built, _loss(config), teacher=(teacher_built, tparams),
                       train_source=source)
  else:
    path = score_candidates(tcfg, tdir)
    lookup = teacher_scores.lookup(path, prepared.source("train"))
    result = train.fit(config, out, prepared, built, _loss(config), teacher_scores=lookup, train_source=source)
  logging.info("Student %s (%s params): dev %s", config.name, f"{count_params(result.params):,}", result.metrics)
  result = evaluate_stage(config, workdir)
  teacher_eval = tdir / "eval_test.json"
  table = summary.render(result, json.loads(teacher_eval.read_text()) if teacher_eval.is_file() else None, out, tdir)
  if multihost.is_primary():
    print("\n" + table)
  return result


def _train_source(config, tdir: Path, tcfg, prepared):
  """The labelled train split, or (distill.pseudo.count > 0) it mixed with teacher-labelled pseudo-claims."""
  p = config.distill.pseudo
  if not p.count:
    return None
  fake = pseudo_claims.ensure(tcfg, tdir, p, p.count)
  mixed = pipeline.MixedSource(prepared.source("train"), fake, p.fraction)
  logging.info("Training on %d labelled claims and %d pseudo-claims (%d + %d slots an epoch).",
               len(prepared.source("train")), len(fake), mixed.num_real, mixed.num_pseudo)
  return mixed


def _loss(config):
  d = config.distill
  return train.distill_loss_fn(d.temperature, d.alpha, d.hard)


def evaluate_stage(config, workdir: str, split: str = "test") -> dict:
  """Reranks `split`'s candidates with the stage's best checkpoint; writes `eval_<split>.json`. With
  `config.collection` set, evaluates on that collection instead (evaluate_collection)."""
  source = collection.from_config(config)
  if source is not None:
    return evaluate_collection(config, workdir, source)
  out = stage_dir(config, workdir)
  _check_writable(config.data, out)  # the figures are computed for minutes, then written
  prepared = prepare.prepare(config.data)
  if not stage_inputs.stored(out):  # stages trained before their folders carried their inputs
    stage_inputs.save(out, prepared, config.data)
  built = build_lib.build(config.model, prepared)
  mesh = sharding.make_mesh(config.mesh.data, config.mesh.model)
  params, params_sh = train.restore_params(out, built, config, mesh)
  predict = evaluate.make_predict(built, mesh, params_sh)
  pred = evaluate.predict_split(predict, params, prepared, split, config.train.eval_batch_size, mesh, built.tokens,
                                config.model.get("pair_len", 0))
  bm25 = evaluate.rerank_metrics({**pred, "scores": _bm25_scores(prepared, split)})
  result = {"split": split, "model": config.name, "params": count_params(params),
            "rerank": evaluate.rerank_metrics(pred), "bm25_rerank": bm25,
            "bm25_recall_at_k": prepared.meta["splits"][split]["bm25_recall_at_k"],
            "rerank_claims_per_s": float(pred.get("claims_per_s", float("nan")))}
  if built.kind == "teacher" and split != "dev":
    # The teacher with a per-list BM25 term: linear fusion of min-max scores, the teacher's share chosen on dev.
    dev = evaluate.predict_split(predict, params, prepared, "dev", config.train.eval_batch_size, mesh, built.tokens,
                                 config.model.pair_len)
    bm25_cands = {s: _bm25_scores(prepared, s) for s in ("dev", split)}
    result["dev_rerank"] = evaluate.rerank_metrics(dev)
    result["bm25_term"] = hybrid.choose(lambda w: hybrid.rerank_metrics(dev, bm25_cands["dev"], "linear", w),
                                        lambda w: hybrid.rerank_metrics(pred, bm25_cands[split], "linear", w))
  if built.kind != "teacher":
    # What a claim-independent model is for: every document encoded once, the whole collection searched.
    doc_vecs = search.encode_collection(built, params, prepared, mesh)
    claim_ids = [c.decode() for c in pred["claim_id"]]
    claims = np.stack([prepared.source(split)[i]["claim_words"] for i in range(len(claim_ids))])
    claim_vecs = search.encode_claims(built, params, claims, mesh)
    scores, rows = search.top_k(built, params, claim_vecs, doc_vecs, 100, mesh)
    result["full_collection"] = search.full_collection_metrics(scores, rows, claim_ids, prepared.doc_ids,
                                                               prepared.qrels[split])
    result["hub"] = collection_eval.hub_share(rows)
    result["doc_geometry"] = collection_eval.geometry(doc_vecs, prepared.docs_words)
    data = datasets.load(config.data)
    bm25 = candidates.BM25Index(data.collection)  # built once: BM25 alone here, and the hybrids below
    texts = dict(zip(data.splits[split].ids, data.splits[split].texts))
    b_rows, b_scores = bm25.search([texts[c] for c in claim_ids], 100)
    result["bm25_full_collection"] = search.full_collection_metrics(b_scores, b_rows, claim_ids, prepared.doc_ids,
                                                                    prepared.qrels[split])
    if config.hybrid.methods and split != "dev":
      dev = evaluate.predict_split(predict, params, prepared, "dev", config.train.eval_batch_size, mesh, built.tokens)
      result["hybrid"] = _hybrid(config, built, params, prepared, mesh, doc_vecs, {split: pred, "dev": dev}, split,
                                 data, bm25)
  multihost.primary_writes(f"{out / f'eval_{split}.json'}",
                           lambda: atomic.write_text(out / f"eval_{split}.json", json.dumps(result, indent=2)))
  logging.info("%s on %s: reranking nDCG@10 %.4f%s -> %s", config.name, split, result["rerank"]["ndcg@10"],
               f", whole collection {result['full_collection']['ndcg@10']:.4f}" if "full_collection" in result else "",
               out / f"eval_{split}.json")
  return result


def _hybrid(config, built, params, prepared, mesh, doc_vecs, preds: dict, split: str, data, bm25) -> dict:
  """Student + BM25 fusion per method: weight chosen on dev, `split` figures (reranking and full collection)."""
  pools = {}
  for s in ("dev", split):
    claim_ids = [c.decode() for c in preds[s]["claim_id"]]
    text = dict(zip(data.splits[s].ids, data.splits[s].texts))
    src = prepared.source(s)
    claim_vecs = search.encode_claims(built, params, np.stack([src[i]["claim_words"] for i in range(len(src))]),
                                      mesh)
    pools[s] = hybrid.full_collection_pool(built, params, claim_vecs, doc_vecs, [text[c] for c in claim_ids],
                                           claim_ids, prepared.qrels[s], bm25, mesh, config.hybrid.depth)
  bm25_cands = {s: _bm25_scores(prepared, s) for s in ("dev", split)}
  out = {}
  for m in config.hybrid.methods:
    out[m] = {
        "rerank": hybrid.choose(lambda w: hybrid.rerank_metrics(preds["dev"], bm25_cands["dev"], m, w),
                                lambda w: hybrid.rerank_metrics(preds[split], bm25_cands[split], m, w)),
        "full_collection": hybrid.choose(
            lambda w: hybrid.full_collection_metrics(pools["dev"], m, w, prepared.doc_ids, config.hybrid.depth),
            lambda w: hybrid.full_collection_metrics(pools[split], m, w, prepared.doc_ids, config.hybrid.depth))}
    logging.info("Hybrid %s: full-collection weight %.1f (dev nDCG@10 %.4f) -> %s nDCG@10 %.4f", m,
                 out[m]["full_collection"]["weight"], out[m]["full_collection"]["dev_ndcg@10"], split,
                 out[m]["full_collection"]["test"]["ndcg@10"])
  return out


def _bm25_scores(prepared, split: str) -> np.ndarray:
  src = prepared.source(split)
  return np.stack([src[i]["bm25_scores"] for i in range(len(src))])


def _stage_inputs(config, stage: Path) -> stage_inputs.StageInputs:
  """The vocabulary and lengths stored in the stage folder (from the prepared data, stored now, for stages trained
  before folders carried them)."""
  if not stage_inputs.stored(stage):
    _check_writable(config.data, stage)
    stage_inputs.save(stage, prepare.prepare(config.data), config.data)
  return stage_inputs.load(stage)


def _student(config, stage: Path, mesh):
  """(built, best params, inputs) of a finished student stage, read from its own folder."""
  inputs = _stage_inputs(config, stage)
  built = build_lib.build(config.model, inputs)
  if built.kind == "teacher":
    raise ValueError(f"mode={config.mode} with a collection, index and search need a claim-independent student "
                     "config (cnn_student.py, lstm_student.py).")
  params, _ = train.restore_params(stage, built, config, mesh)
  return built, params, inputs


def _source(config) -> collection.Source:
  """The collection `config.collection` names, else the stage's own training collection."""
  own = ml_collections.ConfigDict(config.data.to_dict())
  return collection.from_config(config) or collection.Source(name=config.data.name, path=None, data_cfg=own)


def index_stage(config, workdir: str) -> Path:
  """Encodes a whole collection once with the stage's best student: `<stage>/index/<collection>/`, streamed and
  resumable."""
  out = stage_dir(config, workdir)
  source = _source(config)
  root = indexing.index_root(out, source.name)
  _check_writable(config.data, root)
  mesh = sharding.make_mesh(config.mesh.data, config.mesh.model)
  built, params, inputs = _student(config, out, mesh)
  index = indexing.build_index(built, params, inputs, source, root, mesh,
                               {"model": config.name, "prepared": inputs.settings["prepared"]})
  logging.info("Index of %s by %s: %s", source.name, config.name, index.root)
  return index.root


def _read_index(config, out: Path, source, inputs) -> tuple[np.ndarray, list[str]]:
  index = search.Index(indexing.index_root(out, source.name))
  if not index.exists():
    flags = "".join(f" --config.collection.{k}={v}" for k, v in config.collection.items() if v)
    raise FileNotFoundError(f"No index of {source.name} in {index.root}: build it first with --config.mode=index"
                            f"{flags}.")
  doc_vecs, doc_ids, meta = index.read()
  if meta.get("prepared") != inputs.settings["prepared"]:
    raise ValueError(f"The index in {index.root} was built by another training of this stage ({meta.get('prepared')})"
                     ": delete it and rebuild it with --config.mode=index.")
  return doc_vecs, doc_ids


def search_stage(config, workdir: str) -> list[list[tuple[str, float, str]]]:
  """Top-k documents for `search.query` (or each line of `search.query_file`) from a stored index."""
  s = config.search
  if s.query_file:
    texts = search.read_query_file(s.query_file)
  else:
    texts = [s.query]
  out = stage_dir(config, workdir)
  source = _source(config)
  mesh = sharding.make_mesh(config.mesh.data, config.mesh.model)
  built, params, inputs = _student(config, out, mesh)
  doc_vecs, doc_ids = _read_index(config, out, source, inputs)
  ids = search.claim_word_ids(texts, inputs.vocab, inputs.settings["claim_word_len"], inputs.oov_buckets)
  claim_vecs = search.encode_claims(built, params, ids, mesh)
  coll = source.collection()  # BM25 and the snippets
  if s.hybrid:
    weight = _hybrid_weight(s.hybrid, s.hybrid_weight, out)
    bm25 = source.bm25
    depth = max(s.top_k, config.hybrid.depth)
    pool = hybrid.full_collection_pool(built, params, claim_vecs, doc_vecs, texts, [str(i) for i in range(len(texts))],
                                       {str(i): {} for i in range(len(texts))}, bm25, mesh, depth)
    fused = fusion.fuse(s.hybrid, pool.student, pool.bm25, weight, pool.mask)
    best = np.argsort(-fused, axis=1, kind="stable")[:, : s.top_k]
    scores, rows = np.take_along_axis(fused, best, 1), np.take_along_axis(pool.rows, best, 1)
    logging.info("Hybrid search: %s fusion with BM25, student weight %.2f", s.hybrid, weight)
  else:
    scores, rows = search.top_k(built, params, claim_vecs, doc_vecs, s.top_k, mesh)
  results = []
  for text, sc, rw in zip(texts, scores, rows):
    hits = [(doc_ids[r], float(v), coll.document(int(r))[:100]) for r, v in zip(rw, sc)]
    if multihost.is_primary():  # one copy of the answer, not one per host
      print(f"\n{text}")
      for rank, (doc_id, v, snippet) in enumerate(hits, 1):
        print(f"{rank:3d}. {v:9.3f}  {doc_id}  {snippet}")
    results.append(hits)
  return results


def evaluate_collection(config, workdir: str, source) -> dict:
  """A finished student (and its teacher) zero-shot on `source`: `<stage>/eval_<collection>.json`."""
  out = stage_dir(config, workdir)
  _check_writable(config.data, out)
  weights = {}
  if config.hybrid.methods:
    # The fusion weights come from the stage's own dev set: evaluated there first if missing (or made before a
    # fusion method existed).
    if len(collection_eval.own_dev_weights(out, config.hybrid.methods)) < len(config.hybrid.methods):
      own = ml_collections.ConfigDict(config.to_dict())
      own.collection.update(path="", dataset="", name="")
      evaluate_stage(own, workdir)
    weights = collection_eval.own_dev_weights(out, config.hybrid.methods)
  mesh = sharding.make_mesh(config.mesh.data, config.mesh.model)
  built, params, inputs = _student(config, out, mesh)
  index = indexing.build_index(built, params, inputs, source, indexing.index_root(out, source.name), mesh,
                               {"model": config.name, "prepared": inputs.settings["prepared"]})
  doc_vecs, doc_ids, _ = index.read()
  result = {"model": config.name, "trained_on": inputs.settings["data"],
            **collection_eval.student_figures(built, params, inputs, doc_vecs, doc_ids, source, weights, mesh,
                                              config.hybrid.depth)}
  tdir, tcfg = _teacher_config(config, workdir)
  if (tdir / "complete.json").is_file():
    result["teacher"] = {"stage": str(tdir), **_teacher_on(tcfg, tdir, source, config.data.num_candidates, mesh)}
  path = out / f"eval_{source.name}.json"
  multihost.primary_writes(f"{path}", lambda: atomic.write_text(path, json.dumps(result, indent=2)))
  collection_eval.log_summary(result)
  return result


def _teacher_on(tcfg, tdir: Path, source, num_candidates: int, mesh) -> dict:
  """The teacher reranking `source`'s BM25 candidates, stored in the teacher's folder (every student distilled from
  it shares the figures: `<teacher>/eval_<collection>.json`)."""
  path = tdir / f"eval_{source.name}.json"
  if path.is_file():
    stored = json.loads(path.read_text())
    if stored.get("claims_asked") == source.max_claims and stored.get("num_candidates") == num_candidates:
      return stored
  tinputs = _stage_inputs(tcfg, tdir)
  tbuilt = build_lib.build(tcfg.model, tinputs)
  tparams, _ = train.restore_params(tdir, tbuilt, tcfg, mesh)
  result = {**collection_eval.teacher_figures(tbuilt, tparams, tinputs, tcfg.model.pair_len, source, mesh,
                                              num_candidates, tcfg.train.eval_batch_size),
            "claims_asked": source.max_claims, "collection": source.name}
  multihost.primary_writes(f"{path}", lambda: atomic.write_text(path, json.dumps(result, indent=2)))
  return result


def _hybrid_weight(method: str, weight: float, out: Path) -> float:
  """`weight` if given (>= 0), else the one mode=evaluate chose on dev for `method`."""
  if weight >= 0:
    return weight
  path = out / "eval_test.json"
  chosen = json.loads(path.read_text()).get("hybrid", {}).get(method) if path.is_file() else None
  if chosen is None:
    raise FileNotFoundError(f"No dev-chosen {method} fusion weight in {path}: run --config.mode=evaluate first, or "
                            "pass --config.search.hybrid_weight=0.5.")
  return float(chosen["full_collection"]["weight"])


def run(config, workdir: str):
  multihost.initialize(config.distributed)
  if config.mode == "train_teacher":
    return train_teacher(config, workdir)
  if config.mode == "score_candidates":
    tdir, tcfg = _teacher_config(config, workdir) if "distill" in config else (stage_dir(config, workdir), config)
    return score_candidates(tcfg, tdir)
  if config.mode == "distill":
    return distill(config, workdir)
  if config.mode == "pseudo_claims":
    if "distill" not in config:
      raise ValueError("mode=pseudo_claims needs a student config (cnn_student.py, lstm_student.py): it labels "
                       "pseudo-claims with that config's teacher, sized by --config.distill.pseudo.count.")
    tdir, tcfg = _teacher_config(config, workdir)
    _check_writable(config.data, tdir / "pseudo")  # the teacher labels for minutes, then stores the set there
    return len(pseudo_claims.ensure(tcfg, tdir, config.distill.pseudo, config.distill.pseudo.count))
  if config.mode == "evaluate":
    return evaluate_stage(config, workdir)
  if config.mode == "reproduce":
    from kd_jax import reproduce  # pylint: disable=import-outside-toplevel
    return reproduce.run(config, workdir)
  if config.mode == "pseudo_table":
    from kd_jax import pseudo_table  # pylint: disable=import-outside-toplevel
    return pseudo_table.run(config, workdir)
  if config.mode == "index":
    return index_stage(config, workdir)
  if config.mode == "search":
    return search_stage(config, workdir)
  raise ValueError(f"Unknown mode {config.mode!r}: use train_teacher, score_candidates, pseudo_claims, distill, "
                   "evaluate, index or search.")

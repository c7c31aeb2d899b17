"""mode=evaluate: a stage's test figures (reranking, whole collection, fusions with BM25) in `eval_test.json`, or
with `config.collection` set, zero-shot figures on that collection in `eval_<collection>.json`."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import ml_collections
import numpy as np

from kd_jax import (atomic, calibration, collection, collection_eval, evaluate, hubness, hybrid, indexing, multihost,
                    restored, search, sharding, stage_inputs, train)
from kd_jax.data import candidates, datasets, prepare, tokenize
from kd_jax.models import build as build_lib, lexical
from kd_jax.models.size import count_params
from kd_jax.modes import stage
from kd_jax.modes.stage import stage_dir


def evaluate_stage(config, workdir: str, split: str = "test") -> dict:
  """Reranks `split`'s candidates with the stage's best checkpoint; writes `eval_<split>.json`. With
  `config.collection` set, evaluates on that collection instead (evaluate_collection)."""
  source = collection.from_config(config)
  if source is not None:
    return evaluate_collection(config, workdir, source)
  out = stage_dir(config, workdir)
  stage.check_writable(config.data, out)  # the figures are computed for minutes, then written
  prepared = prepare.prepare(config.data)
  if not stage_inputs.stored(out):  # stages trained before their folders carried their inputs
    stage_inputs.save(out, prepared, config.data)
  loaded = restored.Restored.load(config, out, prepared)
  built, mesh, params = loaded.built, loaded.mesh, loaded.params
  pred = loaded.predict_split(split)
  bm25 = evaluate.rerank_metrics({**pred, "scores": _bm25_scores(prepared, split)})
  result = {"split": split, "model": config.name, "params": count_params(params),
            "rerank": evaluate.rerank_metrics(pred), "bm25_rerank": bm25,
            "bm25_recall_at_k": prepared.meta["splits"][split]["bm25_recall_at_k"],
            "rerank_claims_per_s": float(pred.get("claims_per_s", float("nan")))}
  if built.kind == "teacher" and split != "dev":
    # The teacher with a per-list BM25 term: linear fusion of min-max scores, the teacher's share chosen on dev.
    dev = loaded.predict_split("dev")
    bm25_cands = {s: _bm25_scores(prepared, s) for s in ("dev", split)}
    result["dev_rerank"] = evaluate.rerank_metrics(dev)
    result["bm25_term"] = hybrid.choose(lambda w: hybrid.rerank_metrics(dev, bm25_cands["dev"], "linear", w),
                                        lambda w: hybrid.rerank_metrics(pred, bm25_cands[split], "linear", w))
  if built.kind != "teacher":
    result["lexical_private"] = lexical.private_of(config.model)  # the layout every figure below was made at
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
    inputs = stage.stage_inputs_of(config, out)
    # The training claims as a hub-correction bank (hub_norm.own_banks), read once for both searches below.
    train_texts = prepare.training_claims(config.data) if "train" in collection_eval.home_banks(config) else None
    data = datasets.load(config.data)
    hub_texts = collection_eval.unlabelled_claims(config, data)  # where dev's hub ceiling is checked as well
    result["hub_norm"] = _hub_norm(config, built, params, prepared, mesh, doc_vecs, split, inputs, train_texts,
                                   hub_texts)
    cal = calibration.of(config, own=True)
    if cal.active:  # the calibration mode=search applies on the training collection (calibration.py)
      cal_params = cal.params(params)
      cal_vecs, cal_claims = doc_vecs, claim_vecs
      if cal.encodes:  # encoded again, as mode=index and mode=search encode with this calibration
        cal_vecs = search.encode_collection(built, cal_params, prepared, mesh)
        cal_claims = search.encode_claims(built, cal_params, claims, mesh)
      cal_docs = cal.docs(built, cal_vecs)
      s_scores, s_rows = search.top_k(built, cal_params, cal.claims(built, inputs, cal_claims), cal_docs, 100, mesh)
      result["calibrated"] = {**cal.settings(), "hub": collection_eval.hub_share(s_rows),
                              "full_collection": search.full_collection_metrics(s_scores, s_rows, claim_ids,
                                                                                prepared.doc_ids, prepared.qrels[split])}
      # The hub correction again, its beta chosen on dev for the calibrated search (mode=search applies it there).
      result["calibrated"]["hub_norm"] = _hub_norm(config, built, cal_params, prepared, mesh, cal_docs, split, inputs,
                                                   train_texts, hub_texts, lambda v: cal.claims(built, inputs, v))
    bm25 = candidates.BM25Index(data.collection)  # built once: BM25 alone here, and the hybrids below
    texts = dict(zip(data.splits[split].ids, data.splits[split].texts))
    b_rows, b_scores = bm25.search([texts[c] for c in claim_ids], 100)
    result["bm25_full_collection"] = search.full_collection_metrics(b_scores, b_rows, claim_ids, prepared.doc_ids,
                                                                    prepared.qrels[split])
    if config.hybrid.methods and split != "dev":
      dev = loaded.predict_split("dev")
      result["hybrid"] = _hybrid(config, built, params, prepared, mesh, doc_vecs, {split: pred, "dev": dev}, split,
                                 data, bm25)
      if cal.active:  # the fusions again with the calibrated student, their weights chosen on dev again
        result["calibrated"]["hybrid"] = _hybrid(config, built, cal_params, prepared, mesh, cal_docs,
                                                 {split: pred, "dev": dev}, split, data, bm25,
                                                 lambda v: cal.claims(built, inputs, v), rerank=False)
  multihost.primary_writes(f"{out / f'eval_{split}.json'}",
                           lambda: atomic.write_text(out / f"eval_{split}.json", json.dumps(result, indent=2)))
  logging.info("%s on %s: reranking nDCG@10 %.4f%s -> %s", config.name, split, result["rerank"]["ndcg@10"],
               f", whole collection {result['full_collection']['ndcg@10']:.4f}" if "full_collection" in result else "",
               out / f"eval_{split}.json")
  return result


def _hybrid(config, built, params, prepared, mesh, doc_vecs, preds: dict, split: str, data, bm25,
            claim_fn=lambda v: v, rerank: bool = True) -> dict:
  """Student + BM25 fusion per method: weight chosen on dev, `split` figures (reranking unless not `rerank`, and full
  collection); `claim_fn` transforms the claim vectors (calibration.py) before search."""
  pools, reach = {}, {}
  vocab_size = len(prepared.vocab)
  doc_cov = tokenize.coverage(prepared.docs_words, vocab_size)  # what the coverage fusion lets the student speak for
  for s in ("dev", split):
    claim_ids = [c.decode() for c in preds[s]["claim_id"]]
    text = dict(zip(data.splits[s].ids, data.splits[s].texts))
    src = prepared.source(s)
    claim_words = np.stack([src[i]["claim_words"] for i in range(len(src))])
    claim_cov = tokenize.coverage(claim_words, vocab_size)
    claim_vecs = claim_fn(search.encode_claims(built, params, claim_words, mesh))
    pools[s] = hybrid.full_collection_pool(built, params, claim_vecs, doc_vecs, [text[c] for c in claim_ids],
                                           claim_ids, prepared.qrels[s], bm25, mesh, config.hybrid.depth,
                                           claim_cov, lambda rows: doc_cov[rows])
    reach[s] = claim_cov[:, None] * doc_cov[preds[s]["cand_index"]]
  bm25_cands = {s: _bm25_scores(prepared, s) for s in ("dev", split)}
  out = {}
  for m in config.hybrid.methods:
    out[m] = {
        **({"rerank": hybrid.choose(
            lambda w: hybrid.rerank_metrics(preds["dev"], bm25_cands["dev"], m, w, reach["dev"]),
            lambda w: hybrid.rerank_metrics(preds[split], bm25_cands[split], m, w, reach[split]))} if rerank else {}),
        "full_collection": hybrid.choose(
            lambda w: hybrid.full_collection_metrics(pools["dev"], m, w, prepared.doc_ids, config.hybrid.depth),
            lambda w: hybrid.full_collection_metrics(pools[split], m, w, prepared.doc_ids, config.hybrid.depth))}
    logging.info("Hybrid %s: full-collection weight %.1f (dev nDCG@10 %.4f) -> %s nDCG@10 %.4f", m,
                 out[m]["full_collection"]["weight"], out[m]["full_collection"]["dev_ndcg@10"], split,
                 out[m]["full_collection"]["test"]["ndcg@10"])
  return out


def _hub_norm(config, built, params, prepared, mesh, doc_vecs: np.ndarray, split: str, inputs,
              train_texts: list[str] | None, hub_texts: list[str], claim_fn=lambda v: v) -> dict:
  """The student alone with querybank hub correction (hubness.py): the bank and beta chosen on dev
  (hubness.choose_bank: quality within a point, then the 5% hub ceiling), `split` figures at them. The banks tried
  are `hub_norm.own_banks`: the collection's documents read as claims, and the stage's training claims
  (`train_texts`: texts only, disjoint from dev and test). The ceiling is checked on the dev claims, together with
  `hub_texts` where given (unlabelled held-out claims, collection_eval.unlabelled_claims; off by default: measured
  in results/probes/unlabelled_hub.json, it did not help). `claim_fn` transforms the claim vectors, the banks'
  too (calibration.py), before search."""
  h = collection_eval.hub_norm_settings(config)
  penalties = {}
  for bank in collection_eval.home_banks(config):
    if bank == "documents":
      penalties[bank] = hubness.collection_penalty(
          built, params, doc_vecs, h, lambda rows: prepared.docs_words[rows, : config.data.claim_word_len], mesh,
          claim_fn)
    else:  # as mode=search makes the penalty it applies (indexing.hub_penalty)
      penalties[bank] = hubness.texts_penalty(built, params, inputs.claim_words, train_texts, doc_vecs, h["k"], mesh,
                                              claim_fn)

  def claims_of(s: str):  # (ids, transformed claim vectors) of a split, encoded once for every beta
    src = prepared.source(s)
    examples = [src[i] for i in range(len(src))]
    vecs = claim_fn(search.encode_claims(built, params, np.stack([e["claim_words"] for e in examples]), mesh))
    return [e["claim_id"].decode() for e in examples], vecs

  def searched(s: str, claims, bias):
    ids, claim_vecs = claims
    scores, rows = search.top_k(built, params, claim_vecs, doc_vecs, 100, mesh, doc_bias=bias)
    return search.full_collection_metrics(scores, rows, ids, prepared.doc_ids, prepared.qrels[s]), rows

  dev_claims = claims_of("dev")
  extra = claim_fn(search.encode_claims(built, params, inputs.claim_words(hub_texts), mesh)) if hub_texts else None
  top = collection_eval.HUB_K
  curves = {}
  for bank, penalty in penalties.items():
    for b in hubness.BETAS:
      m, rows = searched("dev", dev_claims, b * penalty)
      if extra is not None:  # the unlabelled claims' top lists join dev's for the hub share
        rows = np.concatenate([rows[:, :top], search.top_k(built, params, extra, doc_vecs, top, mesh,
                                                           doc_bias=b * penalty)[1]])
      curves.setdefault(bank, {})[b] = (m["ndcg@10"], collection_eval.hub_share(rows, top)["max_share"])
  # the best dev nDCG@10 within a point, the hub ceiling enforced on dev, over every bank's betas
  bank, beta = hubness.choose_bank(curves)
  test, rows = searched(split, claims_of(split), beta * penalties[bank])
  curve = lambda dev, i: {f"{b:g}": v[i] for b, v in dev.items()}  # noqa: E731
  return {**h, "beta": beta, "bank_from": bank, "dev_ndcg@10": curves[bank][beta][0],
          "unlabelled_claims": collection_eval.unlabelled_on(config),
          "hub_claims": {"dev": len(dev_claims[0]), "unlabelled": len(hub_texts)},  # what dev's hub curves count
          "dev_curve": curve(curves[bank], 0), "dev_hub_curve": curve(curves[bank], 1),
          # each bank's own choice and curves: another collection's diagnostic reads the documents' beta
          "banks": {k: {"beta": hubness.choose_beta(v), "dev_curve": curve(v, 0), "dev_hub_curve": curve(v, 1)}
                    for k, v in curves.items()},
          "full_collection": test, "hub": collection_eval.hub_share(rows)}


def _bm25_scores(prepared, split: str) -> np.ndarray:
  src = prepared.source(split)
  return np.stack([src[i]["bm25_scores"] for i in range(len(src))])


def evaluate_collection(config, workdir: str, source) -> dict:
  """A finished student (and its teacher) zero-shot on `source`: `<stage>/eval_<collection>.json`."""
  out = stage_dir(config, workdir)
  stage.check_writable(config.data, out)
  source.claims("test")  # a collection that cannot be evaluated (no queries, bad qrels) says so before any encoding
  # The claim-bank hub correction is reported where the collection has dev claims (a BEIR folder may hold only
  # qrels/test.tsv); a dev split that cannot be read says so now too.
  bank = None
  if float(config.search.get("hub_bank_beta", 0.0)) > 0 and calibration.of(config, own=False).active:
    collection_eval.bank_k(config)  # a bad k says so now too
    bank = hubness.bank_claims("dev", source) if _has_dev(source) else None
  # The fusion weights and the hub correction's beta come from the stage's own dev set: evaluated there first if
  # missing (or made before a fusion method or the correction existed).
  if not collection_eval.own_dev_current(out, config):
    own = ml_collections.ConfigDict(config.to_dict())
    own.collection.update(path="", dataset="", name="")
    evaluate_stage(own, workdir)
  weights = collection_eval.own_dev_weights(out, config.hybrid.methods)
  mesh = sharding.stage_mesh(config.mesh)
  built, params, inputs = stage.student(config, out, mesh)
  dtype = stage.index_dtype(config)
  index = indexing.build_for(out, built, params, inputs, source, mesh, config.name, dtype=dtype)  # as trained
  root = index.root
  doc_vecs, doc_ids, _ = index.read()
  # A diagnostic: the student as trained, corrected with this collection's documents as the bank, at the beta its own
  # dev chose for such a bank (mode=search, calibrated, uses search.hub_beta_other on another collection). Stored
  # beside the index for the next evaluation.
  hub_norm = collection_eval.own_dev_hub_norm(out, bank="documents")
  penalty = indexing.hub_penalty(root, built, params, inputs, source, doc_vecs, hub_norm, mesh)
  cal = calibration.of(config, own=False)
  cal_vecs, cal_root = doc_vecs, root
  if cal.encodes:  # the calibrated search reads an index of its own, encoded as mode=index encodes it (calibration.py)
    cal_index = indexing.build_for(out, built, params, inputs, source, mesh, config.name, cal, dtype)
    cal_vecs, cal_root = cal_index.read()[0], cal_index.root
  cal_bank = None
  if bank is not None:
    # What mode=search does with --config.search.hub_bank=dev: the hub correction's bank made of the collection's
    # dev claims (texts only) instead of its documents, at the beta chosen for such banks (hubness.py).
    bank_beta, bank_k = float(config.search.hub_bank_beta), collection_eval.bank_k(config)
    cal_params = cal.params(params)
    penalty_of_bank = indexing.hub_penalty(cal_root, built, cal_params, inputs, source,
                                           indexing.calibrated_docs(cal_root, built, cal_vecs, cal),
                                           {**collection_eval.hub_norm_settings(config), "k": bank_k,
                                            **cal.settings()}, mesh, lambda v: cal.claims(built, inputs, v), bank)
    cal_bank = (bank_beta * penalty_of_bank, {"bank": "dev", "bank_claims": len(bank), "beta": bank_beta,
                                              "k": bank_k})
  result = {"model": config.name, "trained_on": inputs.settings["data"],
            "lexical_private": lexical.private_of(config.model),
            **collection_eval.student_figures(built, params, inputs, doc_vecs, doc_ids, source, weights, mesh,
                                              config.hybrid.depth, hub_norm, penalty, cal,
                                              collection_eval.own_dev_weights(out, config.hybrid.methods,
                                                                              calibration.of(config, own=True)),
                                              cal_vecs, cal_bank)}
  tdir, tcfg = stage.teacher_config(config, workdir)
  if (tdir / "complete.json").is_file():
    result["teacher"] = {"stage": str(tdir), **_teacher_on(tcfg, tdir, source, config.data.num_candidates, mesh)}
  # eval_<collection>.json, or eval_<collection>-int8.json for a compact index; the lexical layout is recorded inside.
  path = out / f"eval_{indexing.index_root(out, source.name, dtype).name}.json"
  result["index_dtype"] = dtype
  multihost.primary_writes(f"{path}", lambda: atomic.write_text(path, json.dumps(result, indent=2)))
  collection_eval.log_summary(result)
  return result


def _has_dev(source) -> bool:
  """Whether the collection has a dev split: a known dataset, or a BEIR folder with qrels/dev.tsv."""
  return source.data_cfg is not None or (source.path / "qrels" / "dev.tsv").is_file()


def _teacher_on(tcfg, tdir: Path, source, num_candidates: int, mesh) -> dict:
  """The teacher reranking `source`'s BM25 candidates, stored in the teacher's folder (every student distilled from
  it shares the figures: `<teacher>/eval_<collection>.json`)."""
  path = tdir / f"eval_{source.name}.json"
  made_from = {"claims_asked": source.max_claims, "num_candidates": num_candidates,
               "collection_fingerprint": source.fingerprint, "claims_fingerprint": source.claims_fingerprint("test")}
  if path.is_file():
    stored = json.loads(path.read_text())
    if all(stored.get(k) == v for k, v in made_from.items()):  # the same claims, candidates and documents
      return stored
  tinputs = stage.stage_inputs_of(tcfg, tdir)
  tbuilt = build_lib.build(tcfg.model, tinputs)
  tparams, _ = train.restore_params(tdir, tbuilt, tcfg, mesh)
  result = {**collection_eval.teacher_figures(tbuilt, tparams, tinputs, tbuilt.pair_len, source, mesh,
                                              num_candidates, tcfg.train.eval_batch_size),
            **made_from, "collection": source.name}
  multihost.primary_writes(f"{path}", lambda: atomic.write_text(path, json.dumps(result, indent=2)))
  return result

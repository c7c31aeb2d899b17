"""mode=search: top-k documents for a claim (or a file of claims) from a stored index, alone (with the hub correction
the stage chose on dev, hubness.py) or fused with BM25, calibrated for the collection first (calibration.py)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from kd_jax import (calibration, collection, collection_eval, fusion, hubness, hybrid, indexing, ivf, multihost,
                    search, sharding)
from kd_jax.data import prepare
from kd_jax.models import lexical
from kd_jax.modes import stage
from kd_jax.modes.stage import stage_dir


def _read_index(config, out: Path, source, inputs, unk_drop: float, own: bool) -> tuple[np.ndarray, list[str], Path]:
  private = lexical.private_of(config.model)
  index = search.Index(indexing.index_root(out, source.name, stage.index_dtype(config), unk_drop, private))
  if not index.exists():
    flags = "".join(f" --config.collection.{k}={v}" for k, v in config.collection.items() if v)
    if private:  # the index's lexical buckets are laid out at this setting: mode=index must see it too
      flags += f" --config.model.lexical_private={private}"
    if unk_drop:  # and encoded at this one
      flags += f" --config.search.unk_drop.{'own' if own else 'other'}={unk_drop:g}"
    raise FileNotFoundError(f"No index of {source.name} in {index.root}: build it first with --config.mode=index"
                            f"{flags}.")
  doc_vecs, doc_ids, meta = index.read()
  if meta.get("prepared") != inputs.settings["prepared"]:
    raise ValueError(f"The index in {index.root} was built by another training of this stage ({meta.get('prepared')})"
                     ": delete it and rebuild it with --config.mode=index.")
  if meta.get("fingerprint") not in (None, source.fingerprint):  # None: built before indexes stored it
    raise ValueError(f"The index in {index.root} was built from another version of {source.name} (its documents "
                     "changed since): run --config.mode=index again, which encodes it anew.")
  return doc_vecs, doc_ids, index.root


def search_stage(config, workdir: str) -> list[list[tuple[str, float, str]]]:
  """Top-k documents for `search.query` (or each line of `search.query_file`) from a stored index."""
  s = config.search
  beta_other = float(s.get("hub_beta_other", 0.0))
  if beta_other < 0:
    raise ValueError(f"search.hub_beta_other must be >= 0 (0: no hub correction), got {beta_other}")
  if float(s.get("hub_bank_beta", 0.0)) < 0:
    raise ValueError(f"search.hub_bank_beta must be >= 0 (0: no hub correction), got {s.hub_bank_beta}")
  bank_k = collection_eval.bank_k(config)
  if s.get("hub_bank") and not s.hybrid and s.get("hub_beta", -1.0) < 0 and float(s.get("hub_bank_beta", 0.0)) == 0:
    raise ValueError("search.hub_bank is set but search.hub_bank_beta is 0, which turns the correction off: pass "
                     "--config.search.hub_bank_beta=<beta> or --config.search.hub_beta=<beta> (the student configs set "
                     "one chosen on dev).")
  if s.query_file:
    texts = search.read_query_file(s.query_file)
  else:
    texts = [s.query]
  out = stage_dir(config, workdir)
  source = stage.source_of(config)
  bank = None if s.hybrid else hubness.bank_claims(s.get("hub_bank", ""), source)  # a bad bank fails first
  mesh = sharding.stage_mesh(config.mesh)
  own = collection.from_config(config) is None  # the stage's own training collection
  cal = calibration.of(config, own=own)
  built, params, inputs = stage.student(config, out, mesh)
  params = cal.params(params)  # claims are encoded as the index's documents were (mode=index)
  coll = source.collection()  # BM25 and the snippets; read first, so the index's check reads it once
  doc_vecs, doc_ids, root = _read_index(config, out, source, inputs, cal.unk_drop, own)
  doc_vecs = indexing.calibrated_docs(root, built, doc_vecs, cal)
  if cal.active:
    logging.info("Calibrated search (calibration.py): %s", cal.settings())
  # A claim without one word the student knows: the student alone has nothing to search with, but a file's other
  # claims are still answered (that one is listed without results), and fused search lets BM25 answer it.
  ids = search.claim_word_ids(texts, inputs.vocab, inputs.settings["claim_word_len"], inputs.oov_buckets,
                              require_known=not s.hybrid and len(texts) == 1)
  blind = np.zeros(len(texts), bool) if s.hybrid else search.without_known_words(ids, len(inputs.vocab))
  if blind.all():
    raise ValueError(f"No claim of {s.query_file} holds a word of the student's vocabulary ({len(inputs.vocab):,} "
                     "words): nothing to search with (--config.search.hybrid=coverage lets BM25 answer them).")
  if blind.any():
    logging.warning("%d of %d claims hold no word of the student's vocabulary: listed without results "
                    "(--config.search.hybrid=coverage lets BM25 answer them).", int(blind.sum()), len(texts))
  claim_vecs = cal.claims(built, inputs, search.encode_claims(built, params, ids, mesh))
  if s.hybrid:
    weight = _hybrid_weight(s.hybrid, s.hybrid_weight, out, calibration.of(config, own=True) if cal.active else None)
    bm25 = source.bm25
    depth = max(s.top_k, config.hybrid.depth)
    pool = hybrid.full_collection_pool(built, params, claim_vecs, doc_vecs, texts, [str(i) for i in range(len(texts))],
                                       {str(i): {} for i in range(len(texts))}, bm25, mesh, depth,
                                       *collection_eval.reach_of(inputs, texts, coll))
    fused = fusion.fuse(s.hybrid, pool.student, pool.bm25, weight, pool.mask, pool.reach)
    best = np.argsort(-fused, axis=1, kind="stable")[:, : s.top_k]
    scores, rows = np.take_along_axis(fused, best, 1), np.take_along_axis(pool.rows, best, 1)
    chosen = ""
    if s.hybrid_weight < 0:
      chosen = " (chosen on dev for the calibrated student)" if cal.active else " (chosen on dev)"
    logging.info("Hybrid search: %s fusion with BM25, student weight %.2f%s", s.hybrid, weight, chosen)
  else:
    calibrated_as = cal if cal.active else None
    chosen = collection_eval.home_hub_norm(out, config, calibrated_as) if own else None
    if own and s.get("hub_beta", -1.0) < 0 and not collection_eval.own_dev_layout_current(out, config):
      logging.warning("%s was made with the lexical buckets laid out otherwise (model.lexical_private): searching "
                      "without the hub correction dev chose there. Run --config.mode=evaluate again to choose one.",
                      out / "eval_test.json")
      calibrated_as = None  # no second warning: the reason is this one
    beta = _hub_beta(s.get("hub_beta", -1.0), beta_other, own, chosen, calibrated_as, out,
                     None if bank is None else float(s.get("hub_bank_beta", 0.0)))
    bias = None
    if beta > 0:  # documents that answer every claim are pushed down (hubness.py)
      h = chosen or collection_eval.hub_norm_settings(config)
      named, stored_as = s.hub_bank, "claims"
      if bank is not None:  # search.hub_bank: averaged over its own number of best claims, chosen with its beta
        h = {**h, "k": bank_k}
      elif own and h.get("bank_from") == "train":  # the bank dev chose at home (also under an explicit hub_beta)
        bank, named, stored_as = prepare.training_claims(config.data), "training claims", "train"
      bias = beta * indexing.hub_penalty(root, built, params, inputs, source, doc_vecs, {**h, **cal.settings()}, mesh,
                                         lambda v: cal.claims(built, inputs, v), bank, stored_as)
      logging.info("Hub correction: each document less %.2f x its mean top-%d score over a bank of %s", beta, h["k"],
                   f"{min(h['bank'], len(doc_ids))} documents" if bank is None else f"{len(bank)} claims ({named})")
    lists = int(s.get("ivf", {}).get("lists", 0))
    if lists:  # approximate: only the documents of each claim's best lists are scored (ivf.py)
      # Its lists hold copies of the vectors: one IVF per norm strength.
      index = ivf.IVF(ivf.build(root / (f"ivf-{lists}" + (f"-norms{cal.doc_norms:g}" if cal.doc_norms else "")
                                        + (f"-lexnorms{cal.lex_norms:g}" if cal.lex_norms else "")), doc_vecs, lists))
      scores, rows = index.search(built, params, claim_vecs, s.top_k, int(s.ivf.probe), doc_bias=bias)
      logging.info("IVF search: %d of %d lists probed per claim", min(int(s.ivf.probe), lists), lists)
    else:
      scores, rows = search.top_k(built, params, claim_vecs, doc_vecs, s.top_k, mesh, doc_bias=bias)
  results = []
  for text, sc, rw, unknown in zip(texts, scores, rows, blind):
    hits = [] if unknown else [(doc_ids[r], float(v), coll.document(int(r))[:100]) for r, v in zip(rw, sc) if r >= 0]
    if multihost.is_primary():  # one copy of the answer, not one per host
      print(f"\n{text}" + ("\n  (no word of this claim is in the student's vocabulary: no results)" if unknown else ""))
      for rank, (doc_id, v, snippet) in enumerate(hits, 1):
        print(f"{rank:3d}. {v:9.3f}  {doc_id}  {snippet}")
    results.append(hits)
  return results


def _hub_beta(beta: float, beta_other: float, own: bool, chosen: dict | None,
              calibrated_as: calibration.Calibration | None, out: Path, bank_beta: float | None = None) -> float:
  """`beta` if given (>= 0; 0 turns the correction off; at home it then applies to the bank dev chose); else with a
  bank of claims (search.hub_bank) `bank_beta` (search.hub_bank_beta, one per student kind, chosen with such banks);
  else, on the stage's own collection, the one mode=evaluate chose on its dev for this search (`chosen`:
  collection_eval.home_hub_norm, as trained or calibrated at `calibrated_as`), 0 where it chose none, and on any other
  collection `beta_other`."""
  if beta >= 0:
    return beta
  if bank_beta is not None:
    return bank_beta
  if not own:
    return beta_other
  if chosen is None and calibrated_as is not None and (out / "eval_test.json").is_file():
    logging.warning("No hub correction was chosen on dev for this calibrated search (%s): searching without it. "
                    "Run --config.mode=evaluate again to choose one.", calibration.describe(calibrated_as.settings()))
  return float(chosen["beta"]) if chosen else 0.0


def _hybrid_weight(method: str, weight: float, out: Path, calibrated_as: calibration.Calibration | None) -> float:
  """`weight` if given (>= 0), else the one mode=evaluate chose on dev for `method`: for the student searched
  calibrated at `calibrated_as` (the stage's home calibration; mode=evaluate fuses other collections at those weights
  too) when the search is calibrated and dev chose one at those settings, else for the student as trained."""
  if weight >= 0:
    return weight
  chosen = collection_eval.own_dev_weights(out, [method], calibrated_as)
  if method not in chosen:
    raise FileNotFoundError(f"No dev-chosen {method} fusion weight in {out / 'eval_test.json'}: run "
                            "--config.mode=evaluate first, or pass --config.search.hybrid_weight=0.5.")
  calibrated = {} if calibrated_as is None else collection_eval.own_dev_calibrated(out, calibrated_as).get("hybrid", {})
  if calibrated_as is not None and method not in calibrated:
    logging.warning("No %s fusion weight was chosen on dev for the student calibrated at today's settings (%s): "
                    "fusing at the one chosen as trained. Run --config.mode=evaluate again to choose one.", method,
                    calibration.describe(calibrated_as.settings()))
  return chosen[method]

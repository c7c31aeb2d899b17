"""Zero-shot evaluation of a trained stage on a collection it was not trained on (`mode=evaluate` with
`config.collection` set): `<stage>/eval_<collection>.json`.

Nothing is tuned on the target: the student reads it with its own vocabulary, the student + BM25 fusion uses the
weight chosen on the stage's own dev set, and the teacher reranks BM25's top candidates as it was trained to.
"""

from __future__ import annotations

import json
import logging
import types
from pathlib import Path

import numpy as np

from kd_jax import calibration, evaluate, hybrid, metrics, search, sharding, stage_inputs
from kd_jax.collection import Source
from kd_jax.data import tokenize
from kd_jax.models import lexical
from kd_jax.models.build import Built


def student_figures(built: Built, params, inputs: stage_inputs.StageInputs, doc_vecs: np.ndarray,
                    doc_ids: list[str], source: Source, weights: dict[str, float], mesh, depth: int = 100,
                    hub_norm: dict | None = None, penalty: np.ndarray | None = None,
                    cal: calibration.Calibration = calibration.Calibration(),
                    cal_weights: dict[str, float] | None = None, cal_doc_vecs=None,
                    cal_bank: tuple[np.ndarray, dict] | None = None) -> dict:
  """BM25, the student alone and the student + BM25 fusions (at the given weights) over the whole collection; with
  `hub_norm` (settings and the stage's dev-chosen `beta`) and the collection's hub `penalty` [N]
  (indexing.hub_penalty), the student alone with the hub correction too; with an active `cal`, the student alone
  and fused once more, calibrated for the collection (calibration.py), at `cal_weights` (default: `weights`), over
  `cal_doc_vecs`: the documents encoded with `cal.params` (default: `doc_vecs`; required when `cal.encodes`), and
  with `cal_bank` (bias [N], settings) once more, each document's calibrated score lowered by the bias (the hub
  correction with a bank of claims, `calibrated.claim_bank`)."""
  claims = source.claims("test")
  coll = source.collection()
  if coll.ids != doc_ids:
    raise ValueError(f"The index of {source.name} was built from another version of the collection: rebuild it "
                     "(delete its index folder and run --config.mode=index).")
  bm25 = source.bm25
  b_rows, b_scores = bm25.search(claims.texts, depth)
  claim_vecs = search.encode_claims(built, params, inputs.claim_words(claims.texts), mesh)
  s_scores, s_rows = search.top_k(built, params, claim_vecs, doc_vecs, depth, mesh)
  out = {"collection": source.name, "claims": len(claims),
         "bm25": {"full_collection": search.full_collection_metrics(b_scores, b_rows, claims.ids, doc_ids,
                                                                    claims.qrels)},
         "student": {"full_collection": search.full_collection_metrics(s_scores, s_rows, claims.ids, doc_ids,
                                                                       claims.qrels)},
         "hub": hub_share(s_rows)}
  pool = hybrid.full_collection_pool(built, params, claim_vecs, doc_vecs, claims.texts, claims.ids, claims.qrels,
                                     bm25, mesh, depth, *reach_of(inputs, claims.texts, coll))
  out["hybrid"] = {m: {"weight": w, "full_collection": hybrid.full_collection_metrics(pool, m, w, doc_ids, depth)}
                   for m, w in weights.items()}
  if cal.active:
    if cal.encodes and cal_doc_vecs is None:
      raise ValueError("A calibration that encodes anew (unk_drop > 0) needs the documents encoded with its "
                       "parameters (cal_doc_vecs).")
    cal_params = cal.params(params)
    cal_claims = search.encode_claims(built, cal_params, inputs.claim_words(claims.texts), mesh) if cal.encodes \
        else claim_vecs
    cal_vecs = doc_vecs if cal_doc_vecs is None else cal_doc_vecs
    out["calibrated"] = calibrated_figures(built, cal_params, inputs, cal_claims, cal_vecs, doc_ids, source, claims,
                                           cal_weights or weights, mesh, depth, cal)
    if cal_bank is not None:
      bias, settings = cal_bank
      out["calibrated"]["claim_bank"] = corrected_figures(built, cal_params, cal.claims(built, inputs, cal_claims),
                                                          cal.docs(built, cal_vecs), doc_ids, claims, bias, mesh,
                                                          settings)
  if hub_norm is not None:
    out["hub_norm"] = corrected_figures(built, params, claim_vecs, doc_vecs, doc_ids, claims,
                                        hub_norm["beta"] * penalty, mesh, hub_norm, depth)
  return out


def corrected_figures(built: Built, params, claim_vecs: np.ndarray, docs, doc_ids: list[str], claims,
                      bias: np.ndarray, mesh, settings: dict, depth: int = 100) -> dict:
  """The student alone over the whole collection with each document's score lowered by `bias` [N] (a hub
  correction: beta x hubness.py's penalty), and its hub check; `settings` (the correction's) are kept beside them."""
  scores, rows = search.top_k(built, params, claim_vecs, docs, depth, mesh, doc_bias=bias)
  return {**settings, "full_collection": search.full_collection_metrics(scores, rows, claims.ids, doc_ids,
                                                                        claims.qrels), "hub": hub_share(rows)}


def calibrated_figures(built: Built, params, inputs: stage_inputs.StageInputs, claim_vecs: np.ndarray, doc_vecs,
                       doc_ids: list[str], source: Source, claims, weights: dict[str, float], mesh, depth: int,
                       cal: calibration.Calibration) -> dict:
  """The student alone (with its hub check) and its fusions with BM25 (at `weights`), calibrated by `cal`; `params`,
  `claim_vecs` and `doc_vecs` are as `cal` encodes (cal.params)."""
  vecs, claim_vecs = cal.docs(built, doc_vecs), cal.claims(built, inputs, claim_vecs)
  scores, rows = search.top_k(built, params, claim_vecs, vecs, depth, mesh)
  pool = hybrid.full_collection_pool(built, params, claim_vecs, vecs, claims.texts, claims.ids, claims.qrels,
                                     source.bm25, mesh, depth, *reach_of(inputs, claims.texts, source.collection()))
  return {**cal.settings(),
          "full_collection": search.full_collection_metrics(scores, rows, claims.ids, doc_ids, claims.qrels),
          "hub": hub_share(rows),
          "hybrid": {m: {"weight": w, "full_collection": hybrid.full_collection_metrics(pool, m, w, doc_ids, depth)}
                     for m, w in weights.items()}}


def hub_norm_settings(config) -> dict:
  """Bank size, k and seed of the hub correction (defaults for configs saved before it existed)."""
  h = config.get("hub_norm", None)
  return {"bank": int(h.bank), "k": int(h.k), "seed": int(h.seed)} if h else {"bank": 2000, "k": 10, "seed": 0}


def bank_k(config) -> int:
  """search.hub_bank_k: how many of its best claims of a bank of real claims (search.hub_bank) a document's hub
  penalty averages; hub_norm.k for configs saved before it existed."""
  k = config.get("search", {}).get("hub_bank_k", None)
  k = hub_norm_settings(config)["k"] if k is None else k
  if int(k) != k or k < 1:
    raise ValueError(f"search.hub_bank_k must be a whole number >= 1 (the best bank claims a document's penalty "
                     f"averages), got {k}")
  return int(k)


HOME_BANKS = ("documents", "train")  # hub_norm.own_banks: the collection's documents read as claims; training claims


def home_banks(config) -> tuple[str, ...]:
  """The banks mode=evaluate tries for the hub correction on the stage's own collection (`hub_norm.own_banks`; the
  documents alone for configs saved before the training claims were a bank). The documents are always tried: another
  collection's diagnostic reads the beta chosen for them."""
  banks = tuple((config.get("hub_norm", None) or {}).get("own_banks", ("documents",)))
  wrong = [b for b in banks if b not in HOME_BANKS]
  if wrong or "documents" not in banks or len(set(banks)) < len(banks):
    raise ValueError(f"hub_norm.own_banks must list documents (the bank another collection's diagnostic reads) and "
                     f"may list train, each once, got {banks}")
  return banks


def home_hub_norm(stage: Path, config, calibrated_as: calibration.Calibration | None = None) -> dict | None:
  """What mode=search applies on the stage's own collection: own_dev_hub_norm among today's `hub_norm.own_banks`
  (a training-claims bank dev chose is left for the documents' when today's config no longer tries it); None when
  dev chose it for lexical buckets laid out otherwise than today's (same_layout)."""
  if not same_layout(_own_eval(stage), config):
    return None
  return own_dev_hub_norm(stage, calibrated_as, None if "train" in home_banks(config) else "documents")


def own_dev_layout_current(stage: Path, config) -> bool:
  """same_layout for the stage's own eval_test.json (True when there is none: nothing stale to read)."""
  stored = _own_eval(stage)
  return not stored or same_layout(stored, config)


def same_layout(stored: dict, config) -> bool:
  """Whether a stored evaluation was made with the lexical buckets laid out as `config.model` lays them out
  (model.lexical_private; 0 for results and configs saved before it): another layout moves every student score."""
  return int(stored.get("lexical_private", 0)) == lexical.private_of(config.model)


def reach_of(inputs: stage_inputs.StageInputs, texts: list[str], coll) -> tuple[np.ndarray, object]:
  """(claim coverage [Q], document coverage of chosen rows): the shares of words the stage's vocabulary knows, which
  the coverage fusion weighs the student by (only the documents a pool holds are tokenised)."""
  size = len(inputs.vocab)
  doc_cov_of = lambda rows: tokenize.coverage(inputs.doc_words([coll.document(int(r)) for r in rows]), size)  # noqa: E731
  return tokenize.coverage(inputs.claim_words(texts), size), doc_cov_of


HUB_K = 10  # the hub check's top k


def unlabelled_on(config) -> bool:
  """`hub_norm.unlabelled_claims`: whether mode=evaluate checks the hub ceiling on the collection's unlabelled
  held-out claims beside the dev claims (off for configs saved before it existed)."""
  return bool((config.get("hub_norm", None) or {}).get("unlabelled_claims", False))


def unlabelled_claims(config, data) -> list[str]:
  """The held-out claims without labels on which mode=evaluate checks the hub ceiling beside the dev claims, when
  unlabelled_on: `data.unlabelled`, cut to `data.max_claims` as every split is."""
  if not unlabelled_on(config):
    return []
  cap = config.data.get("max_claims", 0)
  return list(data.unlabelled[:cap] if cap else data.unlabelled)


def hub_share(rows: np.ndarray, k: int = HUB_K, valid: np.ndarray | None = None) -> dict:
  """The largest share of claims for which one document is in the top k (a 'hub' that answers everything).

  `valid` [Q, >=k] marks real hits: BM25 fills a list past its last matching document with arbitrary zero-score
  rows, which would otherwise count as a hub (row 0 in 40% of FEVER-titles claims)."""
  top = rows[:, :k] if valid is None else rows[:, :k][valid[:, :k]]
  if top.size == 0:
    return {"k": k, "max_share": 0.0, "row": -1}
  docs, counts = np.unique(top, return_counts=True)
  best = int(np.argmax(counts))
  return {"k": k, "max_share": float(counts[best] / len(rows)), "row": int(docs[best])}


def geometry(doc_vecs: np.ndarray, doc_words: np.ndarray) -> dict:
  """How a dot-product index can produce hubs: the spread of document norms, how far norm follows length (in
  words), and how much every vector points one way (mean cosine to the centroid; near 1, the shared direction
  decides the ranking and the largest norms win for every claim)."""
  vecs = np.asarray(doc_vecs, np.float64)
  norms = np.linalg.norm(vecs, axis=1)
  lengths = (np.asarray(doc_words) != 0).sum(1)
  centroid = vecs.mean(0)
  cos = vecs @ centroid / np.maximum(norms * np.linalg.norm(centroid), 1e-12)
  corr = float(np.corrcoef(norms, lengths)[0, 1]) if norms.std() > 0 and lengths.std() > 0 else 0.0
  return {"norm_mean": float(norms.mean()), "norm_cv": float(norms.std() / max(norms.mean(), 1e-12)),
          "corr_norm_length": corr, "mean_cos_to_centroid": float(cos.mean())}


def teacher_figures(tbuilt: Built, tparams, tinputs: stage_inputs.StageInputs, pair_len: int, source: Source, mesh,
                    num_candidates: int, batch_size: int) -> dict:
  """The cross-encoder reranking each claim's BM25 top `num_candidates`, and BM25's own order of those lists."""
  claims = source.claims("test")
  coll = source.collection()
  rows, bm25_scores = source.bm25.search(claims.texts, num_candidates)
  unique, local = np.unique(rows, return_inverse=True)
  local = local.reshape(rows.shape)
  s = tinputs.settings
  docs_wp = tokenize.wordpiece_ids(tinputs.wordpiece, [coll.document(int(r)) for r in unique], s["doc_wp_len"])
  claim_wp = tokenize.wordpiece_ids(tinputs.wordpiece, claims.texts, s["claim_wp_len"])
  examples = []
  for i, q in enumerate(claims.ids):
    labels = np.array([claims.qrels[q].get(coll.ids[r], 0) for r in rows[i]], np.int32)
    examples.append({"claim_id": q, "claim_wp": claim_wp[i], "cand_index": local[i], "cand_labels": labels,
                     "cand_mask": np.ones(rows.shape[1], bool), "num_relevant": np.int32(len(claims.qrels[q]))})
  predict = evaluate.make_predict(tbuilt, mesh, sharding.param_shardings(tparams, mesh))
  view = types.SimpleNamespace(docs_wp=docs_wp)  # the candidates' wordpieces, indexed by `local`
  # Pairs no longer than the longest claim + document of this collection need (padding is masked, so the scores
  # are the same): short documents such as page titles cost a fraction of the trained length.
  needed = int((claim_wp > 0).sum(1).max() + (docs_wp > 0).sum(1).max() + 3)
  pair_len = min(pair_len, -(-needed // 8) * 8)
  logging.info("Teacher reranking %d claims x %d BM25 candidates (pairs of up to %d tokens)", len(claims),
               rows.shape[1], pair_len)
  pred = evaluate.predict_source(predict, tparams, examples, view, batch_size, mesh, tbuilt.tokens, pair_len)
  bm25 = metrics.evaluate_candidates(bm25_scores, pred["labels"], pred["mask"], pred["num_relevant"])
  return {"rerank": evaluate.rerank_metrics(pred), "bm25_rerank": bm25, "num_candidates": int(rows.shape[1]),
          "claims": len(claims), "pair_len": pair_len}


def _own_eval(stage: Path) -> dict:
  path = Path(stage) / "eval_test.json"
  return json.loads(path.read_text()) if path.is_file() else {}


def own_dev_calibrated(stage: Path, cal: calibration.Calibration) -> dict:
  """The `calibrated` part of the stage's eval_test.json if it was made at `cal`'s settings, else {}: what dev chose
  for other vectors is no choice for these."""
  made = _own_eval(stage).get("calibrated", {})
  return made if cal.made(made) else {}


def own_dev_hub_norm(stage: Path, calibrated_as: calibration.Calibration | None = None,
                     bank: str | None = None) -> dict | None:
  """The hub correction's settings, bank and beta chosen on the stage's own dev set (its eval_test.json), if stored:
  for the search as trained, or with `calibrated_as` for the search calibrated so, and only if dev chose it at those
  very settings (own_dev_calibrated). `bank_from`: "documents" (the collection's documents read as claims; results
  stored before other banks existed) or "train" (the stage's training claims). With `bank`, the beta dev chose for
  that bank alone (another collection has no training claims of this stage's to make a bank of), if it was tried."""
  h = _own_eval(stage).get("hub_norm") if calibrated_as is None else own_dev_calibrated(stage, calibrated_as).get(
      "hub_norm")
  if not h:
    return None
  out = {**{k: h[k] for k in ("bank", "k", "seed", "beta")}, "bank_from": h.get("bank_from", "documents")}
  if bank is None or ("banks" not in h and bank == out["bank_from"]):  # stored before other banks: the documents'
    return out
  if bank not in h.get("banks", {}):
    return None
  return {**out, "beta": h["banks"][bank]["beta"], "bank_from": bank}  # that bank's own choice, won or not


def own_dev_weights(stage: Path, methods, calibrated_as: calibration.Calibration | None = None) -> dict[str, float]:
  """The fusion weights the stage chose on its own dev set (its eval_test.json), for the methods it has.

  `calibrated_as`: the weights dev chose for the student searched calibrated (`calibrated.hybrid`), for a search
  calibrated at those settings at home: calibration moves the student's scores, so the share dev gave the
  uncalibrated student need not fit (the main command's seed 0: zcoverage 0.8 calibrated, 0.6 as trained). Methods
  the file holds no such weight for (evaluated before calibrated fusions existed, with calibration off, or calibrated
  at other settings: own_dev_current says so) keep the uncalibrated one."""
  chosen = _own_eval(stage).get("hybrid", {})
  if calibrated_as is not None:
    chosen = {**chosen, **own_dev_calibrated(stage, calibrated_as).get("hybrid", {})}
  return {m: float(chosen[m]["full_collection"]["weight"]) for m in methods if m in chosen}


def own_dev_current(stage: Path, config) -> bool:
  """Whether the stage's eval_test.json holds what other collections' evaluations and searches read from it at
  today's `config`: a fusion weight for every method, the hub correction's bank and beta chosen among today's banks,
  and, with search calibrated at home, both chosen again for the search calibrated at today's settings."""
  if len(own_dev_weights(stage, config.hybrid.methods)) < len(config.hybrid.methods) or own_dev_hub_norm(stage) is None:
    return False
  if not same_layout(_own_eval(stage), config):
    return False  # chosen for lexical buckets laid out otherwise
  if set(_own_eval(stage)["hub_norm"].get("banks", {"documents": None})) != set(home_banks(config)):
    return False  # the hub correction's bank chosen among other banks than today's
  if _own_eval(stage)["hub_norm"].get("unlabelled_claims", False) != unlabelled_on(config):
    return False  # the hub ceiling checked on other claims than today's
  home = calibration.of(config, own=True)
  return not home.active or own_dev_hub_norm(stage, home) is not None


def zero_shot_is_current(stored: dict, stage: Path, config, has_dev: bool = True) -> bool:
  """Whether a stored zero-shot result (`eval_<collection>.json`) holds what evaluate_collection writes today for
  `config`: every fusion method, the hub correction, and when search is calibrated for other collections, the
  calibrated figures at today's calibration settings, fused at the weights the stage's own dev chose for its
  calibrated student, with the claim-bank correction at today's `search.hub_bank_beta` and `hub_bank_k` where the
  collection has dev claims (`has_dev`)."""
  if set(stored.get("hybrid", {})) != set(config.hybrid.methods) or "hub_norm" not in stored:
    return False  # made before a fusion method or the hub correction existed
  if not same_layout(stored, config):
    return False
  cal = calibration.of(config, own=False)
  if not cal.active:
    return True
  if not cal.made(stored.get("calibrated", {})):
    return False
  bank_beta = float(config.search.get("hub_bank_beta", 0.0))
  made = stored["calibrated"].get("claim_bank", {})
  if has_dev and bank_beta > 0 and (made.get("beta"), made.get("k")) != (bank_beta, bank_k(config)):
    return False
  fused = stored.get("calibrated", {}).get("hybrid", {})
  return {m: h["weight"] for m, h in fused.items()} == own_dev_weights(stage, config.hybrid.methods,
                                                                      calibration.of(config, own=True))


def log_summary(result: dict) -> None:
  f = lambda x: f"{x['full_collection']['ndcg@10']:.3f}"  # noqa: E731
  parts = [f"BM25 {f(result['bm25'])}", f"student {f(result['student'])}"]
  parts += [f"hybrid {m} (w={h['weight']:g}) {f(h)}" for m, h in result["hybrid"].items()]
  if "calibrated" in result:
    parts.append(f"student calibrated ({calibration.describe(result['calibrated'])}) {f(result['calibrated'])}")
  if "hub_norm" in result:
    parts.append(f"student with hub correction (beta={result['hub_norm']['beta']:g}) {f(result['hub_norm'])}")
  if "teacher" in result:
    parts.append(f"teacher rerank {result['teacher']['rerank']['ndcg@10']:.3f}")
  logging.info("%s on %s (nDCG@10, whole collection): %s; hub: one document in the top 10 of %.1f%% of claims",
               result.get("model"), result["collection"], ", ".join(parts), 100 * result["hub"]["max_share"])


"""Hub correction for a dense index, without labels: querybank normalisation.

A "hub" is a document that sits near the top for almost every claim (a long abstract with a large norm, or on a
collection the student cannot read, whatever vector its few known words give). Following CSLS (Conneau et al.,
2018) and querybank normalisation (Bogolin et al., 2022), each document's score is lowered by how well it scores
against a bank of other queries:

  score'(q, d) = score(q, d) - beta * r_d,   r_d = mean of d's k best scores over the bank.

The bank is made of the collection's own documents read as claims (their first `claim_word_len` words), so it
exists for any collection, labelled or not; a bank query never counts against the document it was cut from. r_d is a
per-document constant: search stays one matrix product and a top-k (search.top_k's `doc_bias`), and `beta` is chosen
on the stage's own dev set like every other setting, once for the search as trained and once for the search
calibrated for its collection (calibration.py: the bank then reads the calibrated vectors, as the claims do).

Where real claims of a collection are at hand (`search.hub_bank`: a file of them, or its dev claims), they make a
better bank than its documents read as claims: on FEVER's page titles, 2-6 words long, the titles-as-claims bank
scores nothing like the claims do, and raised the BiLSTM's hub (17% -> 21%), while a bank of the collection's dev
claims took it under 5% with nDCG@10 up (results/claim_bank.md). Such a bank has no query cut from a document, so
none is left out (`claims_penalty`), and its beta and k are one per student kind (`search.hub_bank_beta`,
`search.hub_bank_k`), chosen together with `choose_bank` by experiments/claim_bank.py. On the stage's own collection
the training claims are such a bank (texts only, disjoint from dev and test): mode=evaluate tries it beside the
documents and dev chooses the bank with the beta (`choose_bank`, the same rule); on FEVER-titles it took the
BiLSTM's hub from 5.7% to 4.7% (results/probes/home_train_bank.json).
"""

from __future__ import annotations

from typing import Callable

import jax.numpy as jnp
import numpy as np

from kd_jax import search
from kd_jax.data.jsonl import DataFormatError

BETAS = (0.0, 0.25, 0.5, 0.75, 1.0)
MAX_HUB = 0.05  # the ceiling on the hub share (a document in the top 10 of at most 5% of claims)


def bank_rows(num_docs: int, size: int, seed: int = 0) -> np.ndarray:
  """Sorted collection rows of the bank: `size` documents drawn without replacement (all of them if fewer)."""
  if size >= num_docs:
    return np.arange(num_docs)
  return np.sort(np.random.default_rng(seed).choice(num_docs, size, replace=False))


def collection_penalty(built, params, doc_vecs: np.ndarray, settings: dict,
                       bank_words: Callable[[np.ndarray], np.ndarray], mesh,
                       claim_fn: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
  """r_d [N] for a whole index: the bank `settings` draws (`bank` rows, `seed`), each bank row read as a claim by
  `bank_words(rows)` -> [B, claim_word_len] word ids, and each document's `k` best bank scores. `claim_fn` transforms
  the bank's claim vectors as the search transforms its claims' (a calibrated search: calibration.py)."""
  bank = bank_rows(len(doc_vecs), int(settings["bank"]), int(settings["seed"]))
  bank_vecs = search.encode_claims(built, params, bank_words(bank), mesh)
  if claim_fn is not None:
    bank_vecs = claim_fn(bank_vecs)
  return doc_penalty(built, params, bank_vecs, bank, doc_vecs, int(settings["k"]))


def bank_claims(value: str, source) -> list[str] | None:
  """The claims `search.hub_bank` names as the hub correction's bank (hubness.py): "" none (the collection's documents
  read as claims), "dev" the collection's dev claims (texts only; cut to `max_claims` as every split), else a file of
  claims, one per line. One-line errors for a bank that cannot be read."""
  if not value:
    return None
  if value == "dev":
    try:
      texts = source.claims("dev").texts
    except DataFormatError:
      raise
    except (FileNotFoundError, ValueError) as e:
      raise ValueError(f"search.hub_bank=dev: {source.name} has no dev claims to use as the hub correction's bank "
                       f"({str(e).splitlines()[0]}); pass a file of claims, one per line, instead.") from None
    if not texts:
      raise ValueError(f"search.hub_bank=dev: {source.name}'s dev split holds no claim with a relevant document; pass "
                       "a file of claims, one per line, instead.")
    return texts
  return search.read_query_file(value, "search.hub_bank")


def claims_penalty(built, params, bank_vecs: np.ndarray, doc_vecs: np.ndarray, k: int) -> np.ndarray:
  """r_d [N] over a bank of real claims (their vectors [B, D], as searched): no claim was cut from a document, so
  none is left out."""
  return doc_penalty(built, params, bank_vecs, np.full(len(bank_vecs), -1), doc_vecs, k)


def texts_penalty(built, params, claim_words: Callable[[list[str]], np.ndarray], texts: list[str],
                  doc_vecs: np.ndarray, k: int, mesh, claim_fn: Callable[[np.ndarray], np.ndarray] | None = None
                  ) -> np.ndarray:
  """claims_penalty over a bank of claim texts, tokenised by `claim_words` (a stage's StageInputs.claim_words) and
  transformed by `claim_fn` as the searched claims are: the one path mode=evaluate and mode=search (through
  indexing.hub_penalty) both take, so what dev chose is what search applies."""
  bank_vecs = search.encode_claims(built, params, claim_words(list(texts)), mesh)
  return claims_penalty(built, params, bank_vecs if claim_fn is None else claim_fn(bank_vecs), doc_vecs, k)


def choose_beta(dev: dict[float, tuple[float, float]], max_hub: float = MAX_HUB, tolerance: float = 0.01) -> float:
  """A beta from dev figures {beta: (nDCG@10, hub share)}: quality first, within `tolerance` of the best dev nDCG@10
  (a point of nDCG@10, about the spread between seeds), then the issue's ceiling on hubs, which is a requirement and
  so is enforced on dev too: among those betas, the best nDCG@10 of the ones whose hub share is at most `max_hub`,
  else the smallest hub share. Without the tolerance a ceiling no beta meets would take any cost in nDCG@10 for the
  smallest hub (the BiLSTM at lexical norms 1 on FEVER-titles: -7 points for -1 point of hub). Ties go to the smaller
  beta (the milder correction)."""
  return _choose(dev, sorted(dev), max_hub, tolerance)


def choose_bank(curves: dict[str, dict[float, tuple[float, float]]], max_hub: float = MAX_HUB,
                tolerance: float = 0.01) -> tuple[str, float]:
  """(bank, beta) from each bank's dev figures {bank: {beta: (nDCG@10, hub share)}}, by choose_beta's rule over every
  pair; ties go to the smaller beta, then to the bank listed first."""
  dev = {(bank, b): v for bank, curve in curves.items() for b, v in curve.items()}
  banks = list(curves)
  return _choose(dev, sorted(dev, key=lambda key: (key[1], banks.index(key[0]))), max_hub, tolerance)


def _choose(dev: dict, order: list, max_hub: float, tolerance: float):
  """choose_beta's rule over any settings: `dev` {setting: (nDCG@10, hub share)}, `order` the settings mildest
  first (ties go to the milder)."""
  best = max(round(v[0], 6) for v in dev.values())
  near = [key for key in order if round(dev[key][0], 6) >= best - tolerance]
  within = [key for key in near if dev[key][1] <= max_hub + 1e-12]
  if within:
    return max(within, key=lambda key: (round(dev[key][0], 6), -order.index(key)))
  return min(near, key=lambda key: (round(dev[key][1], 6), order.index(key)))


def penalty_from_scores(scores: np.ndarray, bank: np.ndarray, first_row: int, k: int) -> np.ndarray:
  """r_d [C] for a chunk of documents: `scores` [B, C] of every bank query against documents first_row.., `bank`
  [B] the row each query was cut from (that query is left out for its own document; -1: a real claim, cut from
  none)."""
  scores = np.array(scores, np.float32)  # a copy: the own-document entries are overwritten
  cols = bank - first_row
  inside = (cols >= 0) & (cols < scores.shape[1])
  scores[np.flatnonzero(inside), cols[inside]] = -np.inf
  left_out = 1 if (bank >= 0).any() else 0  # a bank of real claims (rows -1: claims_penalty) leaves none out
  kk = max(1, min(k, scores.shape[0] - left_out))
  best = -np.partition(-scores, kk - 1, axis=0)[:kk].astype(np.float64)  # the kk best of each column, any order
  best = np.where(np.isfinite(best), best, np.nan)
  return np.nan_to_num(np.nanmean(best, axis=0)) if best.size else np.zeros(scores.shape[1])


def doc_penalty(built, params, bank_vecs: np.ndarray, bank: np.ndarray, doc_vecs: np.ndarray, k: int,
                chunk_rows: int = 1 << 14) -> np.ndarray:
  """r_d [N] for every document (doc_vecs may be memory-mapped or a compact.Table: read `chunk_rows` at a time, so
  a bank of 2,000 holds 2,000 x 16,384 scores at once, 131 MB)."""
  score = search.scorer(built)
  queries = jnp.asarray(bank_vecs)
  out = []
  for start in range(0, len(doc_vecs), chunk_rows):
    chunk = np.asarray(doc_vecs[start:start + chunk_rows], np.float32)
    out.append(penalty_from_scores(np.asarray(score(params, queries, jnp.asarray(chunk))), bank, start, k))
  return np.concatenate(out).astype(np.float32)

"""Candidate reranking evaluation: model logits over a split's candidate lists -> ranking metrics."""

from __future__ import annotations

import time
from typing import Any, Callable

import jax
import numpy as np

from kd_jax import metrics, sharding
from kd_jax.data import pipeline
from kd_jax.data.prepare import Prepared
from kd_jax.models.build import Built


def make_predict(built: Built, mesh, params_sharding) -> Callable:
  """Jitted (params, device batch) -> logits [B, K], batch rows split over `data`."""
  return jax.jit(lambda params, batch: built.logits(params, batch),
                 in_shardings=(params_sharding, sharding.batch_sharding(mesh)),
                 out_shardings=sharding.replicated(mesh))


def predict_split(predict: Callable, params: Any, prepared: Prepared, split: str, batch_size: int, mesh,
                  tokens: str, pair_len: int = 0) -> dict[str, np.ndarray]:
  """Logits for every claim of `split`, in data-source order, with the arrays the metrics need.

  Also `claims_per_s`: reranking throughput after the first batch (which pays for compilation),
  data pipeline included.
  """
  return predict_source(predict, params, prepared.source(split), prepared, batch_size, mesh, tokens, pair_len)


def predict_source(predict: Callable, params: Any, source, prepared: Prepared, batch_size: int, mesh, tokens: str,
                   pair_len: int = 0) -> dict[str, np.ndarray]:
  """`predict_split` over any sequence of examples (e.g. pseudo-claims held in memory)."""
  transform = pipeline.gather_transform(prepared, tokens, pair_len)
  out: dict[str, list] = {k: [] for k in ("claim_id", "scores", "labels", "mask", "num_relevant", "cand_index")}
  timed_claims, start = 0, None
  for batch in pipeline.eval_batches(source, batch_size, transform):
    if start is None and out["scores"]:
      start = time.perf_counter()
    if start is not None:
      timed_claims += int(batch["row_mask"].sum())
    logits = np.asarray(predict(params, sharding.put_batch(sharding.local_rows(batch), mesh)))
    keep = batch["row_mask"]
    out["claim_id"].append(batch["claim_id"][keep])
    out["scores"].append(logits[keep])
    out["labels"].append(batch["cand_labels"][keep])
    out["mask"].append(batch["cand_mask"][keep])
    out["num_relevant"].append(batch["num_relevant"][keep])
    out["cand_index"].append(batch["cand_index"][keep])
  result = {k: np.concatenate(v) for k, v in out.items()}
  if start is not None:
    result["claims_per_s"] = np.float64(timed_claims / (time.perf_counter() - start))
  return result


def rerank_metrics(pred: dict[str, np.ndarray]) -> dict[str, float]:
  return metrics.evaluate_candidates(pred["scores"], pred["labels"], pred["mask"], pred["num_relevant"])

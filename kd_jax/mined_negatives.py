"""Hard negatives mined from the student's own index and refreshed during training (ANCE, Xiong et al. 2021).

In-batch and random negatives (negatives.py) are what BM25 or chance finds. What full-collection search needs is
the documents *this student* wrongly puts on top. Every `refresh_every` steps the training loop encodes the whole
collection with the current parameters, searches it with every training claim and keeps, per claim, its best
`depth` non-gold documents after skipping the first `skip` (the likeliest unlabelled positives). Each step then
adds `count` of them per claim to the batch's extra negatives (`neg_index` / `neg_words`, as random negatives).

Resumable bit for bit: a refresh depends only on the parameters at its step, and each table is stored as
`<workdir>/mined/step_<s>.npy`; a resumed run reads the last table at or before its start step. Until the first
refresh (a student that has not trained yet finds nothing worth mining), and for rows with no table entry
(pseudo-claims), the slots hold random collection rows. Draws are per (seed, claim, epoch), like random negatives.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from kd_jax import atomic, multihost, negatives, search

_FOLDER = "mined"


def exclude_golds(rows: np.ndarray, gold_rows: list[set[int]], skip: int, depth: int) -> np.ndarray:
  """[Q, depth] ranked collection rows that are not the claim's golds, after the first `skip`; -1 pads.

  rows: [Q, k] each claim's search results, best first.
  """
  out = np.full((len(rows), depth), -1, np.int32)
  for i, (ranked, golds) in enumerate(zip(rows, gold_rows)):
    kept = [int(r) for r in ranked if int(r) not in golds][skip:skip + depth]
    out[i, :len(kept)] = kept
  return out


def draw(table: np.ndarray | None, table_row: dict[str, int], claim_ids: np.ndarray, epochs: np.ndarray, count: int,
         num_docs: int, seed: int) -> np.ndarray:
  """[B, count] negatives per claim: `count` distinct entries of its table row when it has that many, random
  collection rows for the missing ones. Deterministic per (seed, claim, epoch)."""
  out = np.empty((len(claim_ids), count), np.int32)
  for i, (cid, epoch) in enumerate(zip(claim_ids, epochs)):
    key = cid.decode() if isinstance(cid, bytes) else str(cid)
    # Stream 1 keeps these draws apart from negatives.random_rows' (same seed, claim and epoch).
    rng = negatives.row_rng(seed, key, epoch, 1)
    pool = np.zeros((0,), np.int32)
    if table is not None and key in table_row:
      pool = table[table_row[key]]
      pool = pool[pool >= 0]
    picked = rng.permutation(pool)[:count]
    out[i] = np.concatenate([picked, rng.integers(0, num_docs, count - len(picked))])
  return out


class Miner:
  """The training loop's mined-negative table: refreshed on schedule, stored per refresh, added to batches."""

  def __init__(self, workdir: Path, prepared, built, mesh, *, count: int, depth: int, skip: int,
               refresh_every: int, seed: int):
    if count < 1 or depth < count or skip < 0 or refresh_every < 1:
      raise ValueError(f"mined negatives need count >= 1, depth >= count, skip >= 0 and refresh_every >= 1; got "
                       f"count={count}, depth={depth}, skip={skip}, refresh_every={refresh_every}.")
    if built.tokens != "words":
      raise ValueError("Mined negatives are for claim-independent students (they search their own index).")
    self.folder = Path(workdir) / _FOLDER
    self._prepared, self._built, self._mesh = prepared, built, mesh
    self.count, self.depth, self.skip, self.refresh_every, self.seed = count, depth, skip, refresh_every, seed
    src = prepared.source("train")
    self._claim_ids = [src[i]["claim_id"].decode() for i in range(len(src))]
    self._table_row = {c: i for i, c in enumerate(self._claim_ids)}
    row_of = {d: i for i, d in enumerate(prepared.doc_ids)}
    qrels = prepared.qrels["train"]
    self._golds = [{row_of[d] for d, rel in qrels.get(c, {}).items() if rel > 0 and d in row_of}
                   for c in self._claim_ids]
    self._num_docs = len(prepared.docs_words)
    self.table: np.ndarray | None = None
    self.seconds: list[float] = []  # wall time of each refresh this process ran (the lever's cost)

  def _path(self, step: int) -> Path:
    return self.folder / f"step_{step:06d}.npy"

  def resume(self, start: int) -> None:
    """Loads the table a run that never stopped would hold entering step `start`: that of the last refresh before
    it (a refresh due at `start` itself runs in the loop, from the restored parameters)."""
    last = (start - 1) // self.refresh_every * self.refresh_every if start > 0 else 0
    if last == 0:
      return
    path = self._path(last)
    if not path.exists():
      raise FileNotFoundError(f"Resuming at step {start} needs the mined negatives of step {last} ({path}), which "
                              "are missing: restart the run in a new --workdir.")
    self.table = np.load(path)

  def refresh_if_due(self, step: int, params) -> None:
    """Before step `step` runs: a new table from the current parameters when a refresh falls due."""
    if step == 0 or step % self.refresh_every:
      return
    t = time.time()
    _, rows, ids = search.search_split(self._built, params, self._prepared, "train", self._mesh,
                                       k=min(self._num_docs, self.skip + self.depth + max(map(len, self._golds))))
    if ids != self._claim_ids:
      raise RuntimeError("search_split returned the training claims in another order than the mined table's.")
    table = exclude_golds(np.asarray(rows), self._golds, self.skip, self.depth)

    def write():
      self.folder.mkdir(parents=True, exist_ok=True)
      with atomic.open_for_write(self._path(step), "wb") as f:
        np.save(f, table)
    multihost.primary_writes(str(self._path(step)), write)
    self.table = table
    self.seconds.append(time.time() - t)
    logging.info("Mined negatives refreshed at step %d in %.1f s", step, self.seconds[-1])

  def add(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The batch with `count` mined negatives per row appended to its extra negatives."""
    rows = draw(self.table, self._table_row, batch["claim_id"], batch["epoch"], self.count, self._num_docs,
                self.seed)
    if "neg_index" in batch:
      rows = np.concatenate([batch["neg_index"], rows], axis=1)
    return dict(batch, neg_index=rows, neg_words=self._prepared.docs_words[rows])

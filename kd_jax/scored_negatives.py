"""Hard negatives with the teacher's scores: a first-round student's mistakes, labelled once, in the KL term.

Mined negatives (mined_negatives.py) reach only the hard-label term: the teacher never scored those pairs, and
scoring them inside each step would cost the teacher's forward passes every step. Many of them are not wrong at
all: SciFact's labels are sparse, and a document the student puts on top for a claim is often relevant to it
unlabelled. Here a finished student (round one) searches the whole collection once for every training claim; its
best `count` documents that are neither golds nor among the claim's candidates are scored by the teacher once,
offline, and appended to the claim's candidate list. The round-two student then learns the teacher's graded view
of exactly the documents a student confuses (as RocketQA's denoised hard negatives, Qu et al. 2021), in both
terms: the KL term over K + count columns, the hard term counting them as negatives.

The table is stored in the round-two stage's folder (`scored/table.npz`, with the round-one stage, teacher and cap
it came from), so a resumed run reads it instead of scoring again, and a run asking for another one is refused.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Callable

import ml_collections
import numpy as np

from kd_jax import atomic, multihost, restored, search, sharding, stage_inputs

_FILE = Path("scored") / "table.npz"


def first_new(ranked: np.ndarray, golds: list[set[int]], candidates: np.ndarray, count: int,
              max_per_doc: int = 0) -> np.ndarray:
  """[Q, count] each claim's best-ranked rows that are neither golds nor among its candidates; -1 pads.

  ranked: [Q, k] collection rows, best first. candidates: [Q, K] the claim's own candidate rows. `max_per_doc` > 0:
  no document joins more than that many claims' rows. A first-round student's hubs sit near the top for dozens of
  claims; uncapped, the teacher's scores for them would teach the next student to lift them for every claim. Slots
  go by rank (every claim's first pick before anyone's second; ties to the earlier claim), so a capped document
  stays with the claims that rank it highest and the others take their next document.
  """
  out = np.full((len(ranked), count), -1, np.int32)
  fresh = []
  for rows, g, own in zip(ranked, golds, candidates):
    seen = g | {int(r) for r in own}
    fresh.append([int(r) for r in rows if int(r) not in seen])
  taken = np.zeros(len(ranked), int)
  used: dict[int, int] = {}
  for rank in range(max(map(len, fresh), default=0)):
    for i, rows in enumerate(fresh):
      if taken[i] == count or rank >= len(rows):
        continue
      d = rows[rank]
      if max_per_doc and used.get(d, 0) >= max_per_doc:
        continue
      used[d] = used.get(d, 0) + 1
      out[i, taken[i]] = d
      taken[i] += 1
  return out


def extend_example(ex: dict, rows: np.ndarray | None, count: int) -> dict:
  """The example with `count` more candidates appended: `rows` (non-gold, label 0; -1 entries and a missing row,
  e.g. a pseudo-claim's, are padding: masked out, pointing at row 0). Teacher scores are filled by the lookup."""
  rows = np.full(count, -1, np.int32) if rows is None else rows
  real = rows >= 0
  return dict(ex,
              cand_index=np.concatenate([ex["cand_index"], np.where(real, rows, 0).astype(ex["cand_index"].dtype)]),
              cand_labels=np.concatenate([ex["cand_labels"], np.zeros(count, ex["cand_labels"].dtype)]),
              cand_mask=np.concatenate([ex["cand_mask"], real]),
              bm25_scores=np.concatenate([ex["bm25_scores"], np.zeros(count, ex["bm25_scores"].dtype)]),
              teacher_scores=np.concatenate([ex["teacher_scores"], np.zeros(count, np.float32)]))


class Table:
  """Per training claim: the appended rows [Q, count] and the teacher's logits for them [Q, count]."""

  def __init__(self, claim_ids: list[str], rows: np.ndarray, scores: np.ndarray, meta: dict):
    self.claim_ids, self.rows, self.scores, self.meta = claim_ids, rows, scores, meta
    self._row = {c: i for i, c in enumerate(claim_ids)}

  @property
  def count(self) -> int:
    return self.rows.shape[1]

  def rows_of(self, claim_id) -> np.ndarray | None:
    i = self._row.get(_key(claim_id))
    return None if i is None else self.rows[i]

  def source(self, base) -> "Extended":
    return Extended(base, self)

  def lookup(self, stored: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    """claim ids [B] -> logits [B, K + count]: the stored candidate scores, then this table's."""
    def both(ids):
      return np.concatenate([stored(ids), self.scores[[self._row[_key(c)] for c in ids]]], axis=1)
    return both

  def save(self, path: Path) -> None:
    def write():
      path.parent.mkdir(parents=True, exist_ok=True)
      with atomic.open_for_write(path, "wb") as f:
        np.savez(f, claim_id=np.asarray(self.claim_ids, str), rows=self.rows, scores=self.scores.astype(np.float32),
                 meta=json.dumps(self.meta))
    multihost.primary_writes(str(path), write)

  @classmethod
  def load(cls, path: Path) -> "Table":
    z = np.load(path)
    return cls(z["claim_id"].tolist(), z["rows"], z["scores"], json.loads(str(z["meta"])))


def _key(claim_id) -> str:
  return claim_id.decode() if isinstance(claim_id, bytes) else str(claim_id)


class Extended:
  """A training source whose examples carry the table's rows after their own candidates."""

  def __init__(self, base, table: Table):
    self._base, self._table = base, table

  def __len__(self):
    return len(self._base)

  def __getitem__(self, i):
    ex = self._base[i]
    return extend_example(ex, self._table.rows_of(ex["claim_id"]), self._table.count)


def where(stage: str, workdir: Path) -> Path:
  """`distill.scored.stage` as a folder: a bare name is a stage under the run's --workdir (like its teacher), anything
  with a slash a path."""
  if not stage:
    raise ValueError("distill.scored.count > 0 needs distill.scored.stage: a finished student run (a stage name under "
                     "--workdir, or a path) whose mistakes the teacher scores.")
  path = Path(stage).expanduser() if "/" in stage else Path(workdir) / stage
  return path.resolve()


def round_one(stage: Path):
  """(config, inputs) of the finished first-round student in `stage`, with a clear error otherwise."""
  stage = Path(stage)
  if not (stage / "complete.json").is_file():
    raise FileNotFoundError(f"distill.scored.stage={stage} is not a finished student run (no complete.json): train "
                            "it first, or leave distill.scored.count=0.")
  cfg = ml_collections.ConfigDict(json.loads((stage / "config.json").read_text()))
  if cfg.model.kind == "teacher":
    raise ValueError(f"distill.scored.stage={stage} holds a teacher; it must be a claim-independent student.")
  return cfg, stage_inputs.load(stage)


def ensure(config, out: Path, prepared, tcfg, tdir: Path) -> Table:
  """The table for this run: read from `out` when stored for the same round-one stage, teacher, count and cap, else
  built."""
  s = config.distill.scored
  stage, count, cap = where(s.stage, Path(out).parent), int(s.count), int(s.get("max_per_doc", 0))
  teacher = str(Path(tdir).resolve())
  path = Path(out) / _FILE
  if path.is_file():
    table = Table.load(path)
    stored = (table.meta.get("stage"), table.meta.get("teacher"), table.count, table.meta.get("max_per_doc", 0))
    if stored == (str(stage), teacher, count, cap):
      logging.info("Reusing the teacher-scored negatives in %s", path)
      return table
    raise ValueError(f"{path} holds scored negatives of {stored[0]} by teacher {stored[1]} (count {stored[2]}, "
                     f"max_per_doc {stored[3]}), not of {stage} by {teacher} (count {count}, max_per_doc {cap}): use "
                     "a new --workdir, or delete that file.")
  start = time.time()
  cfg1, inputs1 = round_one(stage)
  if inputs1.settings.get("prepared") != prepared.root.name:
    raise ValueError(f"The first-round student {stage} was trained on prepared data {inputs1.settings.get('prepared')}"
                     f", this run reads {prepared.root.name}: its vocabulary would misread these claims. Train it "
                     "with this run's data settings.")
  first = restored.Restored.load(cfg1, stage, inputs1, mesh=sharding.stage_mesh(config.mesh))  # this run's mesh
  src = prepared.source("train")
  examples = [src[i] for i in range(len(src))]
  ids = [e["claim_id"].decode() for e in examples]
  row_of = {d: i for i, d in enumerate(prepared.doc_ids)}
  qrels = prepared.qrels["train"]
  golds = [{row_of[d] for d, rel in qrels.get(c, {}).items() if rel > 0 and d in row_of} for c in ids]
  own = np.stack([e["cand_index"] for e in examples])
  # A capped document leaves its slot to the claim's next one: search deeper then.
  depth = min(len(prepared.doc_ids), count * (4 if cap else 1) + own.shape[1] + max(map(len, golds)))
  _, ranked, searched = search.search_split(first.built, first.params, prepared, "train", first.mesh, k=depth)
  if searched != ids:
    raise RuntimeError("search_split returned the training claims in another order than the prepared split's.")
  rows = first_new(np.asarray(ranked), golds, own, count, cap)

  pairs = [dict(e, cand_index=np.maximum(r, 0), cand_labels=np.zeros(count, np.int32), cand_mask=r >= 0,
                bm25_scores=np.zeros(count, np.float32), teacher_scores=np.zeros(count, np.float32))
           for e, r in zip(examples, rows)]
  logging.info("Scoring %d x %d first-round negatives with the teacher in %s", len(pairs), count, tdir)
  pred = restored.Restored.load(tcfg, tdir, prepared).predict_source(pairs)
  scores = np.where(rows >= 0, pred["scores"], 0.0).astype(np.float32)
  table = Table(ids, rows, scores, {"stage": str(stage), "max_per_doc": cap, "teacher": teacher,
                                    "seconds": round(time.time() - start, 1)})
  table.save(path)
  logging.info("Stored %d claims' teacher-scored negatives in %s (%.0f s)", len(ids), path, time.time() - start)
  return table

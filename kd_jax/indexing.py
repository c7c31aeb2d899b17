"""Encoding a whole collection with a student, streamed and resumable: `<stage>/index/<collection>/`.

The collection is read once for its ids, then again in chunks of `chunk` documents: each chunk is tokenised with
the stage's own vocabulary, encoded, and written into `doc_vecs.npy` (a memory-mapped [N, D] float32 array) before
`progress.json` records it. A killed run continues from the last recorded chunk and gives the same vectors; only
one chunk's token ids are ever in memory. `meta.json`, written last, marks the index complete (search.Index).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np

from kd_jax import atomic, calibration, compact, doc_norms, hubness, multihost, search
from kd_jax.collection import Source
from kd_jax.models.build import Built
from kd_jax.stage_inputs import StageInputs


def index_root(stage: Path, name: str, dtype: str = "float32", unk_drop: float = 0.0, private: int = 0) -> Path:
  """`<stage>/index/<collection>/`, or `<collection>-<dtype>/` for a compact one, each with `-unk<share>` appended for
  vectors encoded without that share of the <unk> embedding (calibration.py) and `-private<n>` for lexical buckets
  laid out with model.lexical_private n (models/lexical.py); all may exist side by side."""
  folder = name if compact.check(dtype) == "float32" else f"{name}-{dtype}"
  return Path(stage) / "index" / (folder + (f"-unk{unk_drop:g}" if unk_drop else "")
                                  + (f"-private{private}" if private else ""))


def build_index(built: Built, params, inputs: StageInputs, source: Source, out: Path, mesh, meta: dict,
                chunk: int = 16384, stop_after_chunks: int | None = None, dtype: str = "float32") -> search.Index:
  """Encodes `source` into `out` (resuming a partial run), stored as `dtype` (compact.py); `stop_after_chunks` ends
  early, as if killed (tests)."""
  index = search.Index(out)
  fingerprint = source.fingerprint
  if index.exists():
    made_from = json.loads((out / "meta.json").read_text()).get("fingerprint")
    if made_from in (None, fingerprint):  # None: built before indexes stored what they were built from
      logging.info("Index %s is complete; reusing it (delete it to rebuild).", out)
      return index
    logging.warning("%s was built from another version of %s (its documents changed): encoding it again.", out,
                    source.name)
  ids = [doc_id for doc_id, _ in source.documents()]
  if not ids:
    raise ValueError(f"Collection {source.name} holds no documents.")
  dim = int(search.encode_claims(built, params, inputs.claim_words([""]), mesh).shape[1])
  done = _start(out, ids, dim, compact.check(dtype), fingerprint)
  started, first = time.time(), done
  docs = itertools.islice(source.documents(), done, None)
  for i, batch in enumerate(iter(lambda: list(itertools.islice(docs, chunk)), [])):
    if stop_after_chunks is not None and i >= stop_after_chunks:
      return index
    vecs = search.encode_docs(built, params, inputs.doc_words([text for _, text in batch]), mesh)
    multihost.primary_writes(f"index rows {done}.. of {out}",
                             lambda v=vecs, d=done: _write_rows(out, d, v, dtype, fingerprint))
    done += len(batch)
    rate = (done - first) / max(time.time() - started, 1e-9)
    logging.info("[index %s] %d/%d documents (%.0f docs/s, %.0f s left)", source.name, done, len(ids), rate,
                 (len(ids) - done) / max(rate, 1e-9))
  multihost.primary_writes(f"the index {out}", lambda: atomic.write_text(
      out / "meta.json", json.dumps({**meta, "collection": source.name, "num_docs": len(ids), "dim": dim,
                                     "dtype": dtype, "fingerprint": fingerprint}, indent=2)))
  return index


def build_for(stage: Path, built: Built, params, inputs: StageInputs, source: Source, mesh, model: str,
              cal: calibration.Calibration = calibration.Calibration(), dtype: str = "float32") -> search.Index:
  """The index of `source` as a search calibrated by `cal` reads it (build_index): encoded with `cal.params` into
  index_root(stage, source.name, dtype, cal.unk_drop, private), by the stage's student `model`."""
  root = index_root(stage, source.name, dtype, cal.unk_drop, getattr(built.module.config, "lexical_private", 0))
  return build_index(built, cal.params(params), inputs, source, root, mesh,
                     {"model": model, "prepared": inputs.settings["prepared"], "unk_drop": cal.unk_drop},
                     dtype=dtype)


def _start(out: Path, ids: list[str], dim: int, dtype: str, fingerprint: str) -> int:
  """Rows already encoded by an earlier run of the same collection (0 for a fresh start, which sets up the files)."""
  progress = out / "progress.json"
  if progress.is_file() and (out / "doc_ids.json").is_file() and (out / "doc_vecs.npy").is_file():
    state = json.loads(progress.read_text())
    if (json.loads((out / "doc_ids.json").read_text()) == ids and state["dim"] == dim
        and state.get("dtype", "float32") == dtype and state.get("fingerprint") == fingerprint):
      logging.info("Resuming the index in %s at document %d of %d", out, state["done"], len(ids))
      return int(state["done"])
    logging.warning("%s holds an index of another collection, version of it or model: starting afresh.", out)

  def fresh():
    out.mkdir(parents=True, exist_ok=True)
    for name in ("meta.json",) + search.DERIVED:  # files derived from the old vectors go with them
      (out / name).unlink(missing_ok=True)
    for ivf_dir in out.glob("ivf-*"):  # and the IVF lists holding copies of them
      shutil.rmtree(ivf_dir)
    atomic.write_text(out / "doc_ids.json", json.dumps(ids))
    np.lib.format.open_memmap(out / "doc_vecs.npy", mode="w+", dtype=compact.STORED[dtype],
                              shape=(len(ids), dim)).flush()
    if dtype == "int8":
      np.lib.format.open_memmap(out / "doc_scales.npy", mode="w+", dtype=np.float32, shape=(len(ids),)).flush()
    atomic.write_text(progress, json.dumps({"done": 0, "dim": dim, "dtype": dtype, "fingerprint": fingerprint}))
  multihost.primary_writes(f"a fresh index in {out}", fresh)
  return 0


def _write_rows(out: Path, start: int, vecs: np.ndarray, dtype: str, fingerprint: str) -> None:
  stored, scales = compact.encode(vecs, dtype)
  for name, rows in (("doc_vecs.npy", stored), ("doc_scales.npy", scales)):
    if rows is None:
      continue
    table = np.lib.format.open_memmap(out / name, mode="r+")
    table[start:start + len(rows)] = rows
    table.flush()  # on disk before progress.json says so
    del table
  atomic.write_text(out / "progress.json", json.dumps({"done": start + len(vecs), "dim": int(vecs.shape[1]),
                                                       "dtype": dtype, "fingerprint": fingerprint}))


def part_norms(root: Path, doc_vecs, dense_dim: int, part: str = "dense") -> np.ndarray:
  """The norms [N] of the `dense` or `lexical` parts of the index in `root` (doc_norms.dense_norms, lexical_norms),
  computed once and stored beside it (`<part>_norms.npy`): a search of one claim then reads the index once, not
  twice."""
  compute = {"dense": doc_norms.dense_norms, "lexical": doc_norms.lexical_norms}[part]
  path = root / f"{part}_norms.npy"
  if path.is_file():
    norms = np.load(path)
    if len(norms) == len(doc_vecs):
      return norms
  norms = compute(doc_vecs, dense_dim)

  def write():
    with atomic.open_for_write(path, "wb") as f:
      np.save(f, norms)
  multihost.primary_writes(f"the {part} norms of {root}", write)
  return norms


def calibrated_docs(root: Path, built: Built, doc_vecs, cal: calibration.Calibration):
  """The index in `root` as `cal` has search read it: the stored vectors, or their view with the scaled parts'
  norms (part_norms, stored beside the index after the first search; only the parts `cal` scales)."""
  if not cal.scales_docs:
    return doc_vecs
  dim = doc_norms.dense_dim(built)
  stored = {part: part_norms(root, doc_vecs, dim, part) if strength else None
            for part, strength in (("dense", cal.doc_norms), ("lexical", cal.lex_norms))}
  return cal.docs(built, doc_vecs, stored["dense"], stored["lexical"])


def hub_penalty(root: Path, built: Built, params, inputs: StageInputs, source: Source, doc_vecs, settings: dict,
                mesh, claim_fn=None, bank_texts: list[str] | None = None, bank_name: str = "claims") -> np.ndarray:
  """r_d [N] of hubness.py for the index in `root`, computed once and stored beside it (`hub_penalty.npy`, with the
  bank and calibration settings it was made with in `hub_penalty.json`); the bank's documents are read from `source`
  in one pass, and their claim vectors transformed by `claim_fn` (a calibrated search's common words out).
  `bank_texts`: a bank of real claims instead, all of them; its penalty is stored apart (`hub_penalty_<bank_name>.*`,
  with a digest of the claims: "claims" for search.hub_bank, "train" for the stage's training claims at home), so
  the banks do not replace each other."""
  if bank_texts is None:
    want: dict = {k: int(settings[k]) for k in ("bank", "k", "seed")}
    stem = "hub_penalty"
  else:
    digest = hashlib.sha256(json.dumps(list(bank_texts)).encode()).hexdigest()[:16]
    want = {"k": int(settings["k"]), "bank_claims": len(bank_texts), "bank_digest": digest}
    stem = f"hub_penalty_{bank_name}"
  for key in ("doc_norms", "lex_norms"):  # penalties of vectors calibrated by doc_norms.py are their own
    if settings.get(key):
      want[key] = float(settings[key])
  if settings.get("stop_df", 1.0) < 1:  # and so are those of banks without the common words' lexical buckets
    want["stop_df"] = float(settings["stop_df"])
    want["stop_from"] = settings.get("stop_from", "documents")
  path, meta = root / f"{stem}.npy", root / f"{stem}.json"
  if path.is_file() and meta.is_file() and json.loads(meta.read_text()) == want:
    return np.load(path)

  if bank_texts is not None:
    penalty = hubness.texts_penalty(built, params, inputs.claim_words, bank_texts, doc_vecs, want["k"], mesh, claim_fn)
  else:
    def bank_words(rows: np.ndarray) -> np.ndarray:
      wanted = set(rows.tolist())
      texts = dict((i, text) for i, (_, text) in enumerate(source.documents()) if i in wanted)
      return inputs.claim_words([texts[int(r)] for r in rows])
    penalty = hubness.collection_penalty(built, params, doc_vecs, want, bank_words, mesh, claim_fn)

  def write():
    with atomic.open_for_write(path, "wb") as f:
      np.save(f, penalty)
    atomic.write_text(meta, json.dumps(want))
  multihost.primary_writes(f"the hub penalty of {root}", write)
  return penalty

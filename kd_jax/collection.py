"""Collections beyond a stage's training data: what `index`, `search` and `evaluate` read when
`config.collection` names one.

- `collection.path`: a BEIR folder (`corpus.jsonl`; `queries.jsonl` and `qrels/<split>.tsv` to evaluate) or a JSONL
  file of `{"_id", "title", "text"}` (index and search only);
- `collection.dataset`: a dataset kd_jax knows (`scifact`, `fever_titles`), read from `data.dir`.

Documents stream in file order, as the text every model reads (`title. text`), so indexing never holds the whole
collection's token ids at once.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from pathlib import Path
from typing import Iterator

import ml_collections

from kd_jax.data import beir, candidates, datasets
from kd_jax.data.jsonl import read_jsonl, require_file


@dataclasses.dataclass(frozen=True)
class Source:
  name: str  # names the stored index: <stage>/index/<name>/, and eval_<name>.json
  path: Path | None
  data_cfg: ml_collections.ConfigDict | None  # for a dataset kd_jax knows
  max_claims: int = 0  # evaluate on the first N test claims (0 = all)

  def _corpus_file(self) -> Path:
    return self.path / "corpus.jsonl" if self.path.is_dir() else self.path

  @functools.cached_property
  def _dataset(self) -> datasets.RetrievalData:
    """A known dataset, loaded once however many of its parts are asked for."""
    return datasets.load(self.data_cfg)

  @functools.cached_property
  def bm25(self) -> candidates.BM25Index:
    """BM25 over the collection, built once for every figure that needs it."""
    return candidates.BM25Index(self.collection())

  def documents(self) -> Iterator[tuple[str, str]]:
    """(doc_id, text) in collection order."""
    if self.data_cfg is not None:
      coll = self._dataset.collection
      for i, doc_id in enumerate(coll.ids):
        yield doc_id, coll.document(i)
      return
    path = require_file(self._corpus_file(), "Collection file", "Pass --config.collection.path=<BEIR folder or "
                        ".jsonl of {\"_id\", \"title\", \"text\"}>.")
    for _, obj in read_jsonl(path, required=("_id",), unique="_id"):
      yield str(obj["_id"]), _document(obj.get("title") or "", obj.get("text") or "")

  @functools.cached_property
  def fingerprint(self) -> str:
    """A digest of every document's id and text, in order: what an index of this collection was built from
    (indexing.build_index stores it and encodes a changed collection again; search refuses an index of another
    version). One pass over the collection, streamed."""
    h = hashlib.sha256()
    if "_collection" in self.__dict__:  # already read whole (search, evaluate): no second pass over the file
      coll = self._collection
      docs = ((doc_id, coll.document(i)) for i, doc_id in enumerate(coll.ids))
    else:
      docs = self.documents()
    for doc in docs:
      h.update(json.dumps(list(doc)).encode() + b"\n")
    return h.hexdigest()[:16]

  def claims_fingerprint(self, split: str) -> str:
    """A digest of `split`'s claims as evaluated (ids, texts, qrels, cut to max_claims): what stored figures on them
    were computed from."""
    c = self.claims(split)
    return hashlib.sha256(json.dumps([c.ids, c.texts, c.qrels], sort_keys=True).encode()).hexdigest()[:16]

  def collection(self) -> datasets.Collection:
    """The whole collection in memory (BM25 and snippets need it)."""
    return self._collection

  @functools.cached_property
  def _collection(self) -> datasets.Collection:
    if self.data_cfg is not None:
      return self._dataset.collection
    ids, titles, texts = [], [], []
    for _, obj in read_jsonl(require_file(self._corpus_file(), "Collection file"), required=("_id",), unique="_id"):
      ids.append(str(obj["_id"]))
      titles.append(obj.get("title") or "")
      texts.append(obj.get("text") or "")
    return datasets.Collection(ids=ids, titles=titles, texts=texts)

  def claims(self, split: str) -> datasets.ClaimSet:
    """The claims of `split` that have a relevant document (the first `max_claims`), with their qrels."""
    claims = self._claims(split)
    if self.max_claims and len(claims) > self.max_claims:
      claims = claims.take(range(self.max_claims))
    return claims

  def _claims(self, split: str) -> datasets.ClaimSet:
    if self.data_cfg is not None:
      return self._dataset.splits[split]
    if not self.path.is_dir():
      raise ValueError(f"collection.path={self.path} is a document file: evaluating needs a BEIR folder with "
                       "queries.jsonl and qrels/<split>.tsv.")
    queries = beir.read_queries(self.path)
    qrels = beir.read_qrels(self.path, split)
    rows = [(q, {d: r for d, r in rels.items() if r > 0}) for q, rels in qrels.items() if q in queries]
    rows = [(q, rels) for q, rels in rows if rels]
    return datasets.ClaimSet(ids=[q for q, _ in rows], texts=[queries[q] for q, _ in rows],
                             qrels={q: rels for q, rels in rows}, stats={"claims": len(rows)})


def _document(title: str, text: str) -> str:
  """The text of a document, exactly as datasets.Collection.document builds it."""
  return datasets.Collection(ids=[""], titles=[title], texts=[text]).document(0)


def from_config(config) -> Source | None:
  """The collection `config.collection` names, or None for the stage's own training data."""
  cc = config.get("collection")
  if cc is None or not (cc.path or cc.dataset):
    return None
  if cc.path and cc.dataset:
    raise ValueError("Set collection.path or collection.dataset, not both.")
  if cc.dataset:
    data_cfg = ml_collections.ConfigDict(config.data.to_dict())
    data_cfg.name = cc.dataset
    data_cfg.max_claims = 0
    return Source(name=_checked_name(cc.name or cc.dataset), path=None, data_cfg=data_cfg,
                  max_claims=cc.get("max_claims", 0))
  path = Path(cc.path).expanduser()
  if not path.exists():
    raise FileNotFoundError(f"collection.path {path} does not exist: pass a BEIR folder or a .jsonl of documents.")
  return Source(name=_checked_name(cc.name or (path.name if path.is_dir() else path.stem)), path=path, data_cfg=None,
                max_claims=cc.get("max_claims", 0))


# A collection's figures are written to <stage>/eval_<name>.json, beside the stage's own eval_<split>.json.
_SPLITS = ("train", "dev", "test")


def _checked_name(name: str) -> str:
  if name in _SPLITS:
    raise ValueError(f"A collection named {name!r} would overwrite the stage's own eval_{name}.json: pass "
                     "--config.collection.name=<another name>.")
  return name

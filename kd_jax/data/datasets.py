"""One in-memory shape for every retrieval dataset: a document collection plus claim splits with qrels.

Splits used here:
- `fever_titles`: train = FEVER `paper_test_pages.jsonl`, test = `paper_dev.jsonl`, collection = the union of
  both files' gold pages, each document represented by its readable page title (no Wikipedia dump here).
- `fever`: a user's own FEVER download (`train.jsonl`, a dev file, and optionally `wiki-pages/` for text).
- `scifact` / `beir`: BEIR layout; train = `qrels/train.tsv`, test = `qrels/test.tsv`.
In every case `dev` is carved from train by a seeded hash of the claim id, for model selection.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import os
from pathlib import Path
from typing import Any, Callable

from kd_jax.data import beir, fever
from kd_jax.data.jsonl import require_file

DATA_DIR_ENV = "KD_JAX_DATA_DIR"


@dataclasses.dataclass
class Collection:
  ids: list[str]
  titles: list[str]
  texts: list[str]

  def __len__(self) -> int:
    return len(self.ids)

  @functools.cached_property
  def index(self) -> dict[str, int]:
    return {doc_id: i for i, doc_id in enumerate(self.ids)}

  def document(self, i: int) -> str:
    """What every model reads for document i: title then body."""
    return f"{self.titles[i]}. {self.texts[i]}" if self.texts[i] else self.titles[i]


@dataclasses.dataclass
class ClaimSet:
  """Claims that have at least one relevant document; the rest are counted in `stats`, not ranked."""
  ids: list[str]
  texts: list[str]
  qrels: dict[str, dict[str, int]]  # all gold docs, including any missing from the collection
  stats: dict[str, int]

  def __len__(self) -> int:
    return len(self.ids)

  def take(self, rows) -> "ClaimSet":
    """The claims at `rows` (positions, in that order), with their qrels."""
    ids = [self.ids[i] for i in rows]
    return ClaimSet(ids=ids, texts=[self.texts[i] for i in rows], qrels={q: self.qrels[q] for q in ids},
                    stats={"claims": len(ids)})


@dataclasses.dataclass
class RetrievalData:
  name: str
  collection: Collection
  splits: dict[str, ClaimSet]
  # The training file's claims with no relevant document (FEVER's NOT ENOUGH INFO; none in a BEIR folder), minus any
  # text a ranked or test claim also has: never trained on, scored or tested, so real held-out claims on which the hub
  # ceiling can be checked beside dev's (evaluate's hub correction, `hub_norm.unlabelled_claims`).
  unlabelled: list[str] = dataclasses.field(default_factory=list)


def resolve_data_dir(configured: str | None) -> Path:
  """The folder holding `scifact/` and `fever/`: config value, else $KD_JAX_DATA_DIR."""
  raw = configured or os.environ.get(DATA_DIR_ENV)
  if not raw:
    raise FileNotFoundError(f"No data directory: pass --config.data.dir=/path/to/data or set {DATA_DIR_ENV}.")
  path = Path(raw).expanduser().resolve()
  if not path.is_dir():
    raise FileNotFoundError(f"Data directory {path} does not exist: pass --config.data.dir=... or set {DATA_DIR_ENV}.")
  return path


def in_dev(claim_id: str, dev_fraction: float, seed: int) -> bool:
  """Stable train/dev assignment: independent of file order, Python's hash seed and the machine."""
  digest = hashlib.sha256(f"{seed}:{claim_id}".encode()).digest()
  return int.from_bytes(digest[:8], "big") / 2.0**64 < dev_fraction


def _claim_set(claims: list[tuple[str, str, dict[str, int]]], collection: Collection, num_input: int) -> ClaimSet:
  ids, texts, qrels = [], [], {}
  stats = {"claims_in_file": num_input, "claims_without_relevant": num_input - len(claims),
           "claims_with_missing_gold": 0, "gold_docs_missing": 0}
  for claim_id, text, rels in claims:
    missing = [d for d in rels if d not in collection.index]
    if missing:
      stats["claims_with_missing_gold"] += 1
      stats["gold_docs_missing"] += len(missing)
    ids.append(claim_id)
    texts.append(text)
    qrels[claim_id] = rels
  stats["claims"] = len(ids)
  return ClaimSet(ids=ids, texts=texts, qrels=qrels, stats=stats)


def _split_train(train: list, num_input: int, collection: Collection, dev_fraction: float, seed: int):
  dev = [c for c in train if in_dev(c[0], dev_fraction, seed)]
  rest = [c for c in train if not in_dev(c[0], dev_fraction, seed)]
  # NEI claims are attributed to train in the counts: they carry no ranking signal in either split.
  return (_claim_set(rest, collection, num_input - len(dev)), _claim_set(dev, collection, len(dev)))


def load_fever(train_file: Path, test_file: Path, wiki_dir: Path | None = None, *, dev_fraction: float = 0.1,
               seed: int = 0, name: str = "fever") -> RetrievalData:
  """FEVER claim files; collection = union of gold pages (texts from `wiki_dir` when given, else titles)."""
  train_claims = list(fever.read_claims(train_file))
  test_claims = list(fever.read_claims(test_file))
  pages = list(dict.fromkeys(p for c in train_claims + test_claims for p in c.gold_pages))
  texts = dict.fromkeys(pages, "")
  if wiki_dir is not None:
    for page_id, text in fever.read_wiki_pages(wiki_dir):
      if page_id in texts:
        texts[page_id] = text
    absent = sum(1 for t in texts.values() if not t)
    if absent:
      logging.warning("%d of %d gold pages have no text in %s; they are represented by their title.",
                      absent, len(pages), wiki_dir)
  collection = Collection(ids=pages, titles=[fever.readable_title(p) for p in pages], texts=list(texts.values()))
  if not collection:
    raise ValueError(f"No claim in {train_file} or {test_file} names an evidence page, so the document collection "
                     "is empty: pass FEVER files with SUPPORTS/REFUTES claims.")

  def ranked(claims):
    return [(c.id, c.claim, {p: 1 for p in c.gold_pages}) for c in claims if c.verifiable]

  train, dev = _split_train(ranked(train_claims), len(train_claims), collection, dev_fraction, seed)
  test = _claim_set(ranked(test_claims), collection, len(test_claims))
  taken = {c.claim for c in test_claims} | {c.claim for c in train_claims if c.verifiable}  # test's, and ranked ones
  unlabelled = list(dict.fromkeys(c.claim for c in train_claims if not c.verifiable and c.claim not in taken))
  return RetrievalData(name=name, collection=collection, splits={"train": train, "dev": dev, "test": test},
                       unlabelled=unlabelled)


def load_beir(root: Path, *, train_split: str = "train", test_split: str = "test", dev_fraction: float = 0.1,
              seed: int = 0, name: str = "beir") -> RetrievalData:
  ids, titles, texts = [], [], []
  for doc_id, title, text in beir.read_corpus(root):
    ids.append(doc_id)
    titles.append(title)
    texts.append(text)
  collection = Collection(ids=ids, titles=titles, texts=texts)
  if not collection:
    raise ValueError(f"{Path(root) / 'corpus.jsonl'} holds no documents: point the config at a non-empty BEIR corpus.")
  queries = beir.read_queries(root)

  def ranked(split):
    qrels = beir.read_qrels(root, split)
    unknown = [q for q in qrels if q not in queries]
    if unknown:
      raise ValueError(f"{root}/qrels/{split}.tsv names {len(unknown)} queries absent from queries.jsonl "
                       f"(e.g. {unknown[0]!r})")
    rows = [(q, queries[q], {d: r for d, r in rels.items() if r > 0}) for q, rels in qrels.items()]
    return [r for r in rows if r[2]], len(rows)

  train_rows, n_train = ranked(train_split)
  test_rows, n_test = ranked(test_split)
  train, dev = _split_train(train_rows, n_train, collection, dev_fraction, seed)
  test = _claim_set(test_rows, collection, n_test)
  return RetrievalData(name=name, collection=collection, splits={"train": train, "dev": dev, "test": test})


def _configured(cfg, field: str, example: str) -> Path:
  """A path that `data.name` needs from `config.data.<field>`; empty would silently mean the current folder."""
  value = getattr(cfg, field)
  if not value:
    raise FileNotFoundError(f"data.name={cfg.name} needs data.{field}, which is empty: pass "
                            f"--config.data.{field}={example}.")
  return Path(value).expanduser()


def _fever_titles(cfg) -> RetrievalData:
  root = resolve_data_dir(cfg.dir) / "fever"
  return load_fever(root / "paper_test_pages.jsonl", root / "paper_dev.jsonl", dev_fraction=cfg.dev_fraction,
                    seed=cfg.split_seed, name=cfg.name)


def _fever(cfg) -> RetrievalData:
  train_file = require_file(_configured(cfg, "fever_train_file", "/path/to/fever/train.jsonl"), "FEVER claim file",
                            "Check --config.data.fever_train_file.")
  test_file = require_file(_configured(cfg, "fever_test_file", "/path/to/fever/paper_dev.jsonl"),
                           "FEVER claim file", "Check --config.data.fever_test_file.")
  return load_fever(train_file, test_file, Path(cfg.fever_wiki_dir).expanduser() if cfg.fever_wiki_dir else None,
                    dev_fraction=cfg.dev_fraction, seed=cfg.split_seed, name=cfg.name)


def _scifact(cfg) -> RetrievalData:
  return load_beir(resolve_data_dir(cfg.dir) / "scifact", dev_fraction=cfg.dev_fraction, seed=cfg.split_seed,
                   name=cfg.name)


def _beir(cfg) -> RetrievalData:
  return load_beir(_configured(cfg, "beir_dir", "/path/to/beir/<dataset>"), train_split=cfg.beir_train_split,
                   test_split=cfg.beir_test_split, dev_fraction=cfg.dev_fraction, seed=cfg.split_seed, name=cfg.name)


# Datasets by `data.name`: a loader takes the `config.data` ConfigDict. `register` adds one (e.g. from a module a
# config imports) without touching this file.
LOADERS: dict[str, Callable[[Any], RetrievalData]] = {}


def register(name: str, loader: Callable[[Any], RetrievalData]) -> None:
  if name in LOADERS and LOADERS[name] is not loader:
    raise ValueError(f"Dataset {name!r} is registered twice.")
  LOADERS[name] = loader


for _name, _loader in (("fever_titles", _fever_titles), ("fever", _fever), ("scifact", _scifact), ("beir", _beir)):
  register(_name, _loader)
# Under data.dir, shipped with the project's data (no other path to configure): their location is part of what a
# prepared cache depends on.
IN_DATA_DIR = ("fever_titles", "scifact")


def load(cfg) -> RetrievalData:
  """The dataset `cfg.name` names (a `config.data` ConfigDict or any object with the same fields)."""
  if cfg.name not in LOADERS:
    raise ValueError(f"Unknown data.name {cfg.name!r}: use one of {', '.join(LOADERS)}.")
  return LOADERS[cfg.name](cfg)

"""A student's search calibrated for the collection it searches, without labels or retraining: documents' dense
norms, and their lexical parts' norms, pulled toward the collection's medians (doc_norms.py), the training
collection's most common words kept out of lexical matches (stopwords.py), and out-of-vocabulary words' shared
embedding taken out of the towers' inputs (`unk_drop`). The first three act on vectors already computed, so search
stays one matrix product over the stored index; `unk_drop` changes what the towers read, so its vectors are encoded
into an index of their own (indexing.index_root). Their settings are chosen on dev (experiments/calibration.py; the
lexical norms on top: experiments/lexical_norms.py; unk_drop on top of both: experiments/unknown_words.py).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from kd_jax import doc_norms, stopwords
from kd_jax.models import students


STOP_FROM = "documents and claims"  # what stop_df counts a word's share over (stage_inputs.StageInputs.word_freq)


@dataclasses.dataclass(frozen=True)
class Calibration:
  doc_norms: float = 0.0  # strength: 0 leaves document vectors as trained
  stop_df: float = 1.0  # words in more than this share of training documents or claims do not match; 1: all match
  lex_norms: float = 0.0  # strength for the lexical parts: 0 leaves them as trained
  # Share of the <unk> embedding row removed when encoding claims and documents: 0 as trained, 1 out-of-vocabulary
  # words add nothing to the towers' inputs. Every such word reads that one row (data.oov_buckets without embedding
  # rows, or one shared <unk>), learned on the training collection's rare words; on a collection where most words are
  # unknown (FEVER's page titles: 57%) it drowns what the known words say.
  unk_drop: float = 0.0

  @property
  def active(self) -> bool:
    return self.doc_norms > 0 or self.stop_df < 1 or self.lex_norms > 0 or self.unk_drop > 0

  @property
  def scales_docs(self) -> bool:
    return self.doc_norms > 0 or self.lex_norms > 0

  @property
  def encodes(self) -> bool:
    """Whether claims and documents are encoded with other parameters than the stage's (`params`)."""
    return self.unk_drop > 0

  def settings(self) -> dict:
    out = {"doc_norms": self.doc_norms, "stop_df": self.stop_df, "lex_norms": self.lex_norms,
           "unk_drop": self.unk_drop}
    if self.stop_df < 1:  # which rows the stop words are counted over, so results from before the claims counted
      out["stop_from"] = STOP_FROM  # read as made at other settings (StageInputs.word_freq)
    return out

  def made(self, stored: dict) -> bool:
    """Whether a stored calibrated result (its `calibrated` dict) was made at these settings; a setting it lacks
    counts at its default (it was saved before the setting existed: lex_norms 0, unk_drop 0, stop words counted over
    the training documents alone)."""
    made_at = {**Calibration().settings(), "stop_from": "documents", **stored}
    return {k: made_at[k] for k in self.settings()} == self.settings()

  def params(self, params):
    """The student's parameters to encode claims and documents with: `params` itself, or with the <unk> embedding
    row scaled by 1 - unk_drop."""
    if not self.encodes:
      return params
    try:
      return students.scale_unknown(params, 1.0 - self.unk_drop)
    except ValueError:
      raise ValueError("search.unk_drop scales the student's <unk> embedding row, and this student has no word-embedding"
                       " table ('embed'/'embedding'): pass --config.search.unk_drop.own=0 "
                       "--config.search.unk_drop.other=0.") from None

  def docs(self, built, doc_vecs, norms: np.ndarray | None = None, lex_norms: np.ndarray | None = None):
    """The index as search should read it (itself when the norms are left alone); `norms`, `lex_norms`: its dense
    and lexical norms, if stored."""
    return doc_norms.calibrated(doc_vecs, doc_norms.dense_dim(built), self.doc_norms, norms, self.lex_norms,
                                lex_norms)

  def claims(self, built, inputs, claim_vecs: np.ndarray) -> np.ndarray:
    """Claim vectors without the lexical buckets of the training collection's common words."""
    cfg = built.module.config
    if self.stop_df >= 1 or not cfg.lexical_dim:
      return claim_vecs
    if inputs.doc_freq is None:
      raise ValueError("This stage's folder holds no word frequencies (inputs/doc_freq.npy): run "
                       "--config.mode=evaluate once with its training config to store them, or pass "
                       "--config.search.stop_df=1.")
    keep = stopwords.claim_mask(claim_vecs.shape[1], cfg.out_dim, cfg.lexical_dim,
                                stopwords.stop_ids(inputs.word_freq, self.stop_df), cfg.lexical_private)
    return np.asarray(claim_vecs) * keep


def describe(settings: dict) -> str:
  """'doc_norms 0.25, stop_df 0.25' (and the lexical strength and unk_drop when set) from a stored `settings()`."""
  text = f"doc_norms {settings['doc_norms']:g}, stop_df {settings['stop_df']:g}"
  text += f", lex_norms {settings['lex_norms']:g}" if settings.get("lex_norms") else ""
  return text + (f", unk_drop {settings['unk_drop']:g}" if settings.get("unk_drop") else "")


def of(config, own: bool) -> Calibration:
  """The config's calibration for the stage's own training collection (`own`) or any other; none for configs saved
  before it existed."""
  s = config.get("search", {})
  return Calibration(doc_norms=doc_norms.strength_for(config, own),
                     stop_df=stopwords.check(s.get("stop_df", 1.0)),
                     lex_norms=doc_norms.strength_for(config, own, "lex_norms"),
                     unk_drop=doc_norms.strength_for(config, own, "unk_drop"))

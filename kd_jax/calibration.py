"""A student's search calibrated for the collection it searches, without labels or retraining: documents' dense
norms, and their lexical parts' norms, pulled toward the collection's medians (doc_norms.py) and the training
collection's most common words kept out of lexical matches (stopwords.py). All act on vectors already computed, so
search stays one matrix product; their settings are chosen on dev (experiments/calibration.py; the lexical norms on
top: experiments/lexical_norms.py).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from kd_jax import doc_norms, stopwords


@dataclasses.dataclass(frozen=True)
class Calibration:
  doc_norms: float = 0.0  # strength: 0 leaves document vectors as trained
  stop_df: float = 1.0  # words in more than this share of training documents do not match; 1: all words match
  lex_norms: float = 0.0  # strength for the lexical parts: 0 leaves them as trained

  @property
  def active(self) -> bool:
    return self.doc_norms > 0 or self.stop_df < 1 or self.lex_norms > 0

  @property
  def scales_docs(self) -> bool:
    return self.doc_norms > 0 or self.lex_norms > 0

  def settings(self) -> dict:
    return {"doc_norms": self.doc_norms, "stop_df": self.stop_df, "lex_norms": self.lex_norms}

  def made(self, stored: dict) -> bool:
    """Whether a stored calibrated result (its `calibrated` dict) was made at these settings; a setting it lacks
    counts at its default (it was saved before the setting existed: lex_norms 0)."""
    made_at = {**Calibration().settings(), **stored}
    return {k: made_at[k] for k in self.settings()} == self.settings()

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
                                stopwords.stop_ids(inputs.doc_freq, self.stop_df))
    return np.asarray(claim_vecs) * keep


def describe(settings: dict) -> str:
  """'doc_norms 0.25, stop_df 0.25' (and the lexical strength when set) from a stored `settings()`."""
  text = f"doc_norms {settings['doc_norms']:g}, stop_df {settings['stop_df']:g}"
  return text + (f", lex_norms {settings['lex_norms']:g}" if settings.get("lex_norms") else "")


def of(config, own: bool) -> Calibration:
  """The config's calibration for the stage's own training collection (`own`) or any other; none for configs saved
  before it existed."""
  s = config.get("search", {})
  return Calibration(doc_norms=doc_norms.strength_for(config, own),
                     stop_df=stopwords.check(s.get("stop_df", 1.0)),
                     lex_norms=doc_norms.strength_for(config, own, "lex_norms"))

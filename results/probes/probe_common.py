"""What the fusion probes beside this file share: loading a main-command seed's stored index, and the Rocchio
expansion of claim vectors. Not part of kd_jax; the probes are records of how their .json files were made."""
import json
import sys
from pathlib import Path

import ml_collections
import numpy as np

sys.path.insert(0, ".")  # run from the repository root
from experiments import calibration as cexp  # noqa: E402
from kd_jax import sharding  # noqa: E402
from kd_jax.modes import stage  # noqa: E402

MESH = sharding.make_mesh(1, 1)


def load(workdir: str, seed: int, collection: str = "", max_claims: int = 0):
  """(stage dir, config, built, params, inputs, source, float32 doc vectors, doc ids) of the main command's seed
  `seed`, with its stored index of `collection` (default: its own)."""
  stage_dir = Path(workdir) / f"cnn_student+lex4k+oovlex+steps1200_s{seed}"
  cfg = ml_collections.ConfigDict(json.loads((stage_dir / "config.json").read_text()))
  built, params, inputs = stage.student(cfg, stage_dir, MESH)
  src, index = cexp.stored_index(stage_dir, cfg, built, params, inputs, collection or cfg.data.name, max_claims, MESH)
  doc_vecs, doc_ids, _ = index.read()
  return stage_dir, cfg, built, params, inputs, src, np.asarray(doc_vecs, np.float32), doc_ids


def rocchio(claim_vecs, doc_vecs, top_rows, k: int, dense_dim: int, dense: float, lexical: float):
  """Each claim's vector plus the mean vector of its first `k` top documents, per part (dense, lexical) scaled to
  the claim part's norm and weighted `dense` / `lexical`."""
  mean = doc_vecs[top_rows[:, :k]].mean(1)
  q = claim_vecs.copy()
  for part, weight in ((slice(0, dense_dim), dense), (slice(dense_dim, None), lexical)):
    if weight:
      qn = np.linalg.norm(claim_vecs[:, part], axis=1, keepdims=True)
      mn = np.maximum(np.linalg.norm(mean[:, part], axis=1, keepdims=True), 1e-9)
      q[:, part] = claim_vecs[:, part] + weight * qn / mn * mean[:, part]
  return q

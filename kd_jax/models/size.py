"""Parameter counts: the one place they are computed, for tests, logs and the README."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np


def count_params(params: Any) -> int:
  """Total number of scalars in a pytree of arrays (params, a variables dict, or `jax.eval_shape` output)."""
  return int(sum(np.prod(np.shape(leaf), dtype=np.int64) for leaf in jax.tree_util.tree_leaves(params)))


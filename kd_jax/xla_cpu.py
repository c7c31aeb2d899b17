"""XLA:CPU compiler options for a model's train step, set per model in its config (`train.xla_cpu_options`).

XLA's defaults suit most steps; the BiLSTM's gains from one more. Its step is 128 small products and their gate
arithmetic in a loop, forward and backward, and compiled for 512-bit vectors where the CPU has them
(`xla_cpu_prefer_vector_width`; XLA prefers 256) it ran 0.70x -> 0.75x PyTorch's with the merged products of
models/bilstm.py, side by side on an Intel Xeon (results/probes/bilstm_step_ab.json). Every dot a YNNPACK fusion
(`xla_cpu_experimental_ynn_fusion_type`) sped the layer alone and not the step, so it is not set. The CNN's step
gains nothing from either (it is mostly convolutions), so its config sets none.

The options are XLA:CPU's: on a mesh of accelerators they are left out, and the step compiles as XLA makes it.
"""

from __future__ import annotations

import functools
from typing import Any, Mapping

import jax
import jax.numpy as jnp


def options(config_options: Mapping[str, Any] | None, devices) -> dict[str, Any]:
  """`config_options` as `jax.jit`'s compiler_options when every one of `devices` (a mesh's, or a list) is a CPU,
  else {}. Raises a one-line ValueError when XLA rejects one (an unknown name, a bad value)."""
  opts = _as_dict(config_options)
  flat = getattr(devices, "devices", devices)
  flat = list(getattr(flat, "flat", flat))
  if not opts or any(d.platform != "cpu" for d in flat):
    return {}
  check(opts)
  return opts


def check(config_options: Mapping[str, Any] | None) -> None:
  """Compiles a trivial function with the options, so a bad one fails in a second, before any training."""
  opts = _as_dict(config_options)
  if opts:
    _check(tuple(sorted(opts.items())))


def _as_dict(config_options) -> dict[str, Any]:
  """A config's options (a ConfigDict, a mapping or None) as a plain dict."""
  if config_options is None:
    return {}
  return config_options.to_dict() if hasattr(config_options, "to_dict") else dict(config_options)


@functools.cache
def _check(items: tuple[tuple[str, Any], ...]) -> None:
  if jax.default_backend() != "cpu":
    return
  try:
    jax.jit(lambda x: x @ x, compiler_options=dict(items)).lower(jnp.zeros((2, 2))).compile()
  except Exception as e:  # XLA's error types differ across jaxlib versions; its message names the option
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise ValueError(f"train.xla_cpu_options {dict(items)}: XLA rejects them ({first}); fix or remove the option "
                     "(--config.train.xla_cpu_options is a dict of XLA:CPU compiler options)") from e

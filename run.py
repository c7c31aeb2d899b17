"""kd_jax entry point: `python run.py --config=configs/cnn_student.py --workdir=workdir [--config.x=y ...]`.

`config.mode` names the mode, looked up in `MODES`: kd_jax's own (train_teacher | score_candidates | pseudo_claims |
distill | evaluate | index | search, one module each under kd_jax/modes/) and the experiments' (reproduce |
pseudo_table, under experiments/). README, "Modes".
"""

import re
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from experiments import pseudo_table, reproduce
from kd_jax import modes
from kd_jax.data.jsonl import DataFormatError

MODES = {**modes.MODES, "reproduce": reproduce.run, "pseudo_table": pseudo_table.run}

_CONFIG = config_flags.DEFINE_config_file("config", None, "Python config file (configs/*.py).", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", "workdir", "Experiment folder; each stage writes a subfolder.")
flags.mark_flags_as_required(["config"])


class _QuietLibraries:
  """Drops INFO chatter from Orbax and TFDS (hundreds of lines per checkpoint); warnings still pass."""

  def filter(self, record):
    return record.levelno >= 30 or not any(f"/{lib}/" in record.pathname for lib in _CHATTY)


_CHATTY = ("orbax", "tensorflow_datasets", "bm25s")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:  # keep a user's -v 1, which shows the traceback of a bad-input error
    logging.set_verbosity(logging.INFO)
  logging.get_absl_handler().addFilter(_QuietLibraries())
  try:
    modes.run(_CONFIG.value, _WORKDIR.value, MODES)
  except (FileNotFoundError, ValueError, DataFormatError) as e:
    # Bad input, not a bug: one line that says what to do (the traceback stays available at -v 1).
    logging.debug("Traceback:", exc_info=True)
    sys.exit(f"kd_jax error: {e}")


def _unknown_field(e: Exception, argv: list[str]) -> str | None:
  """The override that names a field the config lacks, e.g. `--config.data.nme=x (did you mean 'name'?)`, or
  None if `e` is not about one.

  ml_collections raises a KeyError, or an AttributeError wrapping one, whose text is the field's last part in
  single quotes, then any suggestion on a second line (`Did you mean "name" instead of "nme"?`).
  """
  cause = e.args[0] if isinstance(e, AttributeError) and e.args else e
  if not isinstance(cause, KeyError) or not cause.args:
    return None
  text = str(cause.args[0])
  name = text.split("\n", 1)[0].strip("'\"")
  flagged = [a for a in argv if a.startswith("--config.") and name in a.split("=", 1)[0].split(".")]
  suggestion = re.search(r'Did you mean "([^"]+)"', text)
  return (flagged[0] if flagged else repr(name)) + (f" (did you mean {suggestion[1]!r}?)" if suggestion else "")


def _parse_flags(argv):
  try:
    return flags.FLAGS(argv)
  except (AttributeError, KeyError) as e:
    override = _unknown_field(e, argv)
    if override is None:  # e.g. a --config file without get_config()
      sys.exit(f"kd_jax error: bad --config file: {e}")
    # ml_collections reports an unknown --config.x as a chained traceback; one line is enough.
    sys.exit(f"kd_jax error: unknown config field in {override}: check the override against the fields of the "
             "--config file.")
  except (TypeError, ValueError, flags.Error) as e:
    sys.exit(f"kd_jax error: bad command line: {e}")


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)

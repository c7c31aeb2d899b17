"""results/RESULTS.md: the sections each experiment writes beside its JSON, joined in a fixed order.

Each experiment renders its own section (reproduction.md from results.json, pseudo.md from pseudo.json, ...) and then
calls `write`, so no experiment needs another's code to rebuild the page. The last section, where the issue's targets
stand, is the README's table, copied.
"""

from __future__ import annotations

from pathlib import Path

from kd_jax import atomic

SECTIONS = (
    "reproduction.md",  # experiments/reproduce.py: the paper's table, the sweep
    "teacher.md",  # benchmarks/teacher_rows.py: the rows that explain the teacher
    "transfer.md",  # benchmarks/transfer_table.py: the students on the other collection
    "ablation.md",  # experiments/ablation.py: what makes a student search the whole collection
    "main_recipe.md",  # experiments/seed_table.py: the main command's student over seeds
    "calibration.md",  # experiments/calibration.py: search calibrated for the collection searched
    "lexical_norms.md",  # experiments/lexical_norms.py: lexical norms calibrated on top of it
    # experiments/unknown_words.py: the <unk> embedding out of the towers' inputs, on top of both, per student kind
    "unknown_words_cnn.md",
    "unknown_words_lstm.md",
    "claim_bank.md",  # experiments/claim_bank.py: the hub correction's bank made of the collection's claims
    "lexical_layout.md",  # experiments/lexical_layout.py: the lexical buckets' layout, common words a bucket each
    "pseudo.md",  # experiments/pseudo_table.py: pseudo-claims
)


README = Path(__file__).resolve().parents[1] / "README.md"
TARGETS = ("<!-- targets", "<!-- /targets -->")  # the README's table of the targets lies between these


def targets_section(readme: Path = README) -> str:
  """The README's table of where the issue's targets stand, as a section (one table, kept in one place)."""
  text = readme.read_text() if readme.is_file() else ""
  start, end = text.find(TARGETS[0]), text.find(TARGETS[1])
  if start < 0 or end < start:
    return ""
  table = text[text.index("\n", start) + 1:end].strip()
  return ("## Where the issue's targets stand\n\nSciFact test, 3 seeds, whole collection, unless named; copied from "
          "the README (\"Where the issue's targets stand\"), which gives each figure's source and, below the table, what "
          f"was tried for the missed ones.\n\n{table}\n")


def write(out: Path) -> None:
  parts = [(Path(out) / name).read_text() for name in SECTIONS if (Path(out) / name).is_file()]
  targets = targets_section()
  atomic.write_text(Path(out) / "RESULTS.md", "\n".join(parts + ([targets] if targets else [])))

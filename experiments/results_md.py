"""results/RESULTS.md: the sections each experiment writes beside its JSON, joined in a fixed order.

Each experiment renders its own section (reproduction.md from results.json, pseudo.md from pseudo.json, ...) and then
calls `write`, so no experiment needs another's code to rebuild the page.
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
    "pseudo.md",  # experiments/pseudo_table.py: pseudo-claims
)


def write(out: Path) -> None:
  parts = [(Path(out) / name).read_text() for name in SECTIONS if (Path(out) / name).is_file()]
  atomic.write_text(Path(out) / "RESULTS.md", "\n".join(parts))

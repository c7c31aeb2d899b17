"""Beyond the labelled claims: students distilled on labelled + teacher-labelled pseudo-claims, and student + BM25
hybrids; adds its section to results/RESULTS.md (with a plot of full-collection nDCG@10 against pseudo-claims).

  python run.py --config=configs/pseudo_table.py --workdir=workdir/reproduce \
      --config.reproduce.teacher_dirs.scifact=workdir/teacher

Uses the reproduction's settings (configs/reproduce.py: students, teachers, data caps) and stage folders, so
finished students and teachers are reused. Same training steps at every pseudo-claim count: the comparison
holds compute fixed and varies only what the steps are spent on.
"""

import ml_collections

from configs import reproduce


def get_config(arg: str = ""):
  c = reproduce.get_config(arg)
  c.mode = "pseudo_table"
  c.name = "pseudo_table"
  c.pseudo_table = ml_collections.ConfigDict(dict(
      datasets=("scifact", "fever_titles"),
      # The curve (first of reproduce.students) runs every count; the others the smallest and largest count.
      # SciFact: the teacher labels ~4 pseudo-claims/s on 2 CPU cores (16 pairs x 96 tokens each), so 5k is
      # ~20 min. FEVER-titles documents are page titles: its pool is the collection's ~2.9k titles.
      counts=dict(scifact=(0, 1000, 2500, 5000), fever_titles=(0, 2500)),
      fraction=0.5, seed=0, max_overlap=0.8,
      min_words=dict(scifact=5, fever_titles=1), max_words=40,
  ))
  if arg == "smoke":
    c.pseudo_table.counts = dict(scifact=(0, 24), fever_titles=(0, 24))
    c.reproduce.results_dir = "/tmp/kd_jax_pseudo_smoke"
  return c

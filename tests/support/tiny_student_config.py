"""Distil into the bag-of-words student of tests/support/tiny_student.py (the CNN chain with another model):

  python run.py --config=tests/support/tiny_student_config.py:smoke --workdir=workdir
"""

from configs import cnn_student, common


def get_config(arg: str = ""):
  c = cnn_student.get_config(arg)
  c.name = "bow_student"
  c.model = common.student_model("bow", module="tests.support.tiny_student", hidden=32)
  c.data.oov_buckets = 0  # no lexical channel to match hashed out-of-vocabulary ids: they share <unk>
  return c

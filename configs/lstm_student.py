"""Distil the teacher into the claim-independent BiLSTM student, running every missing stage first:

  python run.py --config=configs/lstm_student.py --workdir=workdir

prepares data -> trains the teacher (workdir/teacher, reused if complete) -> scores the training candidates
(reused if stored) -> trains the BiLSTM student (workdir/lstm_student) -> evaluates it on the test split.
`--config=configs/lstm_student.py:smoke` shrinks everything for a quick CPU check.
"""

from configs import common, teacher


def get_config(arg: str = ""):
  smoke = arg == "smoke"
  c = common.base_config("distill")
  c.name = "lstm_student"
  c.model = common.student_model("lstm")
  c.train = common.train_config(batch_size=32, steps=600, learning_rate=2e-3, eval_every=100,
                                checkpoint_every=100)
  c.distill = dict(
      temperature=2.0, alpha=0.5, hard="listwise",  # loss = alpha * T^2 KL + (1 - alpha) * hard
      online=False,  # True: teacher logits computed in the step (frozen params) instead of stored scores
      teacher_dir="",  # finished teacher run; '' -> <workdir>/teacher (trained there if missing)
      train_teacher_if_missing=True,
  )
  # The teacher stage the chain runs when no teacher is found; it always uses this config's data.
  c.teacher = teacher.get_config(arg)
  if smoke:
    common.shrink(c)
  return c

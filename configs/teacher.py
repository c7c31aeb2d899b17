"""Fine-tune the cross-attention teacher (MiniLM-L6 cross-encoder) on hard labels.

  python run.py --config=configs/teacher.py --workdir=workdir
"""

from configs import common


def get_config(arg=""):
  smoke = arg in ("smoke", True)
  c = common.base_config("train_teacher")
  c.name = "teacher"
  c.model = common.teacher_model()
  c.train = common.train_config(batch_size=2, steps=300, learning_rate=3e-5, warmup_steps=30, eval_every=100,
                                checkpoint_every=50, eval_batch_size=8)
  if smoke:
    common.shrink(c)
  return c

"""Fine-tune the cross-attention teacher (MiniLM-L6 cross-encoder) on hard labels.

  python run.py --config=configs/teacher.py --workdir=workdir

The CPU recipe (chosen on dev, results/RESULTS.md): 256-token pairs, so the teacher reads most of each abstract;
3 epochs over the training claims, each visit a fresh list of the claim's golds + random negatives from its 16
BM25 candidates; hashed dropout masks (fast_ops.py). `:accelerator` is the same recipe sized for a TPU/GPU.
"""

from configs import common


def get_config(arg=""):
  c = common.base_config("train_teacher")
  c.name = "teacher"
  c.model = common.teacher_model()
  c.model.dropout_rng = "hash"  # steps 1.18x faster at 256 tokens than 16-bit threefry masks
  c.model.head = "seg_cosine"  # starts at dev nDCG@10 0.60 untrained; the [CLS] head's loss sat at log(K) for 40 steps
  c.train = common.train_config(batch_size=4, steps=550, learning_rate=5e-5, warmup_steps=55, eval_every=110,
                                checkpoint_every=55, eval_batch_size=8, list_size=4)
  if arg in ("smoke", True):
    common.shrink(c)
  elif arg == "accelerator":
    # One accelerator does in minutes what the CPU recipe needs half an hour for: longer pairs, every candidate in
    # every list, 10 epochs, bf16 compute (params and optimizer stay f32).
    c.model.pair_len, c.model.dtype, c.model.dropout_rng = 384, "bfloat16", "threefry"
    c.train.update(batch_size=32, steps=230, learning_rate=5e-5, warmup_steps=23, eval_every=23,
                   checkpoint_every=23, eval_batch_size=64, list_size=0)
  elif arg:
    raise ValueError(f"configs/teacher.py takes '', 'smoke' or 'accelerator', got {arg!r}")
  return c

#!/bin/bash
# The main command's CNN, seeds 1 and 2, trained as its seed 0 was (all words hashed alike during training: the
# layout is a search-time choice), then every stage searched at every lexical layout (the experiment keeps the rows
# it has measured). Each run.py is ended once its stage is complete: its home evaluation is the experiment's.
cd /work/main
export KD_JAX_DATA_DIR=/work/shared/data KD_JAX_CACHE=/work/cache
for seed in 1 2; do
  N="cnn_student+lex4k+oovlex+steps1200_s$seed"
  echo "=== $(date +%T) main_hash/$N"
  .venv/bin/python run.py --config=configs/cnn_student.py --workdir=workdir/main_hash --config.name=$N \
    --config.seed=$seed --config.model.lexical_private=0 2>&1 | grep "\[dev\]\|Student" &
  until [ -f "workdir/main_hash/$N/complete.json" ]; do sleep 5; done
  sleep 3; pkill -f "config.name=$N "; wait; echo "=== $(date +%T) trained"
done
S=fever/cnn_student,fever/lstm_student,fever/cnn_student_s1,fever/lstm_student_s1,fever/cnn_student_s2,fever/lstm_student_s2
S=$S,main_hash/cnn_student+lex4k+oovlex+steps1200_s0,bilstm_layer/lstm_student+lex4k+oovlex_s0
S=$S,main_hash/cnn_student+lex4k+oovlex+steps1200_s1,main_hash/cnn_student+lex4k+oovlex+steps1200_s2
.venv/bin/python -m experiments.lexical_layout --workdir=workdir --stages=$S 2>&1 | grep -v "^[IW]120"
echo "=== $(date +%T) done"

#!/bin/bash
# The SciFact BiLSTM's seed 0 (stopped earlier for time), then the layout experiment over all eight stages.
cd /work/main
export KD_JAX_DATA_DIR=/work/shared/data KD_JAX_CACHE=/work/cache
B="bilstm_layer/lstm_student+lex4k+oovlex_s0"
echo "=== $(date +%T) $B"
.venv/bin/python run.py --config=configs/lstm_student.py --workdir=workdir/bilstm_layer \
  --config.name=lstm_student+lex4k+oovlex_s0 --config.seed=0 --config.model.lexical_private=0 2>&1 | grep "\[dev\]\|Student" &
until [ -f "workdir/$B/complete.json" ]; do sleep 5; done
sleep 3; pkill -f "oovlex_s0 --config.seed=0"; echo "=== $(date +%T) trained; its home evaluation left to the experiment"
.venv/bin/python -m experiments.lexical_layout --workdir=workdir --stages=fever/cnn_student,fever/lstm_student,fever/cnn_student_s1,fever/lstm_student_s1,fever/cnn_student_s2,fever/lstm_student_s2,main_hash/cnn_student+lex4k+oovlex+steps1200_s0,$B 2>&1 | grep -v "^[IW]1201"
echo "=== $(date +%T) done"

#!/bin/bash
# Resumes the SciFact BiLSTM's seed 0 (stopped at step 200 last session; same config, so it resumes from the
# checkpoint), then measures it at every lexical layout, at home and on FEVER-titles (the experiment keeps the
# rows it has already measured).
cd /work/main
export KD_JAX_DATA_DIR=/work/shared/data KD_JAX_CACHE=/work/cache
B="bilstm_layer/lstm_student+lex4k+oovlex_s0"
echo "=== $(date +%T) $B"
.venv/bin/python run.py --config=configs/lstm_student.py --workdir=workdir/bilstm_layer \
  --config.name=lstm_student+lex4k+oovlex_s0 --config.seed=0 --config.model.lexical_private=0 2>&1 | grep "\[dev\]\|Student\|step .*00 " &
until [ -f "workdir/$B/complete.json" ]; do sleep 5; done
sleep 3; pkill -f "oovlex_s0 --config.seed=0"; echo "=== $(date +%T) trained; its home evaluation left to the experiment"
.venv/bin/python -m experiments.lexical_layout --workdir=workdir --stages=fever/cnn_student,fever/lstm_student,fever/cnn_student_s1,fever/lstm_student_s1,fever/cnn_student_s2,fever/lstm_student_s2,main_hash/cnn_student+lex4k+oovlex+steps1200_s0,$B 2>&1 | grep -v "^[IW]120"
echo "=== $(date +%T) done"

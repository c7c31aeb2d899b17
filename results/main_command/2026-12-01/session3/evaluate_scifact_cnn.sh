#!/bin/bash
# The main command's CNN, seeds 0-2, evaluated as `mode=evaluate` evaluates at the config's lexical layout
# (configs/cnn_student.py: 2,048, chosen on dev by experiments/lexical_layout.py): the figures the layout experiment
# computed, through the main pipeline (eval_test.json in each stage folder).
cd /work/main
export KD_JAX_DATA_DIR=/work/shared/data KD_JAX_CACHE=/work/cache
for seed in 0 1 2; do
  N="cnn_student+lex4k+oovlex+steps1200_s$seed"
  echo "=== $(date +%T) $N"
  .venv/bin/python run.py --config=configs/cnn_student.py --config.mode=evaluate --workdir=workdir/main_hash \
    --config.name=$N --config.seed=$seed 2>&1 | grep -v "^[IW]1201\|DEBUG"
  cp workdir/main_hash/$N/eval_test.json results/main_command/2026-12-01/session3/eval_test_$N.json
done
echo "=== $(date +%T) done"

#!/bin/bash
# Runs experiments/lexical_layout.py over the stages as the training chains finish them (it keeps rows measured).
cd /work/main
export KD_JAX_DATA_DIR=/work/shared/data KD_JAX_CACHE=/work/cache
ALL="fever/cnn_student fever/lstm_student fever/cnn_student_s1 fever/lstm_student_s1 fever/cnn_student_s2 fever/lstm_student_s2 main_hash/cnn_student+lex4k+oovlex+steps1200_s0"
while true; do
  ready=""; n=0
  for s in $ALL; do [ -f workdir/$s/complete.json ] && { ready="$ready,$s"; n=$((n+1)); }; done
  ready=${ready#,}
  if [ -n "$ready" ] && [ "$ready" != "$last" ]; then
    echo "=== $(date +%T) $ready"
    .venv/bin/python -m experiments.lexical_layout --workdir=workdir --stages=$ready 2>&1 | grep -v "^[IW]1201"
    last=$ready
  fi
  [ $n = 7 ] && [ "$ready" = "$last" ] && break
  sleep 30
done
echo "=== $(date +%T) all done"

#!/bin/bash
# SciFact: the main command's teacher + CNN students (seeds 0-2) in workdir/main_hash, BiLSTM students in
# workdir/bilstm_layer (its teacher a link to the same) -- the stages experiments/search_grid.py and claim_bank.py read.
cd /work/main
export KD_JAX_DATA_DIR=/work/shared/data KD_JAX_CACHE=/work/cache
mkdir -p workdir/bilstm_layer && ln -sfn ../main_hash/teacher workdir/bilstm_layer/teacher
for seed in 0 1 2; do
  for spec in "cnn main_hash cnn_student+lex4k+oovlex+steps1200" "lstm bilstm_layer lstm_student+lex4k+oovlex"; do
    set -- $spec
    echo "=== $(date +%T) $2/$3_s$seed"
    /usr/bin/time -f "%e s wall" .venv/bin/python run.py --config=configs/$1_student.py --workdir=workdir/$2 \
      --config.name=$3_s$seed --config.seed=$seed 2>&1 | grep -v "step .*loss"
  done
done
echo "=== $(date +%T) all done"

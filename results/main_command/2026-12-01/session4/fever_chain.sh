#!/bin/bash
# FEVER-titles on a fresh machine: teacher, then the CNN's seeds 0-2 and the BiLSTM's seeds 0-2 (the commands of
# results/main_command/README.md, 2026-12-01). Each run.py is ended once its stage is complete, before its home
# evaluation (skip_eval.sh): the stages are evaluated afterwards by evaluate_fever.sh.
cd /work/main
export KD_JAX_DATA_DIR=/work/shared/data KD_JAX_CACHE=/work/cache
for k in cnn lstm; do for seed in 0 1 2; do
  name=${k}_student; [ $seed != 0 ] && name=${k}_student_s$seed
  echo "=== $(date +%T) $name"
  /usr/bin/time -f "%e s wall" .venv/bin/python run.py --config=configs/${k}_student.py --config.data.name=fever_titles \
    --config.data.doc_word_len=16 --config.teacher.model.pair_len=48 --workdir=workdir/fever \
    --config.name=$name --config.seed=$seed 2>&1 | grep -v "step .*loss"
done; done
echo "=== $(date +%T) all done"

#!/bin/bash
# mode=evaluate at home for the FEVER-titles stages of fever_chain.sh, at today's config (the hub ceiling checked on
# dev's claims and the training file's unlabelled claims together, hub_norm.unlabelled_claims), then the probe that
# compares that rule with dev's claims alone on the same stages (results/probes/unlabelled_hub.{py,json}).
# Arguments: the student kinds (cnn, lstm); run for the CNNs while the BiLSTMs trained.
cd /work/main
export KD_JAX_DATA_DIR=/work/shared/data KD_JAX_CACHE=/work/cache PYTHONPATH=.
for k in "$@"; do for seed in 0 1 2; do
  name=${k}_student; [ $seed != 0 ] && name=${k}_student_s$seed
  while [ ! -f workdir/fever/$name/complete.json ]; do sleep 20; done  # still training
  echo "=== $(date +%T) $name"
  /usr/bin/time -f "%e s wall" .venv/bin/python run.py --config=configs/${k}_student.py --config.data.name=fever_titles \
    --config.data.doc_word_len=16 --config.teacher.model.pair_len=48 --workdir=workdir/fever \
    --config.name=$name --config.mode=evaluate 2>&1 | grep -E "hub|Hybrid zcov|wall|Error"
  echo "=== $(date +%T) probe $name"
  .venv/bin/python results/probes/unlabelled_hub.py fever/$name 2>&1 | grep -E "dev_only|pooled|Error"
done; done
echo "=== $(date +%T) all done"

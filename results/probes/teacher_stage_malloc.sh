#!/bin/bash
# The teacher stage of the main command (configs/teacher.py: two CPU devices, hashed dropout masks) for 12 steps
# under one allocator setting, killed after its third train log; prints its logged steps/s (step 4 includes the
# compile). Not part of kd_jax; a record of how teacher_stage_malloc.txt was made, from the repository root
# (KD_JAX_DATA_DIR set), alternating the settings:
#   S="MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=1099511627776 MALLOC_ARENA_MAX=1"
#   for s in default steady default steady; do
#     if [ $s = steady ]; then bash results/probes/teacher_stage_malloc.sh steady $S
#     else bash results/probes/teacher_stage_malloc.sh default A=1; fi; done
#   bash results/probes/teacher_stage_malloc.sh mmaponly MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=1099511627776
label=$1; shift
wd=$(mktemp -d)
env "$@" python run.py --config=configs/teacher.py --workdir="$wd" \
  --config.data.cache_dir=/tmp/kd_cache_main --config.train.steps=12 --config.train.log_every=4 \
  --config.train.eval_every=100000 --config.train.eval_at_start=False --config.train.checkpoint_every=100000 \
  > "$wd.log" 2>&1 &
pid=$!
for _ in $(seq 600); do
  n=$(cat "$wd/teacher/metrics.jsonl" 2>/dev/null | grep -c '"train"')
  [ "$n" -ge 3 ] && break
  sleep 1
done
kill $pid; wait $pid 2>/dev/null
python3 -c "
import json, sys
for l in open(sys.argv[1]):
  r = json.loads(l)
  if r.get('split') == 'train': print(sys.argv[2], r['step'], round(r['steps_per_s'], 3))
" "$wd/teacher/metrics.jsonl" "$label"
rm -rf "$wd" "$wd.log"

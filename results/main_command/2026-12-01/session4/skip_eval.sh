#!/bin/bash
# Ends each training run.py once its stage is complete (complete.json): its home evaluation is left to
# evaluate_fever.sh, at today's config once it checks the hub ceiling on unlabelled claims too.
# Started again at 11:42 with the mode guard: before it, it also ended evaluate_fever.sh's first evaluations.
cd /work/main
while true; do
  for pid in $(pgrep -f "^.venv/bin/python run.py"); do
    cmd=$(tr '\0' ' ' < /proc/$pid/cmdline 2>/dev/null) || continue
    case "$cmd" in *--config.mode=*) continue;; esac  # a training run only, not evaluate_fever.sh's evaluations
    wd=$(echo "$cmd" | grep -o -- "--workdir=[^ ]*" | cut -d= -f2)
    name=$(echo "$cmd" | grep -o -- "--config.name=[^ ]*" | cut -d= -f2)
    if [ -n "$wd" ] && [ -n "$name" ] && [ -f "$wd/$name/complete.json" ]; then
      sleep 3; kill $pid && echo "$(date +%T) ended $wd/$name after training"
    fi
  done
  sleep 5
done

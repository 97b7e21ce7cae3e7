#!/bin/bash
# Issue 16, item 1: 1000 generated demos per task from the 10 scripted source demos (seed 0),
# one generation worker per call, scene seeds 100000 onwards, lean step path (config/simulation.yaml).
# Resumable: generation keeps its shards in data/T_gen1000.hdf5.parts/, so the same command continues.
# Wall and CPU time of each task go to logs/T_gen1000.time (GNU time).
# Usage: scripts/generate_1000.sh TASK [TASK ...]
set -u
cd "$(dirname "$0")/.."
RG=${RG:-.venv/bin/reinforcegen}
NUM=${NUM:-1000}
mkdir -p data logs
for t in "$@"; do
  src=data/${t}_source.hdf5
  out=data/${t}_gen${NUM}.hdf5
  [ -f "$src" ] || $RG demos collect --task "$t" --num 10 --seed 0 --out "$src" || exit 1
  [ -f "$out" ] && continue
  /usr/bin/time -v -o "logs/${t}_gen${NUM}.time" -a \
    $RG generate --task "$t" --source "$src" --num "$NUM" --max-attempts $((NUM * 3 / 2)) \
      --seed 100000 --workers 1 --out "$out" || exit 1
  $RG demos stats "$out" > "logs/${t}_gen${NUM}.stats" 2>&1
done

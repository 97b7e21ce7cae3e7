#!/bin/bash
# The replay upper bound through the hybrid executor (issue 16, item 0): the source-replay agent
# (generation's source choice and skill adaptation, ground-truth termination) on seeded scenes
# 700000 onwards, one evaluation worker, resumable (run again to continue).
# Usage: scripts/replay_bound.sh [EPISODES] [TASK ...]   (default 100 episodes, every task)
set -u
cd "$(dirname "$0")/.."
RG=${RG:-.venv/bin/reinforcegen}
EPISODES=${1:-100}
shift || true
TASKS=${*:-coffee three_piece_assembly nut_assembly threading coffee_preparation}
mkdir -p data logs
for t in $TASKS; do
  src=data/${t}_source.hdf5
  [ -f "$src" ] || $RG demos collect --task "$t" --num 10 --seed 0 --out "$src" || exit 1
  $RG eval --task "$t" --agent "replay:$src" --episodes "$EPISODES" --workers 1 --seed 700000 \
    --termination oracle --resume --out "runs/$t/replay_bound" || exit 1
done
$RG eval-table $(for t in $TASKS; do echo runs/$t/replay_bound; done)

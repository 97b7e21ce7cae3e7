#!/bin/bash
# Issue 16, item 3: the rows of Table I beside HSP-Priv (scripts/hsp_budget.sh) for one trained privileged agent,
# the paper's protocol (ground-truth stage termination), and the learned-termination rows of Table III, on the
# scenes of the HSP-Priv row (seeds 200000 onwards). Resumable.
#   runs/T/table1_hsp_<tag>          HSP: learned initiation poses, no re-planning, ground-truth termination
#   runs/T/table1_replan_<tag>       HSP + Replan, ground-truth termination
#   runs/T/table3_replan_<tag>       HSP + Replan, learned termination
#   runs/T/table3_priv_<tag>         HSP-Priv, learned termination
# Usage: scripts/table1_rows.sh TASK AGENT TAG [EPISODES] [LEARNED_EPISODES]
set -u
cd "$(dirname "$0")/.."
RG=${RG:-.venv/bin/reinforcegen}
TASK=$1; AGENT=$2; TAG=$3; N=${4:-200}; NL=${5:-100}
row() {  # out episodes args...
  local out=$1 n=$2; shift 2
  $RG eval --task "$TASK" --agent "$AGENT" --episodes "$n" --workers 1 --seed 200000 --resume --out "runs/$TASK/$out" "$@" \
    > "logs/${TASK}_$out.log" 2>&1 || exit 1
}
row "table1_hsp_$TAG" "$N" --termination oracle --no-replan
row "table1_replan_$TAG" "$N" --termination oracle
row "table3_replan_$TAG" "$NL" --termination learned
row "table3_priv_$TAG" "$NL" --termination learned --teacher-pose --teacher-source "data/${TASK}_source.hdf5"
$RG eval-table --paper runs/$TASK/table1_priv_$TAG runs/$TASK/table1_hsp_$TAG runs/$TASK/table1_replan_$TAG \
  runs/$TASK/table3_priv_$TAG runs/$TASK/table3_replan_$TAG

#!/bin/bash
# Issue 16, items 2 and 3: the privileged hybrid skill policy of one task trained at growing skill-policy
# budgets, each budget's agent evaluated as HSP-Priv (teacher initiation poses) with ground-truth stage
# termination, the paper's Table I protocol, on the same scenes (seeds 200000 onwards).
#   runs/T/hsp_priv          the training run (resumes; a larger budget continues the same run)
#   runs/T/hsp_priv_p<B>     the agent after B skill-policy steps per stage
#   runs/T/table1_priv_p<B>  its evaluation (CURVE episodes; the last budget FINAL episodes)
# Pose predictors and termination classifiers get POSE_STEPS / TERM_STEPS steps per stage.
# Usage: scripts/hsp_budget.sh TASK "B1 B2 ..." [CURVE_EPISODES] [FINAL_EPISODES]
set -u
cd "$(dirname "$0")/.."
RG=${RG:-.venv/bin/reinforcegen}
TASK=$1
BUDGETS=$2
CURVE=${3:-50}
FINAL=${4:-200}
POSE_STEPS=${POSE_STEPS:-10000}
TERM_STEPS=${TERM_STEPS:-10000}
DATA=${DATA:-data/${TASK}_gen1000.hdf5}
mkdir -p logs "runs/$TASK"
last=${BUDGETS##* }
for b in $BUDGETS; do
  agent=runs/$TASK/hsp_priv_p$b
  if [ ! -f "$agent/config.json" ]; then
    /usr/bin/time -a -o "logs/${TASK}_hsp_priv.time" \
      $RG train --task "$TASK" --dataset "$DATA" --obs privileged --out "runs/$TASK/hsp_priv" \
        --policy-steps "$b" --pose-steps "$POSE_STEPS" --term-steps "$TERM_STEPS" >> "logs/${TASK}_hsp_priv.log" 2>&1 || exit 1
    rm -rf "$agent.tmp" && mkdir -p "$agent.tmp" && cp runs/$TASK/hsp_priv/config.json runs/$TASK/hsp_priv/model.safetensors "$agent.tmp/" \
      && mv "$agent.tmp" "$agent" || exit 1
  fi
  n=$CURVE; [ "$b" = "$last" ] && n=$FINAL
  $RG eval --task "$TASK" --agent "$agent" --episodes "$n" --workers 1 --seed 200000 --termination oracle \
    --teacher-pose --teacher-source "data/${TASK}_source.hdf5" --resume --out "runs/$TASK/table1_priv_p$b" \
    > "logs/${TASK}_table1_priv_p$b.log" 2>&1 || exit 1
done
$RG eval-table $(for b in $BUDGETS; do echo runs/$TASK/table1_priv_p$b; done)

#!/bin/bash
# Coffee's HSP-Priv + Skill-FT cell (issue 18): the grasp (stage 0) fine-tuned by residual RL against a fine-tuned
# termination that rejects grasps holding the pod off-centre along the finger pads (paper Sec. IV-C, then IV-B),
# then Table I with the ground-truth termination (the predictors removed) on seeds 200000..200199.
#   1. termination fine-tuning of the base's grasp (grip-frame predictor), 400 rollouts     -> $RUNS/coffee/tft0
#   2. again from that agent's rollouts, on every tick the ground truth held (no leak)      -> $RUNS/coffee/tft0_ticks
#   3. the grasp's reset bank (300 states, seeds 300000..) of that agent                    -> $RUNS/coffee/rl/bank_stage0_ticks.hdf5
#   4. residual RL of the grasp, position-only residual bounded at 0.4, STEPS env steps     -> $RUNS/coffee/rl/s0_pos_s04
#   5. Table I: the agent without its predictors                                             -> $RUNS/coffee/table1_privft_s0_s04
# Each step is skipped when its output exists, and steps 1, 2, 4 and 5 resume when killed: run it again to continue.
# Needs data/coffee_source.hdf5 (reinforcegen demos collect --task coffee --num 10 --seed 0 --out data/coffee_source.hdf5).
# Usage: scripts/coffee_grasp_ft.sh [STEPS]      (AGENT=models/coffee, RUNS=runs, WORKERS=2, RG=.venv/bin/reinforcegen)
set -eu
cd "$(dirname "$0")/.."
RG=${RG:-.venv/bin/reinforcegen}
STEPS=${1:-40000}; AGENT=${AGENT:-models/coffee}; RUNS=${RUNS:-runs}; WORKERS=${WORKERS:-2}
SRC=data/coffee_source.hdf5; OUT=$RUNS/coffee; RL=$OUT/rl
TEACHER="--pose teacher --teacher-source $SRC"
mkdir -p "$RL"
[ -f "$OUT/tft0/agent/termination_ft.json" ] || $RG finetune term --task coffee --agent "$AGENT" --episodes 400 --stages 0 $TEACHER \
  --workers "$WORKERS" --config config/finetune_runs/coffee_term0_grip.yaml --out "$OUT/tft0"
[ -f "$OUT/tft0_ticks/agent/termination_ft.json" ] || $RG finetune term --task coffee --agent "$OUT/tft0/agent" --episodes 400 --stages 0 \
  $TEACHER --workers "$WORKERS" --config config/finetune_runs/coffee_term0_ticks.yaml --out "$OUT/tft0_ticks"
[ -f "$RL/bank_stage0_ticks.hdf5" ] || $RG finetune bank --task coffee --stage 0 --agent "$OUT/tft0_ticks/agent" $TEACHER \
  --bank "$RL/bank_stage0_ticks.hdf5" --states 300 --seed 300000
$RG finetune skill --task coffee --stage 0 --agent "$OUT/tft0_ticks/agent" --bank "$RL/bank_stage0_ticks.hdf5" \
  --config config/finetune_runs/coffee_stage0_tft_position_scale04.yaml --steps "$STEPS" --out "$RL/s0_pos_s04"
# Table I's protocol terminates every stage by the ground truth: the agent without the predictors it was fine-tuned against
rm -rf "$RL/s0_pos_s04/agent_gt.tmp" && cp -r "$RL/s0_pos_s04/agent" "$RL/s0_pos_s04/agent_gt.tmp"
rm -f "$RL/s0_pos_s04/agent_gt.tmp"/termination_ft.* && rm -rf "$RL/s0_pos_s04/agent_gt" && mv "$RL/s0_pos_s04/agent_gt.tmp" "$RL/s0_pos_s04/agent_gt"
$RG eval --task coffee --agent "$RL/s0_pos_s04/agent_gt" --episodes 200 --workers "$WORKERS" --seed 200000 --resume \
  --termination oracle --teacher-pose --teacher-source "$SRC" --out "$OUT/table1_privft_s0_s04"

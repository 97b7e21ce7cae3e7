#!/bin/bash
# The rgb rows of Table I (HSP and HSP + Replan without privileged information) and of Table III
# (oracle termination), in two lanes.
# Per task: render 84x84 images of the generated demos from their saved states, make termination
# negatives from them, train the rgb agent with those (the last epoch's weights), then evaluate both
# rows on seeds 200000 onwards. (The agents without negatives, runs/T/hsp_rgb, and their rows
# runs/T/table1_rgb_hsp_* came from the previous version of this script.)
# Every step resumes (images are skipped when the file exists, training and evaluation continue from
# their checkpoints), so running this script again continues where a session stopped.
# Usage: scripts/rgb_tables.sh [EPISODES]   (default 200; rows are first brought to 100 episodes each)
set -u
cd "$(dirname "$0")/.."
RG=${RG:-.venv/bin/reinforcegen}
FINAL=${1:-200}
# Epochs per task: about the optimizer steps of Coffee's 20 epochs over 45,490 steps (batch 256).
epochs() { case $1 in nut_assembly) echo 12;; three_piece_assembly) echo 16;; *) echo 20;; esac; }
images() {  # task: the first 200 generated demos with the task YAML's cameras
  local src=data/${1}_gen200.hdf5
  [ "$1" = coffee ] && src=data/coffee_gen.hdf5
  [ -f "data/${1}_gen200_rgb.hdf5" ] || $RG demos add-images "$src" --max-demos 200 --out "data/${1}_gen200_rgb.hdf5" || return 1
}
negatives() {  # task: termination negatives (fingers closed on nothing, object left behind) from the rendered demos
  images "$1" || return 1
  [ -f "data/${1}_gen200_rgb_neg.hdf5" ] || $RG demos term-negatives "data/${1}_gen200_rgb.hdf5" --out "data/${1}_gen200_rgb_neg.hdf5"
}
agent() { echo "runs/$1/hsp_rgb_neg"; }
train() {  # task
  negatives "$1" && $RG train --task "$1" --dataset "data/${1}_gen200_rgb.hdf5" --obs rgb --out "$(agent "$1")" \
    --epochs "$(epochs "$1")" --term-negatives "data/${1}_gen200_rgb_neg.hdf5"
}
rows() {  # task episodes
  local t=$1 n=$2 a; a=$(agent "$t")
  $RG eval --task "$t" --agent "$a" --episodes "$n" --workers 1 --resume --out "runs/$t/table1_rgb_neg_hsp_replan"
  $RG eval --task "$t" --agent "$a" --episodes "$n" --workers 1 --resume --no-replan --out "runs/$t/table1_rgb_neg_hsp_noreplan"
}
oracle() {  # task episodes: Table III, HSP + Replan with oracle termination
  $RG eval --task "$1" --agent "$(agent "$1")" --episodes "$2" --workers 1 --resume --termination oracle \
    --out "runs/$1/table3_rgb_neg_oracle"
}
lane_a() {  # every row to 100 episodes first, then the Table I rows to the final count
  train coffee && rows coffee 100; train threading && rows threading 100
  train coffee_preparation && rows coffee_preparation 100
  rows coffee "$FINAL"; rows threading "$FINAL"
}
lane_b() {
  train nut_assembly && rows nut_assembly 100; train three_piece_assembly && rows three_piece_assembly 100
  rows nut_assembly "$FINAL"; rows three_piece_assembly "$FINAL"; rows coffee_preparation "$FINAL"
}
# Table III jobs, 50 episodes per row first, then 100; two lanes take the next unclaimed job so that
# both cores stay busy whatever each task's episodes cost.
ORACLE_JOBS=()
for n in 50 100; do
  for t in coffee three_piece_assembly coffee_preparation threading nut_assembly; do ORACLE_JOBS+=("$t:$n"); done
done
CLAIMS=$(mktemp -d)
oracle_lane() {
  local job
  for job in "${ORACLE_JOBS[@]}"; do
    mkdir "$CLAIMS/$job" 2>/dev/null || continue
    # one evaluation per run directory: a task's 100-episode job waits for its 50-episode job
    ( flock 9 && oracle "${job%%:*}" "${job##*:}" ) 9>"$CLAIMS/${job%%:*}.lock"
  done
}
mkdir -p logs
lane_a > logs/rgb_tables_lane_a.log 2>&1 &
lane_b > logs/rgb_tables_lane_b.log 2>&1 &
wait
oracle_lane > logs/rgb_tables_lane_c.log 2>&1 &
oracle_lane > logs/rgb_tables_lane_d.log 2>&1 &
wait
rm -r "$CLAIMS"
$RG eval-table runs/*/table1_rgb_neg_hsp_* runs/*/table3_rgb_neg_oracle

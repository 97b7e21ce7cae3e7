#!/bin/bash
# Table I and Table III rows of docs/RESULTS.md (issue 4) with privileged observations, in two lanes of
# one evaluation worker each (scripts/rgb_tables.sh makes the rgb rows).
# Every evaluation resumes from its runs/<task>/<row>/episodes.jsonl: run this script again to continue.
# Usage: scripts/eval_tables.sh [EPISODES]   (default 200; rows are first brought to 100 episodes each)
set -u
cd "$(dirname "$0")/.."
RG=${RG:-.venv/bin/reinforcegen}
FINAL=${1:-200}
agent() { if [ "$1" = coffee ]; then echo runs/coffee/hsp_gmm_pw1; else echo runs/$1/hsp_gmm; fi; }
priv_rows() {  # task episodes: HSP + Replan, HSP, HSP-Priv with privileged observations
  local t=$1 n=$2 a; a=$(agent "$t")
  $RG eval --task "$t" --agent "$a" --episodes "$n" --workers 1 --resume --out "runs/$t/table1_sampled_hsp_replan"
  $RG eval --task "$t" --agent "$a" --episodes "$n" --workers 1 --resume --no-replan --out "runs/$t/table1_sampled_hsp_noreplan"
  $RG eval --task "$t" --agent "$a" --episodes "$n" --workers 1 --resume --teacher-pose --teacher-source "data/${t}_source.hdf5" \
    --out "runs/$t/table1_sampled_hsp_priv"
}
oracle_row() {  # task episodes: Table III, HSP + Replan with oracle termination
  $RG eval --task "$1" --agent "$(agent "$1")" --episodes "$2" --workers 1 --resume --termination oracle --out "runs/$1/table3_sampled_oracle"
}
lane_a() {
  for t in coffee threading nut_assembly; do priv_rows $t 100; done
  for t in coffee threading nut_assembly; do oracle_row $t 100; done
  for t in coffee threading nut_assembly; do priv_rows $t "$FINAL"; done
}
lane_b() {
  for t in three_piece_assembly coffee_preparation; do priv_rows $t 100; done
  for t in three_piece_assembly coffee_preparation; do oracle_row $t 100; done
  for t in three_piece_assembly coffee_preparation; do priv_rows $t "$FINAL"; done
}
mkdir -p logs
lane_a > logs/eval_tables_lane_a.log 2>&1 &
lane_b > logs/eval_tables_lane_b.log 2>&1 &
wait
$RG eval-table runs/*/table1_sampled_* runs/*/table3_sampled_oracle
$RG eval-table --pivot $(for t in coffee threading nut_assembly three_piece_assembly coffee_preparation; do echo runs/$t/table1_sampled_hsp_priv runs/$t/table1_sampled_hsp_noreplan runs/$t/table1_sampled_hsp_replan; done)

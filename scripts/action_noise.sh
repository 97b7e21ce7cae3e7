#!/bin/bash
# Robustness to action noise (paper Fig. 8, issue 18): evaluate one agent as HSP-Priv (teacher initiation poses,
# ground-truth stage termination) at several levels of zero-mean Gaussian noise on its skill actions' 6 arm dims
# (normalised action units; gripper and connect segment untouched), on the same scenes (seeds 200000 onwards),
# then print the runs side by side. Resumable: run it again to continue.
#   $RUNS/TASK/noise_<tag>_<sigma>    tag: the agent directory's name (TAG=... overrides)
# Usage: scripts/action_noise.sh TASK AGENT "0 0.05 0.1 0.2" N      (RUNS=runs, WORKERS=1, RG=.venv/bin/reinforcegen)
set -eu
cd "$(dirname "$0")/.."
RG=${RG:-.venv/bin/reinforcegen}
TASK=$1; AGENT=$2; LEVELS=$3; N=$4
TAG=${TAG:-$(basename "$AGENT")}; RUNS=${RUNS:-runs}; WORKERS=${WORKERS:-1}
dirs=()
for sigma in $LEVELS; do
  out="$RUNS/$TASK/noise_${TAG}_${sigma}"
  $RG eval --task "$TASK" --agent "$AGENT" --episodes "$N" --workers "$WORKERS" --seed 200000 --resume \
    --termination oracle --teacher-pose --teacher-source "data/${TASK}_source.hdf5" --action-noise "$sigma" --out "$out"
  dirs+=("$out")
done
$RG eval-table --noise "${dirs[@]}"

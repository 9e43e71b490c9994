#!/usr/bin/env bash
# Issue 26 stage 2: score lara_strength's finished trainings under --distractors high (no retraining).
# The shared LAM and each run's train/ are linked to results/lara_strength/runs/<run>/train (the runner then skips training
# because final/config.json is there). Arguments go to `lara experiment run` (e.g. --only REGEX).
#   experiments/lara_strength_high.sh [--only 'seed-[01]__name-(dit_only|lara_w3)$']
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
src=results/lara_strength/runs
dst=results/lara_strength_high/runs
for train in "$src"/*/train; do
  run=$(basename "$(dirname "$train")")
  [ -f "$train/final/config.json" ] || continue
  mkdir -p "$dst/$run"
  [ -e "$dst/$run/train" ] || ln -s "../../../lara_strength/runs/$run/train" "$dst/$run/train"
done
mkdir -p results/lara_strength_high/shared     # the shared LAM too (lara and frozen_lam runs name it)
[ -e results/lara_strength_high/shared/lam_video ] || ln -s ../../lara_strength/shared/lam_video \
  results/lara_strength_high/shared/lam_video
exec lara experiment run experiments/lara_strength_high.yaml "$@"

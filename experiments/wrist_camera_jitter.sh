#!/usr/bin/env bash
# Issue 28: does a camera mounted on the robot keep a policy working when the scene camera shakes?
# Scores the few-label MT10 arms of experiments/pretrained_fewshot.yaml (train them first with
# `lara experiment run experiments/pretrained_fewshot.yaml --only 'seed-S__name-...'`) on push-v3,
# the task that needs the image, on the grid's 50 held-out layouts: clean, --distractors high and
# high:jitter (the 3 cm scene-camera shake alone; gripperPOV stays on its mount since 2026-12-07) and
# high:objects (the moving visual-only objects alone).
# Resumable: a setting whose results.json exists is skipped.
#   experiments/wrist_camera_jitter.sh SEED [ARM ...]   (default arms: scratch scratch2cam frozen)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seed=${1:?usage: experiments/wrist_camera_jitter.sh SEED [ARM ...]}
shift
arms=("$@")
[ ${#arms[@]} -gt 0 ] || arms=(scratch scratch2cam frozen)
runs=results/pretrained_fewshot/runs
out=results/pretrained_fewshot/wrist_camera_jitter
for arm in "${arms[@]}"; do
  ckpt=$runs/seed-${seed}__name-$arm/train/final
  [ -f "$ckpt/config.json" ] || { echo "wrist_camera_jitter: $ckpt is not trained; run the grid first" >&2; exit 1; }
  for setting in none high high:jitter high:objects; do
    dir=$out/seed-${seed}__name-$arm/${setting/:/_}
    [ -f "$dir/results.json" ] && continue
    echo "wrist_camera_jitter: seed $seed $arm $setting"
    lara eval sim --policy "$ckpt" --tasks push-v3 --episodes 50 --seed-start 100000 --max-steps 300 \
      --execute-k 8 --distractors "$setting" --runtime onnxruntime --workers 1 --videos 1 --quiet --out "$dir"
  done
done
python - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
rows = ["| run | clean | high | high, jitter only | high, moving objects only |", "|---|---:|---:|---:|---:|"]
for run in sorted(p for p in out.iterdir() if p.is_dir()):
    cell = []
    for s in ("none", "high", "high_jitter", "high_objects"):
        f = run / s / "results.json"
        cell.append(f"{json.loads(f.read_text())['mean_success']:.2f}" if f.exists() else "")
    rows.append(f"| {run.name} | " + " | ".join(cell) + " |")
(out / "table.md").write_text("push-v3, 50 held-out layouts (seeds 100000+)\n\n" + "\n".join(rows) + "\n")
print("\n".join(rows))
PY

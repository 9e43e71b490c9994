#!/usr/bin/env bash
# Issue 28, "measure first": one checkpoint under every distractor level and each effect alone,
# the same held-out layouts (seeds 100000+) and distractor seeds for every setting. Resumable: a
# setting whose results.json exists is skipped. Pixels only: the physics is identical throughout.
#   experiments/robustness_sweep.sh [CKPT] [OUT] [EPISODES]
#   default: models/lara-metaworld-mt3 -> results/robustness/<checkpoint name>, 30 episodes per MT3 task
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ckpt=${1:-models/lara-metaworld-mt3}
out=${2:-results/robustness/$(basename "$ckpt")}
episodes=${3:-30}
for setting in none low medium high high:lighting high:colour high:jitter high:objects; do
  dir="$out/${setting/:/_}"
  [ -f "$dir/results.json" ] && { echo "robustness: $setting done"; continue; }
  echo "robustness: $setting"
  lara eval sim --policy "$ckpt" --tasks MT3 --episodes "$episodes" --seed-start 100000 --execute-k 8 \
    --distractors "$setting" --videos 1 --quiet --out "$dir"
done
python - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
rows = []
for d in sorted(out.iterdir()):
    r = json.loads((d / "results.json").read_text()) if (d / "results.json").exists() else None
    if r is None:
        continue
    per = {t: v["success_rate"] for t, v in r["per_task"].items()} if "per_task" in r else {}
    rows.append((d.name, r.get("mean_success", r.get("success_rate")), per))
order = ["none", "low", "medium", "high", "high_lighting", "high_colour", "high_jitter", "high_objects"]
rows.sort(key=lambda x: order.index(x[0]) if x[0] in order else 99)
tasks = sorted({t for _, _, p in rows for t in p})
lines = ["| distractors | mean | " + " | ".join(tasks) + " |", "|---|---|" + "---|" * len(tasks)]
for name, mean, per in rows:
    lines.append(f"| {name} | {mean:.3f} | " + " | ".join(f"{per.get(t, float('nan')):.2f}" for t in tasks) + " |")
(out / "table.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
PY

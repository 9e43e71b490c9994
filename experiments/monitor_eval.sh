#!/usr/bin/env bash
# Issue 25: the LAM fault monitor vs the hand-motion monitor on one checkpoint. Calibrate BOTH
# detectors' thresholds on fault-free layouts (seeds 400000+; the lowest threshold at which none of
# them raises a debounced alarm, x 1.05), then on other held-out layouts (100000+): normal episodes
# (false alarms; LARA_MONITOR_NONE_EPISODES per task, default 3x) and each fault. Episodes end on
# success (LARA_MONITOR_NORMAL_STEPS > 0 keeps them running after it: measured 2026-12-07, the
# policy's post-success motions push both calibrated thresholds past usefulness, LAM 1.16, hand
# 1.05). Resumable: finished steps are skipped.
#   experiments/monitor_eval.sh [CKPT] [OUT] [EPISODES_PER_TASK] [TASKS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ckpt=${1:-models/lara-metaworld-mt3}
out=${2:-results/monitor/$(basename "$ckpt")/calibrated}
n=${3:-30}
tasks=${4:-MT3}
normal_steps=${LARA_MONITOR_NORMAL_STEPS:-0}
n_none=${LARA_MONITOR_NONE_EPISODES:-$((3 * n))}
debounce=${LARA_MONITOR_DEBOUNCE:-3}   # chunks (8 steps each at --execute-k 8) over the threshold in a row
common=(--policy "$ckpt" --tasks "$tasks" --episodes "$n" --execute-k 8 --videos 0 --quiet --monitor
        --monitor-debounce "$debounce" --monitor-normal-steps "$normal_steps")
# calibration writes monitor.json into the checkpoint (both thresholds); a re-run after it is skipped
[ -f "$out/calibration/results.json" ] || lara eval sim "${common[@]}" --seed-start 400000 --calibrate-monitor --out "$out/calibration"
for fault in none frozen-arm frozen-camera object-teleport; do
  eps=$n; [ "$fault" = none ] && eps=$n_none
  [ -f "$out/$fault/results.json" ] || lara eval sim "${common[@]}" --episodes "$eps" --seed-start 100000 --fault "$fault" --out "$out/$fault"
done
python - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
lines = ["| fault | detector | detected | rate | p50 delay s | p90 delay s | false alarms | normal min | per 10 min |",
         "|---|---|---|---|---|---|---|---|---|"]
for fault in ("none", "frozen-arm", "frozen-camera", "object-teleport"):
    f = out / fault / "results.json"
    if not f.exists():
        continue
    for det, m in sorted(json.loads(f.read_text())["monitor"].items()):
        fmt = lambda v, p=2: "-" if v is None else f"{v:.{p}f}"   # noqa: E731
        fa10 = None if m["false_alarms_per_min"] is None else 10 * m["false_alarms_per_min"]
        lines.append(f"| {fault} | {det} | {m['detected']}/{m['fault_episodes']} | {fmt(m['detection_rate'])} | "
                     f"{fmt(m['detection_delay_s_p50'])} | {fmt(m['detection_delay_s_p90'])} | {m['false_alarms']} | "
                     f"{m['normal_minutes']:.1f} | {fmt(fa10)} |")
(out / "table.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
PY

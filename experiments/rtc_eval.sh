#!/usr/bin/env bash
# Issue 24 item 4: chunk hand-over with and without real-time chunking, at 0, 100 and 150 ms of
# injected inference delay (12.5 ms env steps: 0, 8, 12 steps; H = 16, so 150 ms cannot be covered
# by one chunk and the arm holds part of each cycle either way). Same held-out layouts. Resumable.
#   experiments/rtc_eval.sh [CKPT] [OUT] [EPISODES_PER_TASK]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ckpt=${1:-models/lara-metaworld-mt3}
out=${2:-results/rtc/$(basename "$ckpt")}
n=${3:-30}
for delay in 0 100 150; do
  for mode in off on; do
    dir="$out/delay${delay}_rtc-$mode"
    [ -f "$dir/results.json" ] && continue
    lara eval sim --policy "$ckpt" --tasks MT3 --episodes "$n" --seed-start 100000 --execute-k 8 --delay-ms "$delay" \
      $([ "$mode" = on ] && echo --rtc) --videos 0 --quiet --out "$dir"
  done
done
python - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
lines = ["| delay ms | RTC | success | push | boundary jump mean | max | p95 | inside chunks | starved steps |",
         "|---|---|---|---|---|---|---|---|---|"]
for d in sorted(out.iterdir()):
    f = d / "results.json"
    if not f.exists():
        continue
    r = json.loads(f.read_text()); c = r["chunking"]
    lines.append(f"| {c['delay_steps'] * 12.5:.0f} | {'on' if c['rtc'] else 'off'} | {r['mean_success']:.3f} | "
                 f"{r['per_task']['push-v3']['success_rate']:.2f} | {c['boundary_jump_mean']:.4f} | {c['boundary_jump_max']:.4f} | "
                 f"{c['boundary_jump_p95']:.4f} | {c['inner_jump_mean']:.4f} | {c['starved_steps']} |")
(out / "table.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
PY

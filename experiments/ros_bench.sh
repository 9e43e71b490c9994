#!/usr/bin/env bash
# Issue 24.3: camera -> command through ROS, before and after, torch and onnxruntime, N=1 and N=8,
# on the shipped checkpoint, one after the other in one sitting (run it on a quiet machine: pause
# every training/evaluation job first). BEFORE_TREE: a checkout of an earlier commit to compare
# with (optional; its lara_policy goes first on PYTHONPATH).
#   experiments/ros_bench.sh [OUT] [DURATION_S]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${1:-results/bench/ros}
dur=${2:-15}
mkdir -p "$out"
ckpt=models/lara-metaworld-mt3
[ -d "$ckpt/onnx" ] || lara export "$ckpt" --to onnx --out "$ckpt/onnx"
export OMP_NUM_THREADS=1
if [ -n "${BEFORE_TREE:-}" ]; then
  for n in 1 8; do
    PYTHONPATH="$BEFORE_TREE/ros2_ws/src/lara_policy:${PYTHONPATH:-}" lara bench ros --checkpoint "$ckpt" \
      --duration "$dur" --num-candidates $n --json "$out/before_torch_n$n.json" | tail -3
  done
fi
for rt in torch onnxruntime; do
  for n in 1 8; do
    lara bench ros --checkpoint "$ckpt" --duration "$dur" --num-candidates $n --runtime $rt \
      --json "$out/${rt}_n$n.json" | tail -4
  done
done
python - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
parts = ["transport", "decode", "queue", "model", "publish", "delivery", "tick_wait"]
lines = ["| run | N | cam->cmd p50 / p95 ms | " + " | ".join(parts) + " | missed ticks | load 1 min |",
         "|---|---|---|" + "---|" * len(parts) + "---|---|"]
for f in sorted(out.glob("*_n*.json")):
    r = json.loads(f.read_text())
    b = r.get("breakdown", {})
    cells = " | ".join(f"{b[p + '_p50_ms']:.1f}" if p + "_p50_ms" in b else "-" for p in parts)
    lines.append(f"| {f.stem.rsplit('_n', 1)[0]} | {r['num_candidates']} | {r['cam_to_cmd_p50_ms']:.1f} / "
                 f"{r['cam_to_cmd_p95_ms']:.1f} | {cells} | {r['missed_ticks']} | {r['host']['loadavg_1min_at_start']:.2f} |")
(out / "table.md").write_text("`experiments/ros_bench.sh` (p50 per part, ms)\n\n" + "\n".join(lines) + "\n")
print("\n".join(lines))
PY

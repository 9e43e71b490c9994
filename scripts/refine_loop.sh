#!/usr/bin/env bash
# The LAM refinement loop, end to end (issue 11):
#   1. K episodes of a Meta-World task through the ROS graph (sim_node, policy_node, command_node,
#      recorder_node over DDS; `lara bringup`'s graph), every one recorded as a bag; in F of them
#      the simulated arm is jammed for a few seconds mid-episode (the injected fault);
#   2. `lara convert` the normal training episodes and the normal held-out ones;
#   3. `lara train --paradigm lam-refine --init CKPT --data <converted train>`;
#   4. before/after on HELD-OUT recorded episodes: the LAM's action-probe R^2 (`lara probe`) and
#      how well surprise separates jammed transitions from normal ones (AUC).
#
#   scripts/refine_loop.sh [K] [F]            e.g. scripts/refine_loop.sh 20 4
#   env: LARA_LOOP_OUT (runs/refine_loop), LARA_LOOP_STEPS (300 refine steps), LARA_LOOP_TASK (reach-v3),
#        LARA_CHECKPOINT (models/lara-metaworld-mt3), LARA_LOOP_SEED (3000: first layout seed),
#        LARA_LOOP_RATE (control rate in Hz, default the config's 30; lower it on a slow/loaded CPU),
#        LARA_LOOP_FAULT_S (2.5: seconds the arm stays jammed)
# Writes $LARA_LOOP_OUT/summary.md (+ json) with every figure and the commands that made it.
# A step whose output exists is skipped (delete it to redo that step).
set -eo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck disable=SC1091
source env.sh
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-43}
K=${1:-20}
F=${2:-4}
out=${LARA_LOOP_OUT:-runs/refine_loop}
steps=${LARA_LOOP_STEPS:-300}
task=${LARA_LOOP_TASK:-reach-v3}
init=${LARA_CHECKPOINT:-models/lara-metaworld-mt3}
seed=${LARA_LOOP_SEED:-3000}
mkdir -p "$out"
log() { echo "refine_loop: $*" | tee -a "$out/commands.txt"; }
run() { log "\$ $*"; "$@"; }

if [ ! -f "$out/bags/episodes.json" ]; then
  run python -m lara_policy.ros.refine_loop record --task "$task" --episodes "$K" --faults "$F" \
      --seed "$seed" --checkpoint "$init" --control-rate "${LARA_LOOP_RATE:-0}" \
      --fault-s "${LARA_LOOP_FAULT_S:-2.5}" --out "$out/bags"
fi
mapfile -t train_bags < <(grep . "$out/bags/train_normal.txt")
mapfile -t held_bags < <(grep . "$out/bags/heldout_normal.txt")
rate_args=()
if [ "${LARA_LOOP_RATE:-0}" != "0" ]; then rate_args=(--rate "$LARA_LOOP_RATE"); fi
[ -f "$out/train.hdf5" ] || run lara convert "${train_bags[@]}" --out "$out/train.hdf5" --trim-idle "${rate_args[@]}"
[ -f "$out/heldout.hdf5" ] || run lara convert "${held_bags[@]}" --out "$out/heldout.hdf5" --trim-idle "${rate_args[@]}"
if [ ! -f "$out/refine/final/config.json" ]; then
  run lara train --paradigm lam-refine --init "$init" --data "$out/train.hdf5" --steps "$steps" \
      --save-every "$steps" --out "$out/refine" --quiet
fi
# the refined LAM alone is refine/final; surprise needs the policy's f_psi too: the joint
# checkpoint of the last step (its VLA + f_psi trained with the refined LAM)
after_joint=$(ls -d "$out"/refine/checkpoints/step_* | tail -1)
[ -f "$out/probe_before.json" ] || run lara probe --lam "$init" --data "$out/heldout.hdf5" --json "$out/probe_before.json"
[ -f "$out/probe_after.json" ] || \
  run lara probe --lam "$out/refine/final" --data "$out/heldout.hdf5" --json "$out/probe_after.json"
[ -f "$out/surprise_before.json" ] || run python -m lara_policy.ros.refine_loop surprise --policy "$init" \
    --episodes-json "$out/bags/episodes.json" --out "$out/surprise_before.json"
[ -f "$out/surprise_after.json" ] || run python -m lara_policy.ros.refine_loop surprise \
    --policy "$after_joint" --episodes-json "$out/bags/episodes.json" --out "$out/surprise_after.json"
python - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
j = lambda n: json.loads((out / n).read_text())
eps = j("bags/episodes.json")["episodes"]
pb, pa, sb, sa = j("probe_before.json"), j("probe_after.json"), j("surprise_before.json"), j("surprise_after.json")
f = lambda v: "n/a" if v is None else f"{v:.3f}"
held = [e for e in eps if e["split"] == "heldout"]
rows = [
    ("action-probe R^2 (linear, held-out recorded episodes)", pb["r2"], pa["r2"]),
    ("  shuffled-target control", pb["r2_shuffled_control"], pa["r2_shuffled_control"]),
    ("surprise AUC, jammed vs normal transitions", sb["chunk_auc"], sa["chunk_auc"]),
    ("surprise AUC, jammed + command_node-halted vs normal transitions", sb.get("halt_auc"), sa.get("halt_auc")),
    ("surprise AUC, jammed vs normal episodes (mean surprise)", sb["episode_auc"], sa["episode_auc"]),
    ("mean surprise, jammed transitions", sb["mean_surprise_jammed"], sa["mean_surprise_jammed"]),
    ("mean surprise, normal transitions (armed throughout)", sb["mean_surprise_normal"], sa["mean_surprise_normal"]),
    ("mean surprise, transitions with a command_node halt", sb.get("mean_surprise_safety_halted"),
     sa.get("mean_surprise_safety_halted")),
]
md = [f"# LAM refinement loop ({out})", "",
      f"{len(eps)} episodes recorded through the ROS graph ({sum(e['fault'] for e in eps)} with the arm jammed), "
      f"{sum(e['success'] for e in eps)} successes; trained on {sum(e['split'] == 'train' for e in eps)} normal "
      f"episodes, measured on {len(held)} held-out ones ({sum(e['fault'] for e in held)} jammed). "
      f"Surprise: {sb['chunks_jammed']} jammed vs {sb['chunks_normal']} normal transitions "
      f"({sb.get('chunks_safety_halted')} more overlapped a command_node halt).", "",
      "| measure | before | after |", "|---|---|---|"]
md += [f"| {n} | {f(b)} | {f(a)} |" for n, b, a in rows]
md += ["", "Commands: see commands.txt."]
(out / "summary.md").write_text("\n".join(md) + "\n")
(out / "summary.json").write_text(json.dumps({n: {"before": b, "after": a} for n, b, a in rows}, indent=1))
print("\n".join(md))
PY

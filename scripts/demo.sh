#!/usr/bin/env bash
# LARA-ROS main job in one command: Meta-World as a ROS robot (sim_node) driven by the LARA
# policy (policy_node) through the safety/command layer (command_node, MoveIt-Servo twists)
# while every episode is recorded as a rosbag2 MCAP bag (recorder_node), all over real DDS
# in one process (`lara bringup`, the same graph sim.launch.py starts on a ROS install).
#
#   scripts/demo.sh [TASK] [EPISODES] [more `lara bringup` options]
#   scripts/demo.sh reach-v3 3
#   LARA_CHECKPOINT=runs/mine/final scripts/demo.sh push-v3 5 --num-candidates 8
#   scripts/demo.sh --two-cameras [TASK] [EPISODES]   # corner4 + gripperPOV through ROS (below)
#
# Prints success per episode and the bag paths. Sets the machine up first if needed.
# --two-cameras: trains a tiny two-camera checkpoint first (4 reach-v3 expert demos rendered by
# corner4 and gripperPOV at 64 px, 150 steps: ~1-2 min on 2 cores; kept in runs/demo_two_cameras,
# reused next time; it shows the plumbing, it is not trained enough to succeed), then runs it:
# sim_node renders both cameras, policy_node pairs them by stamp, the recorder records both,
# and the bags are converted to a store with both cameras.
set -eo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
if [ ! -f install/local_setup.sh ] || [ ! -x .venv/bin/python ]; then
  echo "demo: LARA-ROS is not set up here yet: running scripts/setup.sh (one time)"
  bash scripts/setup.sh
fi
# shellcheck disable=SC1091
source env.sh

two_cameras=0
if [ "${1:-}" = "--two-cameras" ]; then two_cameras=1; shift; fi
task=${1:-reach-v3}
episodes=${2:-3}
if [ $# -ge 2 ]; then shift 2; else shift $#; fi
ckpt=${LARA_CHECKPOINT:-models/lara-metaworld-mt3}
record_dir=${LARA_RECORD_DIR:-episodes/demo}
if [ "$two_cameras" = 1 ]; then
  run=runs/demo_two_cameras
  record_dir=${LARA_RECORD_DIR:-episodes/demo_two_cameras}
  ckpt=${LARA_CHECKPOINT:-$run/final}
  if [ ! -f "$ckpt/config.json" ]; then
    echo "demo: training a tiny two-camera checkpoint (corner4 + gripperPOV, 64 px) -> $ckpt"
    lara demos --tasks reach-v3 --cameras corner4,gripperPOV --image-size 64 --episodes 4 \
      --out "$run/demos.hdf5" --overwrite --quiet
    lara train --paradigm pretrain --variant lara --data "$run/demos.hdf5" --cameras corner4 gripperPOV \
      --image-size 64 --steps 150 --batch-size 32 --threads 2 --out "$run" --quiet
  fi
  rm -rf "$record_dir"
fi
if [ ! -f "$ckpt/config.json" ]; then
  echo "demo: no LARA checkpoint at '$ckpt' (config.json missing)." >&2
  echo "      Train one (see README: lara demos + lara train), then LARA_CHECKPOINT=DIR scripts/demo.sh" >&2
  exit 2
fi
# DDS stays on this machine (env.sh); a fixed domain unless the caller chose one
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-42}
echo "demo: $episodes episode(s) of $task with $ckpt; bags -> $record_dir"
if [ "$two_cameras" = 0 ]; then
  exec lara bringup sim --task "$task" --episodes "$episodes" --checkpoint "$ckpt" \
    --record-dir "$record_dir" "$@"
fi
lara bringup sim --task "$task" --episodes "$episodes" --checkpoint "$ckpt" --record-dir "$record_dir" "$@"
lara convert "$record_dir" --out "$record_dir.hdf5" --overwrite
python - "$record_dir.hdf5" <<'PY'
import sys

from lara_policy.formats.store import EpisodeStore
with EpisodeStore(sys.argv[1]) as s:
    steps = sum(s.episode(i).num_steps for i in range(len(s)))
    print(f"demo: recorded bags -> {sys.argv[1]}: cameras {s.meta.cameras} {list(s.meta.image_size)} px, "
          f"{len(s)} episode(s), {steps} steps")
PY

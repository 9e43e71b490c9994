#!/usr/bin/env bash
# LARA-ROS main job in one command: Meta-World as a ROS robot (sim_node) driven by the LARA
# policy (policy_node) through the safety/command layer (command_node, MoveIt-Servo twists)
# while every episode is recorded as a rosbag2 MCAP bag (recorder_node), all over real DDS
# in one process (`lara bringup`, the same graph sim.launch.py starts on a ROS install).
#
#   scripts/demo.sh [TASK] [EPISODES] [more `lara bringup` options]
#   scripts/demo.sh reach-v3 3
#   LARA_CHECKPOINT=runs/mine/final scripts/demo.sh push-v3 5 --num-candidates 8
#
# Prints success per episode and the bag paths. Sets the machine up first if needed.
set -eo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
if [ ! -f install/local_setup.sh ] || [ ! -x .venv/bin/python ]; then
  echo "demo: LARA-ROS is not set up here yet: running scripts/setup.sh (one time)"
  bash scripts/setup.sh
fi
# shellcheck disable=SC1091
source env.sh

task=${1:-reach-v3}
episodes=${2:-3}
if [ $# -ge 2 ]; then shift 2; else shift $#; fi
ckpt=${LARA_CHECKPOINT:-models/lara-metaworld-mt3}
record_dir=${LARA_RECORD_DIR:-episodes/demo}
if [ ! -f "$ckpt/config.json" ]; then
  echo "demo: no LARA checkpoint at '$ckpt' (config.json missing)." >&2
  echo "      Train one (see README: lara demos + lara train), then LARA_CHECKPOINT=DIR scripts/demo.sh" >&2
  exit 2
fi
# DDS stays on this machine (env.sh); a fixed domain unless the caller chose one
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-42}
echo "demo: $episodes episode(s) of $task with $ckpt; bags -> $record_dir"
exec lara bringup sim --task "$task" --episodes "$episodes" --checkpoint "$ckpt" \
  --record-dir "$record_dir" "$@"

# Source this file (bash/zsh) to use LARA-ROS: `source env.sh`. Created by the repo, not by setup.
_lara_root=$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")" && pwd)
if [ ! -f "$_lara_root/install/local_setup.sh" ]; then
  echo "LARA-ROS is not set up yet: run scripts/setup.sh first" >&2
  return 1 2>/dev/null || exit 1
fi
# colcon's and venv's scripts read unset variables: relax `set -u` while sourcing them
case $- in *u*) _lara_nounset=1; set +u ;; *) _lara_nounset= ;; esac
. "$_lara_root/.venv/bin/activate"
export AMENT_PREFIX_PATH="$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export CMAKE_PREFIX_PATH="$VIRTUAL_ENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
# colcon's generated prefix script adds lara_msgs / lara_policy / lara_bringup
COLCON_CURRENT_PREFIX="$_lara_root/install" . "$_lara_root/install/local_setup.sh"
# DDS discovery stays on this machine unless the deployment says otherwise.
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
# Offscreen MuJoCo rendering; offline language model.
export MUJOCO_GL="${MUJOCO_GL:-egl}"
export PYOPENGL_PLATFORM="${PYOPENGL_PLATFORM:-$MUJOCO_GL}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export LARA_ROOT="$_lara_root"
[ -n "$_lara_nounset" ] && set -u
unset _lara_root _lara_nounset

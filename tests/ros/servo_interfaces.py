"""Build the TEST-ONLY moveit_msgs mirror (tests/ros/interfaces/moveit_msgs: ServoStatus,
ServoCommandType, with the upstream names, fields and constants) once per content hash into
build/test_interfaces/, and give the environment a process needs to use it.

The generated type support is a set of shared libraries found through LD_LIBRARY_PATH, which a
running process cannot change for itself: nodes that need moveit_msgs run as subprocesses with
`env()`. Measured on the 2-core dev machine under load: ~60 s for the first build (CPU ~25 s),
0 s afterwards (cached)."""
from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE / "interfaces"
ROOT = HERE.parent.parent


def _hash() -> str:
    h = hashlib.sha256()
    for f in sorted(SRC.rglob("*")):
        if f.is_file():
            h.update(str(f.relative_to(SRC)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:12]


def build() -> Path:
    """Install prefix of the built test interfaces (built on first use; raises with colcon's log)."""
    base = ROOT / "build" / "test_interfaces" / _hash()
    install = base / "install"
    marker = base / "ok"
    base.mkdir(parents=True, exist_ok=True)
    with open(base / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not marker.exists():
            venv = os.environ.get("VIRTUAL_ENV", sys.prefix)
            cmd = ["colcon", "--log-base", str(base / "log"), "build", "--base-paths", str(SRC),
                   "--build-base", str(base / "build"), "--install-base", str(install), "--merge-install",
                   "--event-handlers", "console_cohesion-", "status-",
                   "--cmake-args", f"-DPython3_EXECUTABLE={venv}/bin/python", "-DBUILD_TESTING=OFF"]
            r = subprocess.run(cmd, capture_output=True, text=True, cwd=str(base))
            if r.returncode != 0:
                raise RuntimeError(f"building the test interfaces failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
            marker.write_text("ok\n")
    return install


def env(install: Path) -> dict:
    e = dict(os.environ)
    site = next((install / "lib").glob("python3*/site-packages"))
    e["PYTHONPATH"] = f"{site}{os.pathsep}{e.get('PYTHONPATH', '')}"
    e["LD_LIBRARY_PATH"] = f"{install / 'lib'}{os.pathsep}{e.get('LD_LIBRARY_PATH', '')}"
    e["AMENT_PREFIX_PATH"] = f"{install}{os.pathsep}{e.get('AMENT_PREFIX_PATH', '')}"
    return e

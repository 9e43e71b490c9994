"""The apt-ROS requirement set resolves for the Pythons of the apt distributions: Humble (Ubuntu
22.04, Python 3.10) and Jazzy (Ubuntu 24.04, Python 3.12), with numpy 1.x (what apt's message
extensions and cv_bridge are built against). No apt ROS exists here, so this is pip's resolver
over the package index this machine can reach (`pip install --dry-run --python-version X
--only-binary=:all:`), not an install on a real distribution. Slow: ~30-60 s per version."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.parametrize("python_version", ["3.10", "3.12"])
def test_apt_requirements_resolve(tmp_path, python_version):
    # pip evaluates environment markers against the RUNNING interpreter even with --python-version:
    # evaluate them for the target Python here (what pip does on that Python), then resolve
    from packaging.markers import Marker

    lines = []
    for line in (ROOT / "requirements-ros-apt.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        req, _, marker = line.partition(";")
        if not marker or Marker(marker.strip()).evaluate({"python_version": python_version,
                                                          "python_full_version": python_version + ".0"}):
            lines.append(req.strip())
    reqs = tmp_path / "requirements.txt"
    reqs.write_text("\n".join(lines) + "\n")
    report = tmp_path / "report.json"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "-q",
                        "--python-version", python_version, "--only-binary=:all:", "--target", str(tmp_path / "t"),
                        "--report", str(report), "-r", str(reqs)],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    got = {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in json.loads(report.read_text())["install"]}
    assert got["numpy"].startswith("1."), got["numpy"]
    for name in ("torch", "transformers", "scipy", "rosbags", "opencv-python-headless", "metaworld"):
        assert name in got, name
    print(f"Python {python_version}: {len(got)} packages, numpy {got['numpy']}, torch {got['torch']}, "
          f"transformers {got['transformers']}, scipy {got['scipy']}")


@pytest.mark.slow
def test_dev_requirements_need_python_311():
    """Why the apt file exists: the dev pins (numpy 2.4, transformers 5.24, ...) do not resolve on 3.10."""
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "-q",
                        "--python-version", "3.10", "--only-binary=:all:", "--target", "/tmp/lara-req-310",
                        "-r", str(ROOT / "requirements-python.txt")], capture_output=True, text=True, timeout=900)
    assert r.returncode != 0 and "numpy==2.4.6" in r.stderr

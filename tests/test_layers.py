"""The architecture as a contract (issue 22): lara_policy's layers only point down, checked by
import-linter from pyproject.toml's [tool.importlinter] (the README's sketch), and no module holds
two jobs' worth of code. Both fail CI on a violation."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "ros2_ws/src/lara_policy/lara_policy"
MAX_LINES = 600


def _lint(pythonpath: Path) -> subprocess.CompletedProcess:
    lint = Path(sys.executable).with_name("lint-imports")
    if not lint.exists():
        pytest.fail("lint-imports is not installed: run scripts/setup.sh (requirements-python.txt pins import-linter)")
    env = {"PATH": str(lint.parent) + ":/usr/bin:/bin", "PYTHONPATH": str(pythonpath), "HOME": str(ROOT)}
    return subprocess.run([str(lint), "--no-cache"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


def test_layers_contract_is_kept():
    r = _lint(PKG.parent)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "1 kept, 0 broken" in r.stdout


def test_a_deliberate_import_up_the_layers_breaks_the_contract(tmp_path):
    """The contract can fail: core importing the ROS layer (a copy of the package, one line added)."""
    copy = tmp_path / "src"
    shutil.copytree(PKG, copy / "lara_policy", ignore=shutil.ignore_patterns("__pycache__"))
    optim = copy / "lara_policy/core/optim.py"
    optim.write_text(optim.read_text() + "\n\ndef _up():\n    from lara_policy.ros import topics  # noqa: F401\n")
    r = _lint(copy)
    assert r.returncode != 0, r.stdout[-2000:]
    assert "lara_policy.core is not allowed to import lara_policy.ros" in r.stdout
    assert "lara_policy.core.optim -> lara_policy.ros.topics" in r.stdout


def test_no_module_over_600_lines():
    """A file past ~600 lines usually holds two jobs (the project's style rule)."""
    long = {str(p.relative_to(PKG)): n for p in PKG.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"split these by responsibility: {long}"

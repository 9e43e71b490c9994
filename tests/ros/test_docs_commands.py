"""The shell commands docs/runtime.md gives for an apt ROS 2 install, run as written in bash.

The venv lines of "Install on an apt ROS 2" are taken from the document itself (not copied
here), run in a throwaway directory, and `/usr/bin/python3` (what `ros2 run` / `ros2 launch`
start the nodes with) must then import a module that exists only in that venv. A PYTHONPATH
line that bash does not expand (`$VIRTUAL_ENV/lib/python3.*/site-packages` in an assignment
keeps the literal `*`) fails this test. rosdep / colcon / pip lines need an apt ROS and are
not run here."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "runtime.md"
SYSTEM_PYTHON = "/usr/bin/python3"


def _install_block() -> list[str]:
    """The indented command lines of the 'Install on an apt ROS 2' section."""
    text = DOC.read_text(encoding="utf-8")
    m = re.search(r"^## Install on an apt ROS 2.*?$(.*?)^## ", text, flags=re.M | re.S)
    assert m, "docs/runtime.md has no 'Install on an apt ROS 2' section"
    return [line[4:] for line in m.group(1).splitlines() if line.startswith("    ") and line.strip()]


def _strip_comment(line: str) -> str:
    return re.sub(r"\s+#\s.*$", "", line).strip()


def test_documented_venv_and_pythonpath_lines_work_in_bash(tmp_path):
    if not os.path.exists(SYSTEM_PYTHON):
        pytest.skip(f"{SYSTEM_PYTHON} not present")
    lines = _install_block()
    venv = [_strip_comment(ln) for ln in lines if "python3 -m venv" in ln]
    export = [_strip_comment(ln) for ln in lines if ln.startswith("export PYTHONPATH")]
    assert len(venv) == 1 and len(export) == 1, lines
    # the venv must be made by the interpreter ros2 run uses (its site-packages layout)
    venv_line = venv[0].replace("python3 -m venv", f"{SYSTEM_PYTHON} -m venv --without-pip", 1)
    script = "\n".join([
        "set -eu",
        "unset PYTHONPATH VIRTUAL_ENV",
        venv_line,
        # a module that exists only inside the venv (as torch would)
        "python -c 'import sysconfig, pathlib; "
        "(pathlib.Path(sysconfig.get_path(\"purelib\")) / \"lara_docs_probe.py\").write_text(\"OK = 1\\n\")'",
        export[0],
        "deactivate",                                   # ros2 run does not activate the venv
        f"{SYSTEM_PYTHON} -c 'import lara_docs_probe; print(\"probe\", lara_docs_probe.OK)'",
        "echo \"PYTHONPATH=$PYTHONPATH\"",
    ])
    r = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                       env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
                       | {"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    assert r.returncode == 0 and "probe 1" in r.stdout, (script, r.stdout, r.stderr)
    assert "*" not in r.stdout.split("PYTHONPATH=")[1], r.stdout      # no unexpanded glob left behind
    assert not r.stdout.split("PYTHONPATH=")[1].strip().endswith(":"), r.stdout   # no empty entry (= cwd)


def test_documented_shell_lines_pass_shellcheck(tmp_path):
    """Where shellcheck is installed: the documented install lines are valid bash."""
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck not installed")
    script = tmp_path / "install.sh"
    script.write_text("#!/bin/bash\n" + "\n".join(_install_block()) + "\n")
    r = subprocess.run(["shellcheck", "-S", "warning", "-e", "SC1090,SC1091", str(script)], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout

"""The recorder benchmark script, short (slow: run with -m slow). The 10-minute quality-bar run
is by hand: python scripts/bench_recorder.py --minutes 10."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ros, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def test_bench_recorder_30hz_vga_no_drops(tmp_path):
    report = tmp_path / "report.json"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_recorder.py"), "--minutes", "0.5",
                           "--json", str(report)], env=dict(os.environ), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads(report.read_text())
    assert all(v == 0 for v in r["lost"].values()) and not r["dropped_in_recorder"]
    assert r["recorded"]["/camera/image_raw"] == r["sent_per_topic"] == 900

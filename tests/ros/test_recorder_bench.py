"""`lara bench recorder` end to end, small (160x120 at 30 Hz for 6 s): three processes over real
DDS, a bag written by this project's recorder, and a report whose counts are the bag's. The
performance target (nothing lost at 30 Hz 640x480 for 10 minutes) is the benchmark's, which exits
1 when a message was lost: `lara bench recorder --minutes 10` by hand. Asserted here: the
behaviour (the exit status follows the losses, the report matches the bag read back)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.ros]

TOPICS = ("/camera/image_raw", "/joint_states")


def test_bench_recorder_report_matches_the_bag(tmp_path):
    from rosbags.rosbag2 import Reader

    report, out = tmp_path / "report.json", tmp_path / "bags"
    proc = subprocess.run([sys.executable, "-m", "lara_policy.cli", "bench", "recorder", "--minutes", "0.1",
                           "--width", "160", "--height", "120", "--min-free-disk-gb", "0", "--out", str(out), "--keep",
                           "--json", str(report)], env=dict(os.environ), capture_output=True, text=True, timeout=300)
    assert report.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads(report.read_text())
    # the exit status is the target's verdict (0: nothing lost, 1: lost), whichever it is on this machine
    assert proc.returncode == (0 if all(v == 0 for v in r["lost"].values()) else 1), (proc.returncode, r)
    assert r["sent_per_topic"] == 180 and r["image"] == "160x120 rgb8"
    bags = [p.parent for p in out.rglob("metadata.yaml")]
    assert len(bags) == 1, bags
    with Reader(bags[0]) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
    for t in TOPICS:       # the report counts what is in the bag, and the recorder recorded something
        assert counts.get(t, 0) == r["recorded"].get(t, 0), (t, counts, r["recorded"])
        assert 0 < counts[t] <= r["sent_per_topic"], (t, counts)
        assert r["lost"][t] == r["sent_per_topic"] - counts[t]
    assert r["segments"] >= 1 and r["recorder_rss_mb"]["max"] > 0

"""recorder_node QoS: a BEST_EFFORT camera publisher (the sensor-data QoS of common camera
drivers) gets recorded with qos_reliability auto (the default), whether the publisher is there
before the recorder subscribes or appears after it; an explicit 'reliable' records nothing from
it and says so in the start answer and episode_meta.json. The camera publisher is a separate
PROCESS; real DDS, real bags read back with rosbags."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy")

from rclpy.parameter import Parameter  # noqa: E402

from lara_msgs.srv import StartEpisode, StopEpisode  # noqa: E402
from lara_policy.formats import rosbag as bag_tools  # noqa: E402
from lara_policy.ros.recorder_node import RecorderNode  # noqa: E402

from helpers_runtime import call_service, kill, spawn_python, wait_for  # noqa: E402

pytestmark = pytest.mark.ros

BEST_EFFORT_CAMERA = """
import time, numpy as np, rclpy
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
from lara_policy.ros.codec import rgb_to_image_msg
rclpy.init()
n = rclpy.create_node("be_camera")
pub = n.create_publisher(Image, "/qos_test/image_raw", qos_profile_sensor_data)   # BEST_EFFORT, depth 5
print("camera up", flush=True)
i = 0
while rclpy.ok():
    pub.publish(rgb_to_image_msg(np.full((24, 32, 3), i % 255, np.uint8), time.time()))
    i += 1
    time.sleep(0.03)
"""


def record(harness, out: Path, **params):
    base = {"output_dir": str(out), "topics": ["/qos_test/image_raw:sensor_msgs/msg/Image"], "flush_period_s": 0.5,
            "min_free_disk_gb": 0.1, "discovery_period_s": 0.2}
    base.update(params)
    return harness.add(RecorderNode(context=harness.context,
                                    parameter_overrides=[Parameter(k, value=v) for k, v in base.items()]))


def episode(harness, rec, seconds: float):
    cl = harness.node(f"client_{int(time.monotonic() * 1e6)}")
    r = call_service(harness, cl, StartEpisode, "/lara/recorder/start", StartEpisode.Request(instruction="x"))
    assert r.success, r.message
    time.sleep(seconds)
    s = call_service(harness, cl, StopEpisode, "/lara/recorder/stop", StopEpisode.Request())
    assert s.success, s.message
    bag = Path(s.bag_path)
    meta = json.loads((bag / bag_tools.META_NAME).read_text())
    if not meta["written"]:                   # nothing written: no rosbag2 metadata to read
        return r, [], meta
    ep = bag_tools.read_episode(bag)
    return r, [m for t, _, m in ep.messages if t == "/qos_test/image_raw"], ep.meta


def test_best_effort_camera_recorded_with_auto_qos(harness, tmp_path):
    cam = spawn_python(BEST_EFFORT_CAMERA)
    rec = None
    try:
        # publisher first: auto subscribes best_effort at once
        rec = record(harness, tmp_path / "a")
        assert wait_for(lambda: rec._sub_rel.get("/qos_test/image_raw") == "best_effort", 15.0), rec._sub_rel
        time.sleep(0.5)                                      # discovery of the publisher's endpoint
        _, imgs, meta = episode(harness, rec, 1.5)
        print(f"auto, publisher first: {len(imgs)} best-effort images in 1.5 s")
        assert len(imgs) >= 10 and imgs[0].width == 32
        assert meta["qos_reliability"] == {"/qos_test/image_raw": "best_effort"} and not meta["not_recorded"]
        harness.executor.remove_node(rec)
        rec.destroy_node()
        rec = None
    finally:
        if rec is not None:
            harness.executor.remove_node(rec)
            rec.destroy_node()
        kill(cam)


def test_best_effort_publisher_appearing_later_and_explicit_reliable(harness, tmp_path):
    # recorder first (type configured: it subscribes reliable before any publisher exists)
    auto = record(harness, tmp_path / "auto")
    assert auto._sub_rel["/qos_test/image_raw"] == "reliable"
    cam = spawn_python(BEST_EFFORT_CAMERA)
    try:
        # ... then the best-effort camera appears: auto switches the subscription
        assert wait_for(lambda: auto._sub_rel["/qos_test/image_raw"] == "best_effort", 20.0), auto._sub_rel
        time.sleep(0.5)
        _, imgs, meta = episode(harness, auto, 1.5)
        print(f"auto, publisher later: {len(imgs)} best-effort images in 1.5 s")
        assert len(imgs) >= 10
        harness.executor.remove_node(auto)
        auto.destroy_node()
        # explicit reliable: nothing arrives, and the recorder says why (never a silent gap)
        rel = record(harness, tmp_path / "rel", qos_reliability="reliable")
        assert wait_for(lambda: "/qos_test/image_raw" in rel._not_recorded, 10.0)
        r, imgs, meta = episode(harness, rel, 1.0)
        assert not imgs
        assert "BEST_EFFORT" in r.message and "qos_reliability: auto" in r.message, r.message
        assert "BEST_EFFORT" in meta["not_recorded"]["/qos_test/image_raw"]
    finally:
        kill(cam)


def test_qos_reliability_value_checked(harness, tmp_path):
    with pytest.raises(ValueError, match="qos_reliability must be auto, reliable or best_effort"):
        record(harness, tmp_path, qos_reliability="sometimes")

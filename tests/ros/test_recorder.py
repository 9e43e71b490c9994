"""recorder_node with real rclpy + DDS + rosbags MCAP: episode bags, metadata, disk guard,
and a recorder PROCESS killed with SIGKILL mid-episode whose bag still opens."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from rosbags.rosbag2 import Reader  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from lara_msgs.msg import ActionChunk, DynamicsCheck  # noqa: E402
from lara_msgs.srv import StartEpisode, StopEpisode  # noqa: E402
from lara_policy.formats import rosbag as bag_tools  # noqa: E402
from lara_policy.ros.codec import chunk_to_msg, rgb_to_image_msg  # noqa: E402
from lara_policy.ros.recorder_node import RecorderNode  # noqa: E402

from helpers_runtime import (CAMERA_PUBLISHER, RECORDER_PROCESS, OutputReader,  # noqa: E402
                             call_service, kill, spawn_python, wait_for)

pytestmark = pytest.mark.ros

TOPICS = ["/camera/image_raw:sensor_msgs/msg/Image", "/lara/action_chunk", "/lara/dynamics_check"]



def make_recorder(h, out: Path, **params) -> RecorderNode:
    base = {"output_dir": str(out), "topics": TOPICS, "flush_period_s": 0.5, "min_free_disk_gb": 0.1}
    base.update(params)
    return h.add(RecorderNode(context=h.context, parameter_overrides=[Parameter(k, value=v) for k, v in base.items()]))


class Feeder:
    def __init__(self, h):
        self.n = h.node("feeder")
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.cam = self.n.create_publisher(Image, "/camera/image_raw", qos)
        self.chunk = self.n.create_publisher(ActionChunk, "/lara/action_chunk", 10)
        self.check = self.n.create_publisher(DynamicsCheck, "/lara/dynamics_check", 10)
        self.sent = {"img": 0, "chunk": 0, "check": 0}

    def connected(self, rec: RecorderNode) -> bool:
        return (self.cam.get_subscription_count() >= 1 and self.chunk.get_subscription_count() >= 2
                and self.check.get_subscription_count() >= 2 and len([s for s in rec._subs.values() if s]) == 3)

    def step(self, i: int, accepted: bool = True):
        img = rgb_to_image_msg(np.full((48, 64, 3), i % 255, np.uint8), time.time())
        self.cam.publish(img)
        self.sent["img"] += 1
        if i % 3 == 0:
            self.chunk.publish(chunk_to_msg(np.zeros((4, 4), np.float32), time.time(), 0.05,
                                            "ee_delta_xyz_gripper", "open the drawer", "lara-test-abc123"))
            self.sent["chunk"] += 1
            m = DynamicsCheck()
            m.num_candidates, m.accepted, m.reason = 1, accepted, "" if accepted else "null action"
            self.check.publish(m)
            self.sent["check"] += 1


def test_episode_bag_metadata_and_read_back(harness, tmp_path):
    rec, f = make_recorder(harness, tmp_path), Feeder(harness)
    assert wait_for(lambda: f.connected(rec), 15.0), "recorder never subscribed"
    cl = harness.node("client")
    r = call_service(harness, cl, StartEpisode, "/lara/recorder/start",
                     StartEpisode.Request(instruction="open the drawer", task="drawer-open-v3"))
    assert r.success, r.message
    again = call_service(harness, cl, StartEpisode, "/lara/recorder/start", StartEpisode.Request(instruction="x"))
    assert not again.success and "already recording" in again.message
    for i in range(60):                                     # ~2 s at 30 Hz -> several segments
        f.step(i, accepted=(i % 9 != 0))
        time.sleep(1 / 30)
    # everything sent has arrived (DDS may lag on a loaded CPU) before the episode is stopped
    assert wait_for(lambda: sum(rec._episode["received"].values()) >= sum(f.sent.values()), 10.0)
    s = call_service(harness, cl, StopEpisode, "/lara/recorder/stop", StopEpisode.Request(task_success=True, notes="ok"))
    assert s.success, s.message
    bag = Path(s.bag_path)
    assert bag == Path(r.bag_path) and bag.name == r.episode_id
    # a standard (split) rosbag2 MCAP bag: opens with rosbags, several complete files
    with Reader(bag) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
    files = bag_tools.load_yaml(bag / "metadata.yaml")["rosbag2_bagfile_information"]["relative_file_paths"]
    assert len(files) >= 2 and all(f.endswith(".mcap") and (bag / f).is_file() for f in files)
    assert counts["/camera/image_raw"] == f.sent["img"] == 60
    assert counts["/lara/action_chunk"] == f.sent["chunk"]
    assert counts["/lara/dynamics_check"] == f.sent["check"]
    ep = bag_tools.read_episode(bag)
    imgs = [m for t, _, m in ep.messages if t == "/camera/image_raw"]
    assert [int(m.data[0]) for m in imgs] == list(range(60))         # order and content preserved
    assert (imgs[0].height, imgs[0].width, imgs[0].encoding) == (48, 64, "rgb8")
    chunk = next(m for t, _, m in ep.messages if t == "/lara/action_chunk")
    assert chunk.model_id == "lara-test-abc123"                      # custom type deserialized
    meta = ep.meta
    assert meta["instruction"] == "open the drawer" and meta["task"] == "drawer-open-v3"
    assert meta["success"] is True and meta["notes"] == "ok" and meta["model_id"] == "lara-test-abc123"
    assert meta["dynamics_checks"] == f.sent["check"]
    assert meta["dynamics_not_accepted"] == len([i for i in range(0, 60, 3) if i % 9 == 0])
    assert meta["written"]["/camera/image_raw"] == 60 and not meta["dropped"]
    assert meta["state"] == "closed" and meta["stop_time"] >= meta["start_time"]
    assert not list(tmp_path.glob(".*.partial"))
    assert call_service(harness, cl, StopEpisode, "/lara/recorder/stop", StopEpisode.Request()).success is False


def test_refuses_start_when_disk_nearly_full_and_stops_when_it_fills(harness, tmp_path):
    rec = make_recorder(harness, tmp_path, min_free_disk_gb=1e9)
    cl = harness.node("client")
    r = call_service(harness, cl, StartEpisode, "/lara/recorder/start", StartEpisode.Request(instruction="x"))
    assert not r.success and "min_free_disk_gb" in r.message and not list(tmp_path.iterdir())
    # mid-episode: the threshold rises above the free space -> the episode is closed cleanly
    rec.set_parameters([Parameter("min_free_disk_gb", value=0.1)])
    f = Feeder(harness)
    assert wait_for(lambda: f.connected(rec), 15.0)
    r = call_service(harness, cl, StartEpisode, "/lara/recorder/start", StartEpisode.Request(instruction="x"))
    assert r.success
    for i in range(15):
        f.step(i)
        time.sleep(1 / 30)
    rec.set_parameters([Parameter("min_free_disk_gb", value=1e9)])
    for i in range(15, 60):
        f.step(i)
        time.sleep(1 / 30)
    assert wait_for(lambda: not rec.recording, 5.0)
    assert wait_for(lambda: json.loads((Path(r.bag_path) / "episode_meta.json").read_text())["state"] == "closed", 5)
    meta = json.loads((Path(r.bag_path) / "episode_meta.json").read_text())
    assert meta["stop_reason"] == "disk low"
    with Reader(Path(r.bag_path)) as reader:
        assert reader.message_count == meta["flushed_messages"] > 0


def _start_episode(harness, cl, rec_out, request, attempts: int = 3, timeout: float = 10.0):
    """One full-suite run (2026-12-08) saw the first start request go unanswered for 30 s, once in
    many runs; alone the test passed 7 of 7. Cause not established: a server matched after
    wait_for_service returned (or the ghost of a SIGKILLed recorder still in DDS discovery) loses
    the request, which then started nothing. So ask again, and if it never answers, say what the
    recorder process printed."""
    for attempt in range(attempts):
        try:
            return call_service(harness, cl, StartEpisode, "/lara/recorder/start", request, timeout=timeout)
        except TimeoutError:
            if attempt == attempts - 1:
                raise TimeoutError(f"/lara/recorder/start unanswered {attempts} times; recorder said:\n"
                                   + rec_out.text()[-2000:]) from None


def test_bag_survives_sigkill_of_recorder_process(harness, tmp_path):
    rec_proc = cam_proc = None
    try:
        rec_proc = spawn_python(RECORDER_PROCESS, str(tmp_path), "0.5")
        rec_out = OutputReader(rec_proc)
        cam_proc = spawn_python(CAMERA_PUBLISHER, "30", "320", "240")   # frames from another process
        cam_out = OutputReader(cam_proc)
        cl = harness.node("client")
        assert wait_for(lambda: "recording /camera/image_raw" in rec_out.text(), 30.0), rec_out.text()
        r = _start_episode(harness, cl, rec_out, StartEpisode.Request(instruction="push the puck", task="push-v3"))
        assert r.success, r.message

        def flushed():
            found = re.findall(r"flushed: segments=(\d+) messages=(\d+)", rec_out.text())
            return (int(found[-1][0]), int(found[-1][1])) if found else (0, 0)
        assert wait_for(lambda: flushed()[0] >= 4, 60.0), rec_out.text()
        time.sleep(0.25)                                       # kill mid-segment
        kill(rec_proc, 9)
        assert rec_proc.returncode == -9
        segs_logged, msgs_logged = flushed()                  # anything logged up to the kill
        bag = Path(r.bag_path)
        # the bag opens as it is (no recovery step needed) ...
        with Reader(bag) as reader:
            as_is = reader.message_count
        assert as_is >= msgs_logged > 0
        # ... and recover() (also `python -m lara_policy.formats.rosbag.episode recover`) agrees
        rep = bag_tools.recover(bag)
        assert rep["messages"] >= msgs_logged and rep["segments"] >= segs_logged
        # (rep["lost_partial"] names the in-flight segment, if one was open at the kill: lost)
        n = sum(1 for t, *_ in bag_tools.iter_messages(bag, raw=True) if t == "/camera/image_raw")
        assert n >= msgs_logged
        meta = json.loads((bag / "episode_meta.json").read_text())
        assert meta["instruction"] == "push the puck" and meta["state"] == "recording"
        frames = [int(m.header.frame_id) for _, _, _, m in bag_tools.iter_messages(bag, ["/camera/image_raw"])]
        assert frames == sorted(frames) and len(set(frames)) == len(frames)
        assert "sent" in cam_out.text()
    finally:
        kill(rec_proc, 9)
        kill(cam_proc, 9)

"""camera_watch_node (issue 25): the camera-motion detector without a LAM over real DDS. A test
node streams camera frames and end-effector poses stamped alike (as sim_node and a robot driver
do); the detector raises its alarm on /lara/monitor_alarm and an ERROR diagnostic when the hand
moves and the image does not (a frozen driver re-sending its last frame with fresh stamps), and
at the expected frame: `debounce` judgements of `window_frames` frames each. A changing image, a
still hand or no pose raise nothing; without a threshold the node says why and stays disabled.
The detector through the whole sim graph (sim_node's frozen-camera fault, command_node's hold):
tests/ros/test_monitor_run.py."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest

from helpers_runtime import wait_for

pytestmark = pytest.mark.ros

WINDOW, DEBOUNCE = 4, 2


def _watch(**params):
    from rclpy.parameter import Parameter

    from lara_policy.ros.camera_watch_node import CameraWatchNode
    params = {"threshold": 0.9, "debounce": DEBOUNCE, "window_frames": WINDOW, "min_moved_m": 0.01, **params}
    return CameraWatchNode(parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])


class _Rig:
    """The test's end of the graph: camera + pose publishers, alarm + diagnostics subscriptions."""

    def __init__(self, ros, compressed: bool = False):
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import PoseStamped
        from sensor_msgs.msg import CompressedImage, Image
        from std_msgs.msg import String
        self.node = ros.create_node("camera_watch_test_rig")
        self.compressed = compressed
        self.img_pub = self.node.create_publisher(CompressedImage if compressed else Image,
                                                  "/camera/image_raw/compressed" if compressed else "/camera/image_raw",
                                                  10)
        self.pose_pub = self.node.create_publisher(PoseStamped, "/lara/ee_pose", 10)
        self.alarms, self.diags = [], []
        self.sent = 0
        self.sent_at_alarm = None
        self.node.create_subscription(String, "/lara/monitor_alarm", self._on_alarm, 10)
        self.node.create_subscription(DiagnosticArray, "/diagnostics",
                                      lambda m: self.diags.extend((s.level, s.name, s.message) for s in m.status), 50)

    def _on_alarm(self, msg) -> None:
        if self.sent_at_alarm is None:
            self.sent_at_alarm = self.sent
        self.alarms.append(msg.data)

    def matched(self) -> bool:
        return self.img_pub.get_subscription_count() > 0 and self.pose_pub.get_subscription_count() > 0

    def stream(self, frames: int, image, hand, pose: bool = True, rate_hz: float = 60.0) -> None:
        """`frames` frames: image(k) (H, W, 3 uint8) and, with pose, the hand at hand(k), stamped alike."""
        from geometry_msgs.msg import PoseStamped
        from sensor_msgs.msg import CompressedImage

        from lara_policy.ros.codec import rgb_to_image_msg, sec_to_stamp
        for k in range(frames):
            t = self.node.get_clock().now().nanoseconds * 1e-9
            if pose:
                msg = PoseStamped()
                msg.header.stamp = sec_to_stamp(t)
                msg.header.frame_id = "base"
                msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = (float(v) for v in hand(k))
                msg.pose.orientation.w = 1.0
                self.pose_pub.publish(msg)
            time.sleep(0.3 / rate_hz)     # the pose of a tick goes out (and in) before its frame
            rgb = image(k)
            if self.compressed:
                import cv2
                msg = CompressedImage(format="rgb8; png compressed bgr8",
                                      data=cv2.imencode(".png", rgb[:, :, ::-1])[1].tobytes())
                msg.header.stamp = sec_to_stamp(t)
            else:
                msg = rgb_to_image_msg(rgb, t)
            self.img_pub.publish(msg)
            self.sent += 1
            time.sleep(0.7 / rate_hz)


_FROZEN = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)


def _moving(k):
    return (0.1 + 0.005 * k, 0.6, 0.2)            # 5 mm per frame: 15 mm per window of 4


@pytest.mark.parametrize("compressed", [False, True], ids=["raw", "compressed"])
def test_a_frozen_camera_while_the_hand_moves_raises_the_alarm_at_the_expected_frame(ros, spinner, compressed):
    from diagnostic_msgs.msg import DiagnosticStatus

    from lara_policy.ros.camera_watch_node import NAME
    watch = _watch(**({"image_topic": "/camera/image_raw/compressed"} if compressed else {}))
    rig = _Rig(ros, compressed)
    spinner(watch, rig.node)
    assert wait_for(rig.matched, 10.0)
    rig.stream(2, lambda k: _FROZEN, _moving)            # the pose reaches the node first
    assert wait_for(lambda: watch.judged_frames >= 1, 5.0)
    start = rig.sent
    rig.stream((DEBOUNCE + 1) * WINDOW + 2, lambda k: _FROZEN, lambda k: _moving(k + 2))
    assert wait_for(lambda: rig.alarms, 5.0), (watch.frames, watch.judged_frames, list(watch.scores), rig.diags[-3:])
    assert rig.alarms[0].startswith("camera monitor:") and "did not change" in rig.alarms[0], rig.alarms
    # judged from its first posed frame on (step 0): a judgement every WINDOW frames from step WINDOW
    # on, the DEBOUNCE-th in a row above the threshold raises it: step DEBOUNCE * WINDOW, counted in
    # the frames DDS delivered (whatever the pace), and few frames after the last sent one
    assert watch.alarm_steps == [DEBOUNCE * WINDOW] and watch.out.alarms == 1, watch.alarm_steps
    assert rig.sent_at_alarm is not None and rig.sent_at_alarm - start <= (DEBOUNCE + 1) * WINDOW, \
        (rig.sent_at_alarm, start)
    assert [round(s, 6) for _, s, _ in watch.scores][:DEBOUNCE] == [1.0] * DEBOUNCE
    assert wait_for(lambda: any(lvl == DiagnosticStatus.ERROR and n == NAME and m.startswith("camera monitor:")
                                for lvl, n, m in rig.diags), 3.0), rig.diags
    assert any(lvl == DiagnosticStatus.WARN and n == NAME for lvl, n, _ in rig.diags), rig.diags


def test_a_changing_image_or_a_still_hand_raises_nothing(ros, spinner):
    from diagnostic_msgs.msg import DiagnosticStatus
    watch = _watch()
    rig = _Rig(ros)
    spinner(watch, rig.node)
    assert wait_for(rig.matched, 10.0)
    rng = np.random.default_rng(1)
    # a live camera: the image changes (sensor noise and more) while the hand moves
    rig.stream(6 * WINDOW, lambda k: rng.integers(0, 255, (32, 32, 3), dtype=np.uint8), _moving)
    assert wait_for(lambda: len(watch.scores) >= 4, 5.0), (watch.judged_frames, list(watch.scores))
    assert all(s < 0.9 for _, s, _ in watch.scores), list(watch.scores)
    # a frozen image while the hand stands still: expected, nothing judged
    n = len(watch.scores)
    rig.stream(6 * WINDOW, lambda k: _FROZEN, lambda k: (0.1, 0.6, 0.2))
    assert wait_for(lambda: any("hand still" in m for _, _, m in rig.diags), 5.0), rig.diags[-3:]
    time.sleep(0.3)
    assert not rig.alarms and watch.out.alarms == 0, rig.alarms
    assert all(s < 0.9 for _, s, _ in list(watch.scores)[n:])
    assert all(lvl == DiagnosticStatus.OK for lvl, _, _ in rig.diags), rig.diags


def test_without_a_fresh_pose_nothing_is_judged(ros, spinner):
    from diagnostic_msgs.msg import DiagnosticStatus
    watch = _watch()
    rig = _Rig(ros)
    spinner(watch, rig.node)
    assert wait_for(rig.matched, 10.0)
    rig.stream(4 * WINDOW, lambda k: _FROZEN, _moving, pose=False)
    assert wait_for(lambda: watch.frames >= 4 * WINDOW - 1, 5.0)
    assert watch.judged_frames == 0 and not watch.scores and "no valid end-effector pose" in watch.pose_problem
    assert wait_for(lambda: any(lvl == DiagnosticStatus.STALE for lvl, _, _ in rig.diags), 3.0), rig.diags
    assert not rig.alarms


def _checkpoint(tmp_path, camera_threshold=None, camera_debounce=None):
    from lara_policy.core.monitor import MonitorConfig
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir(parents=True)
    (ckpt / "config.json").write_text(json.dumps({"model": {"chunk_offset": -1, "vla": {"horizon": 8}}}))
    MonitorConfig(threshold=0.9, debounce=3, camera_threshold=camera_threshold, camera_debounce=camera_debounce).save(ckpt)
    return ckpt


def test_without_a_threshold_it_says_so_and_stays_disabled(ros, spinner, tmp_path):
    from diagnostic_msgs.msg import DiagnosticStatus
    from diagnostic_msgs.msg import DiagnosticArray
    ckpt = _checkpoint(tmp_path)                      # a monitor.json from before the camera detector
    diags = []
    probe = ros.create_node("camera_watch_probe")
    probe.create_subscription(DiagnosticArray, "/diagnostics", lambda m: diags.extend(m.status), 10)
    spinner(probe)
    watch = _watch(checkpoint=str(ckpt), threshold=-1.0, debounce=0, window_frames=0)
    spinner(watch)
    assert not watch.enabled
    assert "no camera_threshold" in watch.disabled_reason and str(ckpt) in watch.disabled_reason
    assert "--calibrate-monitor" in watch.disabled_reason and "threshold parameter" in watch.disabled_reason
    assert not watch.get_subscriptions_info_by_topic("/camera/image_raw")
    assert wait_for(lambda: any(s.level == DiagnosticStatus.WARN and "disabled: no threshold" in s.message
                                for s in diags), 7.0), diags
    none = _watch(threshold=-1.0)
    assert not none.enabled and "no checkpoint is given" in none.disabled_reason
    none.destroy_node()


def test_the_checkpoint_gives_threshold_debounce_and_window(ros, tmp_path):
    watch = _watch(checkpoint=str(_checkpoint(tmp_path, camera_threshold=0.93)), threshold=-1.0, debounce=0,
                   window_frames=0)
    try:
        assert watch.enabled and (watch.threshold, watch.debounce, watch.window) == (0.93, 3, 8)
        assert watch.source == "ckpt/monitor.json"
    finally:
        watch.destroy_node()
    # a calibrated camera_debounce is the watch's own (the LAM's debounce stays the LAM's)
    own = _watch(checkpoint=str(_checkpoint(tmp_path / "own", camera_threshold=0.95, camera_debounce=1)),
                 threshold=-1.0, debounce=0, window_frames=0)
    try:
        assert (own.threshold, own.debounce) == (0.95, 1)
    finally:
        own.destroy_node()


def test_graph_switch_and_launch_spec(tmp_path):
    """The sim graph's switch (lara_bringup.camera_watch; a launch argument / `lara bringup
    --camera-watch` wins) and the parameters a launch file gives the node: the policy's camera and
    pose topics and its checkpoint."""
    import os

    import yaml

    from lara_bringup import config_dir
    from lara_policy.ros.bringup import robot_nodes
    from lara_policy.ros.camera_watch_node import launch_spec, switched_on
    from lara_policy.ros.params import load_params_yaml
    sim = os.path.join(config_dir(), "sim.yaml")
    assert launch_spec(sim) is None and not switched_on(load_params_yaml(sim))
    assert "camera_watch_node" not in robot_nodes(load_params_yaml(sim))
    spec = launch_spec(sim, switch="true", checkpoint="/ckpt")
    assert spec["executable"] == "camera_watch_node" and spec["parameters"]["checkpoint"] == "/ckpt"
    assert spec["parameters"]["image_topic"] == "/camera/image_raw"
    assert spec["parameters"]["ee_pose_topic"] == "/lara/ee_pose"
    cfg = load_params_yaml(sim)
    cfg["lara_bringup"]["ros__parameters"]["camera_watch"] = True
    cfg["policy_node"]["ros__parameters"]["image_topics"] = ["/cam/a/compressed", "/cam/b"]
    path = tmp_path / "on.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert "camera_watch_node" in robot_nodes(load_params_yaml(str(path)))
    assert launch_spec(str(path))["parameters"]["image_topic"] == "/cam/a/compressed"
    assert launch_spec(str(path), switch="false") is None
    with pytest.raises(ValueError, match="true or false"):
        switched_on(cfg, "maybe")


def test_a_node_that_cannot_be_built_exits_with_one_fatal_line(ros):
    """ros/node_main.build_or_exit, the start of every node's main(): a configuration error is exit
    status 1 with rclpy shut down, not a traceback; an error it was not told about stays an error."""
    import pytest
    from lara_policy.ros.node_main import build_or_exit

    def bad():
        raise ValueError("window_frames must be >= 2")
    assert build_or_exit(lambda: "built", "x") == "built"
    with pytest.raises(SystemExit) as exit_info:
        build_or_exit(bad, "camera_watch_node")
    assert exit_info.value.code == 1 and not ros.ok()
    ros.init()
    with pytest.raises(KeyError):
        build_or_exit(lambda: {}["missing"], "x")

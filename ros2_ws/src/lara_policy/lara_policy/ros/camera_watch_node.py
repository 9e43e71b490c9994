"""camera_watch_node: the camera-motion fault detector (issue 25) as a ROS node of its own.

A detector without a LAM (core/monitor.py CameraMotionMonitor): the proprioception says the hand
moved (its end-effector path over the last `window_frames` camera frames is at least
`min_moved_m`) but the camera image did not change (stillness = 1 / (1 + mean |I_t - I_t-window|),
exactly 1 for identical frames). `debounce` judgements in a row above `threshold` raise an alarm.
It catches a camera driver that keeps re-sending its last frame with fresh stamps, which passes
every staleness check (policy_node's max_image_age_s, command_node's max_observation_age_s).

In:  the primary camera (`image_topic`: sensor_msgs/Image, or CompressedImage when
     `image_transport` is compressed / auto with a topic ending in /compressed; decoded by the
     helpers policy_node uses, ros/codec.py) and the end-effector pose (`ee_pose_topic`,
     geometry_msgs/PoseStamped). Every frame is judged with the latest pose; a pose missing or
     stamped more than `max_pose_skew_s` from the frame judges nothing (the window starts over;
     logged once per outage).
Out: exactly what policy_node's LAM fault monitor publishes (ros/fault_monitor.py MonitorOutputs):
     a DiagnosticArray on /diagnostics per judgement (name `lara: camera motion monitor`; OK, WARN
     while the debounce counts, ERROR on an alarm; STALE while no fresh pose) and the alarm reason
     (std_msgs/String, starting 'camera monitor:') on `monitor_alarm_topic`, which command_node
     turns into a hold with `hold_on_monitor_alarm`.

The threshold is `threshold`, or (-1) the checkpoint's monitor.json `camera_threshold` (`lara eval
sim --monitor --calibrate-monitor`); with neither the node says so and stays disabled (no
subscriptions; a WARN diagnostic every 5 s says why). `window_frames` 0 = the checkpoint's LAM frame
gap C (the window the offline harness calibrated with), 16 without a checkpoint.
"""
from __future__ import annotations

import json
import math
import os
from collections import deque

import numpy as np
import rclpy
import rclpy.logging
from diagnostic_msgs.msg import DiagnosticStatus
from geometry_msgs.msg import PoseStamped
from rclpy.node import Node
from sensor_msgs.msg import CompressedImage, Image

from lara_policy.core.monitor import CameraMotionMonitor, MonitorConfig
from lara_policy.ros import topics
from lara_policy.ros.codec import ImageConversionError, compressed_msg_to_rgb, image_msg_to_rgb, stamp_to_sec
from lara_policy.ros.fault_monitor import MonitorOutputs
from lara_policy.ros.node_main import build_or_exit, spin_node
from lara_policy.ros.params import declare, qos_from_params, resolve_path

NAME = "lara: camera motion monitor"
DEFAULT_WINDOW = 16
DEFAULT_DEBOUNCE = 2


def checkpoint_window(checkpoint: str) -> int | None:
    """The checkpoint's LAM frame gap C (config.json: model.chunk_offset, or the VLA horizon when
    that is -1): the window `lara eval sim --monitor` judges the camera over. None when unreadable."""
    try:
        with open(os.path.join(checkpoint, "config.json"), encoding="utf-8") as f:
            model = json.load(f).get("model", {})
        offset = int(model.get("chunk_offset", -1))
        return offset if offset > 0 else int(model["vla"]["horizon"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def resolve_threshold(checkpoint: str, threshold: float, debounce: int) -> tuple[float, int, str]:
    """(threshold, debounce, where from); threshold NaN with the reason in place of the source
    when there is none."""
    cfg = MonitorConfig.load(checkpoint) if checkpoint and os.path.isdir(checkpoint) else None
    debounce = debounce if debounce > 0 else (
        (cfg.camera_debounce or cfg.debounce) if cfg is not None else DEFAULT_DEBOUNCE)   # its own, if calibrated
    if threshold >= 0:
        return float(threshold), int(debounce), "parameter threshold"
    if cfg is not None and cfg.camera_threshold is not None:
        return float(cfg.camera_threshold), int(debounce), f"{os.path.basename(checkpoint.rstrip('/'))}/monitor.json"
    if not checkpoint:
        why = "no threshold: parameter threshold is -1 and no checkpoint is given"
    elif not os.path.isdir(checkpoint):
        why = f"no threshold: checkpoint {checkpoint} not found (and parameter threshold is -1)"
    elif cfg is None:
        why = f"no threshold: {checkpoint} has no monitor.json (and parameter threshold is -1)"
    else:
        why = f"no threshold: {checkpoint}/monitor.json has no camera_threshold (and parameter threshold is -1)"
    return float("nan"), int(debounce), why + ("; calibrate one with `lara eval sim --policy CKPT --monitor "
                                                "--calibrate-monitor` or set the threshold parameter")


class CameraWatchNode(Node):
    def __init__(self, node_name: str = "camera_watch_node", **kwargs):
        super().__init__(node_name, **kwargs)
        p = lambda *a, **k: declare(self, *a, **k)  # noqa: E731
        checkpoint = p("checkpoint", "", "checkpoint whose monitor.json gives camera_threshold and debounce (and its "
                       "LAM frame gap the window); '' = none (then set threshold)", read_only=True)
        threshold = p("threshold", -1.0, "stillness threshold in (0, 1): a window scores above it when the image "
                      "barely changed (-1 = the checkpoint's monitor.json camera_threshold)", read_only=True,
                      min_value=-1.0, max_value=1.0)
        debounce = p("debounce", 0, "windows in a row above the threshold that raise the alarm (0 = monitor.json's "
                     "camera_debounce, or its debounce; "
                     f"else {DEFAULT_DEBOUNCE})", read_only=True, min_value=0, max_value=1000)
        window = p("window_frames", 0, "camera frames per judgement (0 = the checkpoint's LAM frame gap C, the "
                   f"window of `lara eval sim --monitor`; {DEFAULT_WINDOW} without a checkpoint)", read_only=True,
                   min_value=0, max_value=10000)
        self.min_moved_m = p("min_moved_m", 0.01, "a window is judged only when the hand's path over it is at least "
                             "this long (m): a still hand expects a still image", read_only=True,
                             min_value=0.0, max_value=10.0)
        self.max_pose_skew_s = p("max_pose_skew_s", 0.5, "a frame is judged only with an end-effector pose stamped "
                                 "at most this far from it (s)", read_only=True, min_value=0.0, max_value=60.0)
        transport = p("image_transport", "auto", "raw (sensor_msgs/Image) | compressed (sensor_msgs/CompressedImage, "
                      "jpeg/png) | auto (compressed when image_topic ends in /compressed)", read_only=True)
        qos_rel = p("camera_qos_reliability", "reliable", "camera QoS: reliable | best_effort", read_only=True)
        qos_depth = p("camera_qos_depth", 2, "camera QoS history depth", read_only=True, min_value=1)
        t = {k: p(k, v, d, read_only=True) for k, v, d in [
            ("image_topic", topics.CAMERA_IMAGE, "the primary camera in (the policy's first camera)"),
            ("ee_pose_topic", topics.EE_POSE, "end-effector pose in (geometry_msgs/PoseStamped)"),
            ("monitor_alarm_topic", topics.MONITOR_ALARM, "alarm reason out (std_msgs/String; command_node's "
             "monitor_alarm_topic)"),
        ]}
        self.topics = t
        self.checkpoint = resolve_path(str(checkpoint)) if checkpoint else ""
        self.threshold, self.debounce, self.source = resolve_threshold(self.checkpoint, float(threshold), int(debounce))
        self.window = int(window) or (checkpoint_window(self.checkpoint) if self.checkpoint else None) or DEFAULT_WINDOW
        if self.window < 2:
            raise ValueError(f"camera_watch_node: window_frames must be >= 2 (a change needs two frames), got "
                             f"{self.window}")
        self.enabled = not math.isnan(self.threshold)
        self.disabled_reason = "" if self.enabled else self.source
        model_id = os.path.basename(self.checkpoint.rstrip("/")) if self.checkpoint else "camera"
        self.out = MonitorOutputs(self, NAME, model_id, alarm_topic=t["monitor_alarm_topic"])
        self.monitor = CameraMotionMonitor(window=self.window, threshold=self.threshold if self.enabled else 1.0,
                                           min_moved_m=self.min_moved_m, debounce=self.debounce, history=1000)
        self.frames = 0                  # frames received; judged: frames fed to the monitor since it (re)started
        self.judged_frames = 0
        self.alarm_frames: list[int] = []     # frames received at each alarm
        self.alarm_steps: list[int] = []      # judged frames since the window (re)started, at each alarm (from 0)
        self.scores: deque = deque(maxlen=10000)    # (frame stamp s, stillness, hand path m)
        self.pose_problem = ""           # why frames are not judged now ('' = they are)
        self.image_errors = 0
        self._pose = None                # (xyz, stamp s)
        self._step = 0
        if not self.enabled:
            self.get_logger().warning(f"camera_watch_node: DISABLED: {self.disabled_reason}")
            self.create_timer(5.0, self._report_disabled)
            self._report_disabled()
            return
        if self.threshold >= 1.0:
            self.get_logger().warning(f"camera_watch_node: threshold {self.threshold:g} >= 1 can never fire "
                                      "(stillness is at most 1: identical frames)")
        if transport not in ("raw", "compressed", "auto"):
            raise ValueError(f"camera_watch_node: image_transport must be raw, compressed or auto, got '{transport}'")
        compressed = transport == "compressed" or (transport == "auto" and
                                                   t["image_topic"].rstrip("/").endswith("/compressed"))
        self.create_subscription(CompressedImage if compressed else Image, t["image_topic"], self._on_image,
                                 qos_from_params(qos_rel, qos_depth))
        self.create_subscription(PoseStamped, t["ee_pose_topic"], self._on_pose, 10)
        self.get_logger().info(
            f"camera_watch_node: {t['image_topic']} ({'compressed' if compressed else 'raw'}) + {t['ee_pose_topic']}: "
            f"stillness > {self.threshold:.4f} ({self.source}) for {self.debounce} windows of {self.window} frames "
            f"in a row while the hand moved >= {self.min_moved_m:g} m -> alarm on {t['monitor_alarm_topic']}")

    # -- inputs ------------------------------------------------------------------------------
    def _on_pose(self, msg: PoseStamped) -> None:
        p = msg.pose.position
        xyz = np.array([p.x, p.y, p.z], dtype=np.float64)
        self._pose = (xyz, stamp_to_sec(msg.header.stamp)) if np.all(np.isfinite(xyz)) else None

    def _pose_for(self, stamp: float) -> tuple[np.ndarray | None, str]:
        if self._pose is None:
            return None, f"no valid end-effector pose on {self.topics['ee_pose_topic']}"
        xyz, t = self._pose
        if abs(stamp - t) > self.max_pose_skew_s:
            return None, (f"the end-effector pose is stamped {stamp - t:+.2f} s from the camera frame (more than "
                          f"max_pose_skew_s {self.max_pose_skew_s:g})")
        return xyz, ""

    def _restart(self) -> None:
        """Start the window over (frames not judged in between: no window spans them)."""
        self.monitor.reset()
        self._step = 0

    def _on_image(self, msg) -> None:
        self.frames += 1
        stamp = stamp_to_sec(msg.header.stamp)
        hand, why = self._pose_for(stamp)
        if hand is None:
            if not self.pose_problem:          # once per outage
                self.get_logger().warning(f"camera_watch_node: {why}: nothing is judged until a fresh pose comes")
                self._restart()
            self.pose_problem = why
            if self.frames % self.window == 0:
                self.out.status(DiagnosticStatus.STALE, f"not judging: {why}",
                                [("threshold", f"{self.threshold:.4f}"), ("alarms", str(self.out.alarms))])
            return
        if self.pose_problem:
            self.get_logger().info("camera_watch_node: end-effector pose back: judging again")
            self.pose_problem = ""
        try:
            rgb = compressed_msg_to_rgb(msg) if isinstance(msg, CompressedImage) else image_msg_to_rgb(msg)
            self._judge(hand, rgb, stamp)
        except (ImageConversionError, ValueError) as exc:   # ValueError: the image changed shape
            self.image_errors += 1
            self.get_logger().warning(f"camera_watch_node: frame not judged: {exc}", throttle_duration_sec=5.0)
            self._restart()

    def _judge(self, hand: np.ndarray, rgb: np.ndarray, stamp: float) -> None:
        step, self._step = self._step, self._step + 1
        judged = self.monitor.on_step(step, hand, rgb)
        self.judged_frames += 1
        if judged is None:
            return                             # not the end of a window
        path = judged.hand_path_m
        values = [("threshold", f"{self.threshold:.4f}"), ("debounce", str(self.debounce)),
                  ("window_frames", str(self.window)), ("hand_path_m", f"{path:.4f}")]
        if judged.stillness is None:           # the hand stood still: nothing to judge
            self.out.status(DiagnosticStatus.OK, f"hand still ({path:.3f} m < {self.min_moved_m:g} m over "
                            f"{self.window} frames): a still image is expected",
                            values + [("alarms", str(self.out.alarms)), ("frame_stamp", f"{stamp:.3f}")])
            return
        stillness = judged.stillness
        self.scores.append((stamp, stillness, path))
        level, message = DiagnosticStatus.OK, "the camera image changes as the hand moves"
        if judged.alarm:
            reason = (f"camera monitor: the hand moved {path:.3f} m but the camera image did not change (stillness "
                      f"{stillness:.3f} > {self.threshold:.3f} for {self.debounce} windows of {self.window} frames in "
                      "a row: frozen camera driver re-sending its last frame?)")
            self.alarm_frames.append(self.frames)
            self.alarm_steps.append(step)
            self.out.alarm(reason)
            level, message = DiagnosticStatus.ERROR, reason
        elif stillness > self.threshold:       # counted by the debounce, not (yet) an alarm
            level, message = DiagnosticStatus.WARN, f"stillness {stillness:.3f} above {self.threshold:.3f}"
        self.out.status(level, message, [("stillness", f"{stillness:.4f}")] + values +
                        [("alarms", str(self.out.alarms)), ("frame_stamp", f"{stamp:.3f}")])

    def _report_disabled(self) -> None:
        self.out.status(DiagnosticStatus.WARN, f"disabled: {self.disabled_reason}", [])

    def reset(self) -> None:
        """Forget the window and the debounce count (a new episode)."""
        self._restart()


def launch_params(config: dict, checkpoint: str = "") -> dict:
    """camera_watch_node's parameters in a lara_bringup graph (the launch files and `lara bringup`):
    its YAML section, the primary camera and pose topics of policy_node where the section names none,
    and the checkpoint (`checkpoint`, the resolved policy checkpoint of the graph, wins over the
    section's)."""
    from lara_policy.ros.params import node_params
    params = node_params(config, "camera_watch_node")
    pol = node_params(config, "policy_node")
    if "image_topic" not in params:
        first = list(pol.get("image_topics") or [])
        params["image_topic"] = first[0] if first else pol.get("image_topic", topics.CAMERA_IMAGE)
    if "ee_pose_topic" not in params and pol.get("ee_pose_topic"):
        params["ee_pose_topic"] = pol["ee_pose_topic"]
    if checkpoint:
        params["checkpoint"] = checkpoint
    return params


def switched_on(config: dict, switch: str | bool | None = None) -> bool:
    """Whether a graph starts camera_watch_node: `switch` (true/false, a launch argument or
    `lara bringup --camera-watch`) when given, else the YAML's lara_bringup.camera_watch."""
    from lara_policy.ros.params import BRINGUP_SECTION, node_params
    if switch is None or str(switch).strip() == "":
        switch = node_params({k: v for k, v in config.items() if k != "/**"}, BRINGUP_SECTION).get("camera_watch",
                                                                                                   False)
    value = str(switch).strip().lower()
    if value not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
        raise ValueError(f"camera_watch must be true or false, got '{switch}'")
    return value in ("true", "1", "yes", "on")


def launch_spec(config_path: str, switch: str = "", checkpoint: str = "") -> dict | None:
    """{package, executable, name, parameters} of camera_watch_node for a launch file (None when
    switched off); `checkpoint` as the launch argument (empty: the YAML's, as for policy_node)."""
    from lara_policy.ros.params import bringup_paths, load_params_yaml
    config = load_params_yaml(config_path)
    if not switched_on(config, switch):
        return None
    ckpt = bringup_paths(config, checkpoint=checkpoint)["checkpoint"]
    return {"package": "lara_policy", "executable": "camera_watch_node", "name": "camera_watch_node",
            "parameters": launch_params(config, ckpt)}


LAUNCH_ARG = ("camera_watch", "", "true: also start camera_watch_node, the frozen-camera detector (the hand moved, "
              "the image did not: alarm on /lara/monitor_alarm); '' = the config's lara_bringup.camera_watch")


def launch_actions(context, config_path: str) -> list:
    """A launch file's more_actions: camera_watch_node's launch_ros Node when the `camera_watch`
    launch argument (else the config) switches it on, with the `checkpoint` argument's checkpoint."""
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node
    get = lambda n: LaunchConfiguration(n).perform(context)  # noqa: E731
    spec = launch_spec(config_path, switch=get("camera_watch"), checkpoint=get("checkpoint"))
    if spec is None:
        return []
    return [Node(package=spec["package"], executable=spec["executable"], name=spec["name"],
                 parameters=[spec["parameters"]], output="screen", emulate_tty=True)]


def main(args=None) -> None:
    rclpy.init(args=args)
    spin_node(build_or_exit(CameraWatchNode, "camera_watch_node"))


if __name__ == "__main__":
    main()

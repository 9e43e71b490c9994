"""The LAM fault monitor on the robot (issue 25): policy_node feeds it the surprise of every
executed chunk (1 - cos between the LAM latent of what happened and the one predicted for the
chunk; core/monitor.py); after `debounce` surprises in a row above the threshold (the
checkpoint's monitor.json, from `lara eval sim --monitor --calibrate-monitor`) it raises an alarm:
diagnostic_msgs/DiagnosticArray on /diagnostics (ERROR; OK or WARN for every other value, so
rqt_robot_monitor and dashboards show it live) and a std_msgs/String on /lara/monitor_alarm with
the reason, which command_node turns into a hold when `hold_on_monitor_alarm` is set.

`MonitorOutputs` is what every run-time monitor publishes that way (this one and
camera_watch_node's camera-motion detector): one DiagnosticStatus of its own name per judgement,
the alarm reason on the alarm topic."""
from __future__ import annotations

import math

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from std_msgs.msg import String

from lara_policy.core.monitor import Debounce, MonitorConfig
from lara_policy.ros import topics

NAME = "lara: LAM fault monitor"


class MonitorOutputs:
    """A run-time monitor's outputs: `status` publishes one DiagnosticStatus (its `name`, the
    model as hardware_id) on /diagnostics, `alarm` the reason on the alarm topic (and logs it)."""

    def __init__(self, node, name: str, hardware_id: str, alarm_topic: str = topics.MONITOR_ALARM,
                 diagnostics_topic: str = topics.DIAGNOSTICS):
        self.node, self.name, self.hardware_id = node, name, hardware_id
        self.alarms = 0
        self.diag_pub = node.create_publisher(DiagnosticArray, diagnostics_topic, 10)
        self.alarm_pub = node.create_publisher(String, alarm_topic, 10)

    def alarm(self, reason: str) -> None:
        self.alarms += 1
        self.alarm_pub.publish(String(data=reason))
        self.node.get_logger().error(reason)

    def status(self, level: int, message: str, values: list[tuple[str, str]]) -> None:
        arr = DiagnosticArray()
        arr.header.stamp = self.node.get_clock().now().to_msg()
        arr.status = [DiagnosticStatus(level=level, name=self.name, message=message, hardware_id=self.hardware_id,
                                       values=[KeyValue(key=k, value=v) for k, v in values])]
        self.diag_pub.publish(arr)


class FaultMonitorPublisher:
    def __init__(self, node, checkpoint: str, threshold: float, debounce: int, model_id: str):
        cfg = MonitorConfig.load(checkpoint) if checkpoint else None
        self.threshold = threshold if threshold >= 0 else (cfg.threshold if cfg else float("nan"))
        self.debounce = debounce if debounce > 0 else (cfg.debounce if cfg else 2)
        self.enabled = not math.isnan(self.threshold)
        self.node, self.model_id = node, model_id
        self._debounce = Debounce(self.threshold, self.debounce)
        self.out = MonitorOutputs(node, NAME, model_id)

    @property
    def alarms(self) -> int:
        return self.out.alarms

    def update(self, surprise: float, stamp_s: float) -> str:
        """One executed chunk's surprise; returns the alarm reason ('' when none)."""
        if not self.enabled or math.isnan(surprise):
            return ""
        alarm = self._debounce.score(surprise)
        reason = ""
        level, message = DiagnosticStatus.OK, "the world answers the commands as predicted"
        if alarm:
            reason = (f"LAM monitor: the world is not answering the commands (surprise {surprise:.3f} > "
                      f"{self.threshold:.3f} for {self.debounce} chunks in a row: jammed arm, frozen camera, "
                      "object moved?)")
            level, message = DiagnosticStatus.ERROR, reason
            self.out.alarm(reason)
        elif self._debounce.run > 0:
            level, message = DiagnosticStatus.WARN, f"surprise {surprise:.3f} above {self.threshold:.3f}"
        self.out.status(level, message, [("surprise", f"{surprise:.4f}"), ("threshold", f"{self.threshold:.4f}"),
                                         ("debounce", str(self.debounce)), ("alarms", str(self.alarms)),
                                         ("chunk_stamp", f"{stamp_s:.3f}")])
        return reason

    def reset(self) -> None:
        self._debounce.reset()

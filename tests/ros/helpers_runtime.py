"""Test helpers for the command and recorder node tests (real rclpy, real DDS).

RosHarness: the one harness of the ROS tests (the `harness` and `spinner` fixtures of conftest.py
both use it): a SingleThreadedExecutor spinning in a thread (as `lara bringup` does: rclpy's
MultiThreadedExecutor busy-wakes its pool threads and starved the other threads on a 2-core CI
machine), on a fresh private rclpy Context or a given one; callbacks that raised are recorded.
wait_for: poll a predicate until it holds (tests wait for the event itself, never a fixed sleep).
Publisher scripts run as separate PROCESSES (inheriting os.environ, so the same ROS_DOMAIN_ID)
when a test is about processes dying.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
import traceback

import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor


class RosHarness:
    """The one ROS test harness: an executor thread spinning the added nodes, recording the
    traceback of every callback that raised in `errors` (the `harness` and `spinner` fixtures
    fail the test when it is not empty) and spinning on afterwards.

    context=None: a fresh private rclpy Context, initialised here and shut down by close().
    A given context (e.g. rclpy's default one, initialised by the `ros` fixture) is used as is
    and left running."""

    def __init__(self, context: Context | None = None):
        self._owns_context = context is None
        if context is None:
            context = Context()
            rclpy.init(context=context)
        self.context = context
        self.executor = SingleThreadedExecutor(context=self.context)
        self.nodes = []
        self.errors: list[str] = []
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self):
        while True:
            try:
                self.executor.spin()
                return
            except Exception:  # noqa: BLE001 - a callback raised: record it, keep spinning
                if not self.context.ok():
                    return          # a shutdown race, not a callback error
                traceback.print_exc()
                self.errors.append(traceback.format_exc())

    def add(self, node):
        self.nodes.append(node)
        self.executor.add_node(node)
        return node

    def node(self, name: str, **kw):
        return self.add(rclpy.create_node(name, context=self.context, **kw))

    def close(self):
        self.executor.shutdown(timeout_sec=2.0)
        self._thread.join(timeout=5.0)
        for n in reversed(self.nodes):
            try:
                n.destroy_node()
            except Exception:  # noqa: BLE001
                pass
        if self._owns_context and self.context.ok():
            rclpy.shutdown(context=self.context)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def wait_for(pred, timeout: float, period: float = 0.02) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(period)
    return bool(pred())


def call_service(harness: RosHarness, node, srv_type, name: str, request, timeout: float = 10.0):
    cli = node.create_client(srv_type, name)
    try:
        if not cli.wait_for_service(timeout_sec=timeout):
            raise TimeoutError(f"service {name} not available")
        fut = cli.call_async(request)
        if not wait_for(fut.done, timeout):
            raise TimeoutError(f"service {name} did not answer")
        return fut.result()
    finally:
        node.destroy_client(cli)


def spawn_python(code: str, *args: str) -> subprocess.Popen:
    """Run a Python snippet as a separate process with this process's environment."""
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], env=dict(os.environ),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


class OutputReader:
    """Collects a subprocess's output lines on a thread (so its pipe never fills)."""

    def __init__(self, proc: subprocess.Popen):
        self.proc, self.lines = proc, []
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def text(self) -> str:
        return "\n".join(self.lines)


def kill(proc: subprocess.Popen | None, sig: int = 9) -> str:
    """Kill (default SIGKILL) and reap a subprocess; returns its output."""
    if proc is None:
        return ""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return ""


# A stand-in "policy node" process: publishes constant-action chunks at `rate` Hz, stamped now.
CHUNK_PUBLISHER = """
import sys, time, rclpy
import numpy as np
from lara_policy.ros.codec import chunk_to_msg
from lara_msgs.msg import ActionChunk
rate, horizon, dt = float(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
rclpy.init()
node = rclpy.create_node("fake_policy")
pub = node.create_publisher(ActionChunk, "/lara/action_chunk", 10)
actions = np.tile(np.array([[0.5, 0.0, 0.0, 0.0]], np.float32), (horizon, 1))
n = 0
while True:
    t = node.get_clock().now().nanoseconds * 1e-9
    pub.publish(chunk_to_msg(actions, t, dt, "ee_delta_xyz_gripper", "reach", "fake-model"))
    n += 1
    if n == 1:
        print("publishing", flush=True)
    time.sleep(1.0 / rate)
"""

# A camera process: publishes WxH rgb8 frames at `rate` Hz (reliable, depth 2), counting them.
CAMERA_PUBLISHER = """
import sys, time, rclpy
import numpy as np
from rclpy.qos import QoSProfile, ReliabilityPolicy, HistoryPolicy
from sensor_msgs.msg import Image
from lara_policy.ros.codec import rgb_to_image_msg
rate, w, h = float(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
limit = int(sys.argv[4]) if len(sys.argv) > 4 else 0
rclpy.init()
node = rclpy.create_node("fake_camera")
qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=2, reliability=ReliabilityPolicy.RELIABLE)
pub = node.create_publisher(Image, "/camera/image_raw", qos)
rgb = np.zeros((h, w, 3), np.uint8)
msg = rgb_to_image_msg(rgb, 0.0)
n, t_next = 0, time.monotonic()
while not limit or n < limit:
    msg.header.stamp = node.get_clock().now().to_msg()
    msg.header.frame_id = str(n)
    pub.publish(msg)
    n += 1
    if n % 30 == 0:
        print(f"sent {n}", flush=True)
    t_next += 1.0 / rate
    time.sleep(max(0.0, t_next - time.monotonic()))
print(f"sent {n} done", flush=True)
time.sleep(2.0)
"""


# recorder_node as its own process: argv[1] = output_dir, argv[2] = flush_period_s
RECORDER_PROCESS = """
import sys
from lara_policy.ros.recorder_node import main
main(["recorder", "--ros-args", "-p", "output_dir:=" + sys.argv[1], "-p", "flush_period_s:=" + sys.argv[2],
      "-p", "topics:=['/camera/image_raw:sensor_msgs/msg/Image', '/lara/action_chunk']",
      "-p", "min_free_disk_gb:=0.5"])
"""

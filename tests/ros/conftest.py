"""Helpers for the real-rclpy graph tests: an rclpy lifetime per test, a background
executor thread, a wait-until helper, and a clearly named TEST DOUBLE policy.

Everything runs over real DDS on loopback in the ROS_DOMAIN_ID chosen by tests/conftest.py.
"""
from __future__ import annotations

import threading
import traceback

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy not installed (run scripts/setup.sh, source env.sh)")
pytest.importorskip("lara_msgs.msg", reason="lara_msgs not built (run scripts/setup.sh, source env.sh)")

from graph_helpers import build_tiny_checkpoint  # noqa: E402
from helpers_runtime import RosHarness  # noqa: E402

@pytest.fixture
def ros():
    """rclpy initialised for one test (default context), shut down afterwards."""
    rclpy.init()
    yield rclpy
    if rclpy.ok():
        rclpy.shutdown()


class Spinner:
    """Spin nodes on a background thread; `close()` joins it. One executor thread, as
    `lara bringup` does: rclpy's MultiThreadedExecutor busy-wakes and starves the other
    threads on a 2-core machine (see docs/runtime.md)."""

    def __init__(self, *nodes):
        from rclpy.executors import SingleThreadedExecutor
        self.executor = SingleThreadedExecutor()
        self.nodes = list(nodes)
        self.errors: list[str] = []          # tracebacks of callbacks that raised (the fixture fails on them)
        for n in nodes:
            self.executor.add_node(n)
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self):
        try:
            self.executor.spin()
        except Exception:  # noqa: BLE001 - a callback raised (or a shutdown race): say so
            if rclpy.ok():
                traceback.print_exc()
                self.errors.append(traceback.format_exc())

    def add(self, node):
        self.nodes.append(node)
        self.executor.add_node(node)

    def close(self):
        self.executor.shutdown(timeout_sec=2.0)
        self.thread.join(timeout=5.0)
        for n in reversed(self.nodes):
            try:
                n.destroy_node()
            except Exception:  # noqa: BLE001
                pass


@pytest.fixture
def spinner(ros):
    made = []

    def make(*nodes):
        s = Spinner(*nodes)
        made.append(s)
        return s

    yield make
    errors = [e for s in made for e in s.errors]   # before close: a shutdown race is not a test failure
    for s in made:
        s.close()
    assert not errors, "a callback raised while the test ran:\n" + "\n".join(errors)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    return build_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny")


@pytest.fixture
def harness():
    """A private rclpy context with a background executor thread (helpers_runtime.RosHarness)."""
    h = RosHarness()
    try:
        yield h
    finally:
        errors = list(h.errors)                    # before close: a shutdown race is not a test failure
        h.close()
    assert not errors, "a callback raised while the test ran:\n" + "\n".join(errors)

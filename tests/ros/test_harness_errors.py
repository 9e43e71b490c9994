"""The ROS test harnesses fail a test when a callback raised (review tests.md 1c): the errors are
collected, and the fixtures assert the list is empty at teardown."""
import time

import pytest

from conftest import Spinner
from helpers_runtime import RosHarness

pytestmark = pytest.mark.ros


def _wait(pred, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end and not pred():
        time.sleep(0.02)
    return pred()


def _boom():
    raise RuntimeError("callback boom")


def test_ros_harness_collects_a_raising_callback():
    h = RosHarness()
    try:
        n = h.node("lara_test_boom")
        n.create_timer(0.01, _boom)
        assert _wait(lambda: h.errors), "the raising timer callback was not recorded"
        assert "callback boom" in h.errors[0]
    finally:
        h.close()


def test_spinner_collects_a_raising_callback(ros):
    node = ros.create_node("lara_test_boom_spinner")
    node.create_timer(0.01, _boom)
    s = Spinner(node)
    try:
        assert _wait(lambda: s.errors), "the raising timer callback was not recorded"
        assert "callback boom" in s.errors[0]
    finally:
        s.close()

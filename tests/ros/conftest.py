"""Fixtures of the real-rclpy graph tests: an rclpy lifetime per test (`ros`), the one harness
(helpers_runtime.RosHarness: a background executor thread that records raising callbacks) as
`harness` (private context) and `spinner` (default context), both failing the test when a
callback raised, and the session's tiny checkpoint.

Everything runs over real DDS on loopback in the ROS_DOMAIN_ID chosen by tests/conftest.py.
"""
from __future__ import annotations

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


class Spinner(RosHarness):
    """RosHarness on rclpy's default context (initialised by the `ros` fixture), for nodes
    created without a context (`rclpy.create_node`, `PolicyNode(...)`), spinning `nodes`.
    Not a second harness: the executor thread, error recording and teardown are RosHarness's."""

    def __init__(self, *nodes):
        super().__init__(context=rclpy.utilities.get_default_context())
        for n in nodes:
            self.add(n)


def _close_and_check(harnesses) -> None:
    """Close every harness; fail the test when a callback raised while it ran."""
    errors = [e for h in harnesses for e in h.errors]   # before close: a shutdown race is not a test failure
    for h in harnesses:
        h.close()
    assert not errors, "a callback raised while the test ran:\n" + "\n".join(errors)


@pytest.fixture
def spinner(ros):
    """`spinner(*nodes)` spins nodes of the default context on a RosHarness thread."""
    made = []

    def make(*nodes):
        s = Spinner(*nodes)
        made.append(s)
        return s

    yield make
    _close_and_check(made)


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
        _close_and_check([h])

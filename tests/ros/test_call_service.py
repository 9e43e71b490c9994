"""call_service (ros/bringup.py), the one retry helper for service calls made from outside a
node's callbacks (Graph.call, lara bench recorder): a lost answer is asked for again, a
service that never answers is a clear error, and a failed call raises instead of returning."""
from __future__ import annotations

import threading

import pytest
from rclpy.task import Future

from lara_policy.ros.bringup import BringupError, call_service


class FlakyClient:
    """The rclpy Client surface call_service uses. Answers request k with `answers[k]` (None: the
    answer is lost, as when the server replies before DDS has matched the response reader)."""

    def __init__(self, answers, delay_s: float = 0.0):
        self.answers = list(answers)
        self.delay_s = delay_s
        self.requests = []
        self.removed = []

    def call_async(self, request):
        fut = Future()
        k = len(self.requests)
        self.requests.append(request)
        answer = self.answers[k] if k < len(self.answers) else None
        if isinstance(answer, Exception):
            fut.set_exception(answer)
        elif answer is not None:
            threading.Timer(self.delay_s, fut.set_result, args=(answer,)).start()
        return fut

    def remove_pending_request(self, fut):
        self.removed.append(fut)


def test_lost_answer_is_asked_for_again():
    cli = FlakyClient([None, None, "ok"], delay_s=0.05)
    assert call_service(cli, "req", "/x", timeout=1.5, attempts=3) == "ok"
    assert cli.requests == ["req"] * 3
    assert len(cli.removed) == 2          # the two unanswered requests are dropped, not leaked


def test_no_answer_is_a_clear_error_after_all_attempts():
    cli = FlakyClient([None, None])
    with pytest.raises(BringupError, match=r"/x did not answer within 0.2 s \(2 tries\)"):
        call_service(cli, "req", "/x", timeout=0.2, attempts=2)
    assert len(cli.requests) == 2


def test_failed_call_raises():
    cli = FlakyClient([ValueError("boom")])
    with pytest.raises(BringupError, match="service /x failed: boom"):
        call_service(cli, "req", "/x", timeout=1.0, attempts=2)
    assert len(cli.requests) == 1          # a failure is an answer: not retried

"""policy_node's surprise pairs the frames the LAM was trained on: the frame at the chunk's
stamp and the one C control periods later (C = the LAM's chunk offset), whatever the replan
period, and also at N = 1 (no dynamics check)."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from graph_helpers import GoalSeekingTestPolicy
from helpers_runtime import wait_for
from test_policy_node import Feeder, _policy_node

pytestmark = pytest.mark.ros

C = 6            # the LAM's frame offset in control periods (the replan period is 2)


class FrameGapPolicy(GoalSeekingTestPolicy):
    """TEST DOUBLE: a LAM offset C (config.offset) and a predicted latent at any N; its
    `surprise` returns the numbers of the two camera frames it was given (the test writes
    each frame's number into its first pixel)."""

    def __init__(self):
        super().__init__()
        self.config = SimpleNamespace(offset=C)

    def predict_chunk(self, obs, num_candidates: int = 1, seed=None):
        pred = super().predict_chunk(obs, num_candidates, seed)
        pred.info["predicted_latent"] = np.zeros((2, 3), np.float32)
        return pred

    def surprise(self, predicted_latent, image_t, image_tC) -> float:
        frame = lambda im: 256 * int(im[0, 0, 0]) + int(im[0, 0, 1])     # noqa: E731 (see `record`)
        return float(100_000 * frame(image_t) + frame(image_tC))        # both frame numbers


@pytest.mark.parametrize("n", [1, 4])
def test_surprise_pairs_t_and_t_plus_C(ros, spinner, n):
    node = _policy_node(FrameGapPolicy(), num_candidates=n, replan_period_steps=2)
    feeder = Feeder(ros)
    stamps = []                                      # frame number -> header stamp, s
    publish = feeder._img.publish

    def record(msg):                                 # number every frame in its first pixel
        n = len(stamps)
        data = bytearray(msg.data)
        data[0], data[1] = (n >> 8) & 255, n & 255
        msg.data = bytes(data)
        stamps.append(msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec)
        publish(msg)
    feeder._img.publish = record
    spinner(node, feeder.node)
    finite = lambda: [k for k in feeder.checks if math.isfinite(k.surprise)]   # noqa: E731
    assert wait_for(lambda: len(finite()) >= 5, 30.0), (len(feeder.chunks), len(feeder.checks), node.surprises[-5:])
    assert all(k.num_candidates == n for k in feeder.checks) and all(k.accepted for k in feeder.checks)
    assert math.isnan(feeder.checks[0].surprise), "nothing has run C periods yet"
    # the two frames are C periods apart by their stamps (the later one may come half a period
    # early or up to C/4 late); not the replan period (2): the bug paired consecutive predictions
    period = 1 / 30
    gaps = [stamps[int(k.surprise) % 100_000] - stamps[int(k.surprise) // 100_000] for k in finite()]
    assert all((C - 0.5) * period - 1e-3 <= g <= 1.25 * C * period + 1e-3 for g in gaps), (gaps, C * period)
    lags = [lag for _, lag, v in node.surprises if math.isfinite(v)]
    assert all(-0.5 * period - 1e-6 <= lag <= 0.25 * C * period + 1e-6 for lag in lags), lags
    # every value is reported once: no more finite surprises than chunks that have finished C periods
    assert len(finite()) <= len(node.surprises)

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
    `surprise` returns how many camera frames apart the two images are (the Feeder writes the
    frame counter into every pixel)."""

    def __init__(self):
        super().__init__()
        self.config = SimpleNamespace(offset=C)

    def predict_chunk(self, obs, num_candidates: int = 1, seed=None):
        pred = super().predict_chunk(obs, num_candidates, seed)
        pred.info["predicted_latent"] = np.zeros((2, 3), np.float32)
        return pred

    def surprise(self, predicted_latent, image_t, image_tC) -> float:
        return float(int(image_tC[0, 0, 0]) - int(image_t[0, 0, 0]))


@pytest.mark.parametrize("n", [1, 4])
def test_surprise_pairs_t_and_t_plus_C(ros, spinner, n):
    node = _policy_node(FrameGapPolicy(), num_candidates=n, replan_period_steps=2)
    feeder = Feeder(ros)
    spinner(node, feeder.node)
    finite = lambda: [k for k in feeder.checks if math.isfinite(k.surprise)]   # noqa: E731
    assert wait_for(lambda: len(finite()) >= 5, 30.0), (len(feeder.chunks), len(feeder.checks), node.surprises[-5:])
    assert all(k.num_candidates == n for k in feeder.checks) and all(k.accepted for k in feeder.checks)
    assert math.isnan(feeder.checks[0].surprise), "nothing has run C periods yet"
    # frame pairs C periods apart (the frame may come half a period early or up to C/4 late);
    # the replan period (2) is NOT the pair (the bug: consecutive predictions' frames)
    gaps = [k.surprise for k in finite()]
    assert all(C - 1 <= g <= C + 2 for g in gaps), gaps
    period = 1 / 30
    lags = [lag for _, lag, v in node.surprises if math.isfinite(v)]
    assert all(-0.5 * period - 1e-6 <= lag <= 0.25 * C * period + 1e-6 for lag in lags), lags
    # every value is reported once: no more finite surprises than chunks that have finished C periods
    assert len(finite()) <= len(node.surprises)

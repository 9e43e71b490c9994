"""policy_node's deployment options (issue 24): `runtime` onnxruntime runs the exported graphs,
`rtc` samples each chunk guided toward what the executing chunk still does during the inference
delay (the real LaraPolicy keeps those actions), and the per-chunk timings `lara bench ros`
splits camera -> chunk into."""
from __future__ import annotations

import math

import numpy as np
import pytest

from helpers_runtime import wait_for
from test_policy_node import Feeder, _policy_node

from lara_policy.ros.chunk_timing import PARTS
from lara_policy.ros.codec import msg_to_chunk, stamp_to_sec

pytestmark = pytest.mark.ros


def test_runtime_onnxruntime_publishes_chunks_and_records_timings(ros, spinner, tiny_checkpoint):
    node = _policy_node(checkpoint=str(tiny_checkpoint), runtime="onnxruntime", replan_period_steps=2)
    assert node.policy.runtime == "onnxruntime" and node.policy.onnx is not None
    feeder = Feeder(ros)
    spinner(node, feeder.node)
    assert wait_for(lambda: len(feeder.chunks) >= 4, 60.0), (dict(node.rejections), node.last_rejection)
    acts = msg_to_chunk(feeder.chunks[-1]).actions
    assert acts.shape == (16, 4) and np.all(np.isfinite(acts))
    # every published chunk has its parts; each is a duration (>= 0), and they add up to at most
    # the chunk's arrival at the feeder minus its stamp
    s = node.timings.summary()
    for part in PARTS:
        assert math.isfinite(s[f"{part}_p50_ms"]) and s[f"{part}_p50_ms"] >= 0, (part, s)
    assert s["model_p50_ms"] > 0 and s["cam_to_publish_p50_ms"] >= s["model_p50_ms"]
    parts = node.timings.parts_ms()
    assert len(parts["model"]) == node.chunks_published


def test_runtime_is_checked_at_start(ros, tiny_checkpoint):
    with pytest.raises(ValueError, match="runtime must be one of torch, onnxruntime"):
        _policy_node(checkpoint=str(tiny_checkpoint), runtime="tensorflow")


@pytest.mark.parametrize("rtc", [True, False])
def test_rtc_keeps_the_executing_chunk_during_the_delay(ros, spinner, tiny_checkpoint, rtc):
    """With the real (random-init) LaraPolicy: each new chunk's first rtc_delay_steps actions are
    the previous chunk's actions at the new chunk's first step (weight 1 = kept); without rtc
    they are not (an untrained model's chunks are noise)."""
    node = _policy_node(checkpoint=str(tiny_checkpoint), rtc=rtc, rtc_delay_steps=3, replan_period_steps=4, seed=7)
    feeder = Feeder(ros)
    spinner(node, feeder.node)
    assert wait_for(lambda: len(feeder.chunks) >= 4, 60.0), (dict(node.rejections), node.last_rejection)
    gaps = []
    chunks = list(feeder.chunks)
    for a, b in zip(chunks, chunks[1:]):
        start = int(round((stamp_to_sec(b.header.stamp) - stamp_to_sec(a.header.stamp)) * 30.0))
        prev, new = msg_to_chunk(a).actions, msg_to_chunk(b).actions
        if start + 3 <= len(prev):
            gaps.append(float(np.abs(new[:3] - prev[start:start + 3]).max()))
    assert gaps, "no consecutive chunks overlapped"
    if rtc:
        assert max(gaps) < 1e-3, gaps
    else:
        assert min(gaps) > 1e-2, gaps

"""policy_node input bounds (issue 13; blackbox F6, F7 and what the DDS fuzzer found), real DDS:
- F7: a 4000x3000 frame is refused before decoding (max_image_pixels, default 2.5 MP), with a line
  that names the parameter; chunks go on from the normal frames;
- F6: a 100,000-character instruction is refused (max_instruction_chars, default 500) on the topic
  and the service; the previous instruction stays, the language model never embeds it (the real
  tiny checkpoint's text cache), chunks never carry it;
- malformed frames: data longer than step x height, a zero stamp; non-UTF-8 instruction bytes;
- a burst of 50 concurrent reset calls is answered (the default service queue of 10 lost some)."""
from __future__ import annotations

import struct
import time

import pytest
from builtin_interfaces.msg import Time

from graph_helpers import GoalSeekingTestPolicy
from helpers_runtime import wait_for
from test_policy_node import Feeder, _policy_node

pytestmark = pytest.mark.ros


def _stamps(chunks):
    return {(c.header.stamp.sec, c.header.stamp.nanosec) for c in chunks}


def _send_image(feeder, h, w, stamp, encoding="rgb8", step=None, extra=0, publish=None):
    from sensor_msgs.msg import Image
    step = w * 3 if step is None else step
    img = Image(height=h, width=w, encoding=encoding, step=step, data=bytes(step * h + extra))
    img.header.stamp = stamp
    (publish or feeder._img.publish)(img)


def test_huge_frame_refused_by_default_with_the_parameter_named(ros, spinner, capfd):
    policy = GoalSeekingTestPolicy()
    node = _policy_node(policy, replan_period_steps=1)
    assert node.get_parameter("max_image_pixels").value == 2_500_000
    feeder = Feeder(ros)
    spinner(node, feeder.node)
    assert wait_for(lambda: len(feeder.chunks) >= 1, 15.0), dict(node.rejections)
    stamp = Time(sec=int(time.time()), nanosec=123_456_789)    # a stamp no normal frame has
    _send_image(feeder, 3000, 4000, stamp)
    assert wait_for(lambda: node.rejections.get("image:size", 0) >= 1, 20.0), dict(node.rejections)
    n = len(feeder.chunks)
    assert wait_for(lambda: len(feeder.chunks) >= n + 2, 15.0), "chunks must go on from the normal frames"
    assert (stamp.sec, stamp.nanosec) not in _stamps(feeder.chunks)
    assert all(o is not None for o in [policy.last_obs]) and policy.last_obs.images["corner4"].shape == (64, 64, 3)
    err = capfd.readouterr().err
    assert "image 4000x3000 (12.0 MP) has more than max_image_pixels 2500000" in err, err[-2000:]


@pytest.mark.parametrize("case", ["data_longer_than_step_x_height", "zero_stamp"])
def test_malformed_frame_refused_and_named(ros, spinner, capfd, case):
    policy = GoalSeekingTestPolicy()
    node = _policy_node(policy, replan_period_steps=1)
    feeder = Feeder(ros)
    send = feeder._img.publish
    feeder._img.publish = lambda msg: None          # only the frames this test sends
    spinner(node, feeder.node)
    time.sleep(0.3)
    if case == "zero_stamp":
        _send_image(feeder, 64, 64, Time(sec=0, nanosec=0), publish=send)
        key, text = "image:stamp", "header.stamp is zero (the driver does not stamp its messages)"
    else:
        _send_image(feeder, 64, 64, feeder.node.get_clock().now().to_msg(), extra=17, publish=send)
        key, text = "image:data", "image data is 12305 bytes but step x height = 192 x 64 = 12288"
    assert wait_for(lambda: node.rejections.get(key, 0) >= 1, 10.0), dict(node.rejections)
    time.sleep(0.3)
    assert policy.calls == 0 and feeder.chunks == []
    assert text in capfd.readouterr().err


def _cdr_string(raw: bytes) -> bytes:
    body = struct.pack("<I", len(raw) + 1) + raw + b"\x00"
    return b"\x00\x01\x00\x00" + body + b"\x00" * (-len(body) % 4)


def test_huge_and_undecodable_instructions_refused_with_a_real_checkpoint(ros, spinner, capfd, tiny_checkpoint):
    from std_msgs.msg import String

    from lara_msgs.srv import SetInstruction

    node = _policy_node(None, checkpoint=str(tiny_checkpoint), device="cpu", replan_period_steps=2,
                        instruction="move the gripper to the target")
    feeder = Feeder(ros)
    pub = feeder.node.create_publisher(String, "/lara/instruction", 10)
    spinner(node, feeder.node)
    assert wait_for(lambda: len(feeder.chunks) >= 2, 60.0), (dict(node.rejections), node.last_rejection)
    huge = "reach the goal " * 6667                           # 100,005 characters (100,004 stripped)
    assert wait_for(lambda: pub.get_subscription_count() >= 1, 10.0)
    pub.publish(String(data=huge))
    pub.publish(_cdr_string(b"reach \xff\xfe\xc3\x28 goal"))   # not UTF-8 (raw CDR)
    assert wait_for(lambda: node.rejections.get("instruction:too_long", 0) >= 1
                    and node.rejections.get("instruction:utf8", 0) >= 1, 10.0), dict(node.rejections)
    cli = feeder.node.create_client(SetInstruction, "/lara/set_instruction")
    assert cli.wait_for_service(timeout_sec=5.0)
    fut = cli.call_async(SetInstruction.Request(instruction=huge))
    assert wait_for(fut.done, 10.0)
    assert fut.result().success is False and "max_instruction_chars 500" in fut.result().message
    assert node.instruction == "move the gripper to the target"
    n = len(feeder.chunks)
    assert wait_for(lambda: len(feeder.chunks) >= n + 2, 30.0), node.last_rejection
    assert all(c.instruction == "move the gripper to the target" for c in feeder.chunks)
    # the language model never saw it: no embedding computed or cached for a refused text
    assert max(len(k) for k in node.policy._text) < 500
    err = capfd.readouterr().err
    assert "instruction of 100004 characters refused (> max_instruction_chars 500" in err, err[-2000:]
    assert "not valid UTF-8" in err and "keeping 'move the gripper to the target'" in err


def test_burst_of_concurrent_reset_calls_is_answered(ros, spinner):
    from std_srvs.srv import Trigger

    policy = GoalSeekingTestPolicy()
    node = _policy_node(policy)
    feeder = Feeder(ros)
    spinner(node, feeder.node)
    cli = feeder.node.create_client(Trigger, "/policy_node/reset")
    assert cli.wait_for_service(timeout_sec=5.0)
    futs = [cli.call_async(Trigger.Request()) for _ in range(50)]
    assert wait_for(lambda: all(f.done() for f in futs), 20.0), f"{sum(f.done() for f in futs)} of 50 answered"
    assert all(f.result().success for f in futs) and policy.resets >= 50
    n = len(feeder.chunks)
    assert wait_for(lambda: len(feeder.chunks) >= n + 1, 15.0), node.last_rejection


def test_compressed_decompression_bomb_refused_before_decoding(ros, spinner, capfd):
    """A 40 kB PNG that declares 4000x3000 (36 MB decoded; 20000x20000 would be 1.2 GB) is refused
    from its header, before OpenCV allocates it; a small compressed frame still gives a chunk."""
    import cv2
    import numpy as np
    from sensor_msgs.msg import CompressedImage

    policy = GoalSeekingTestPolicy()
    node = _policy_node(policy, replan_period_steps=1, image_topic="/camera/image_raw/compressed")
    assert node.image_transport == "compressed"
    feeder = Feeder(ros)                      # state (its raw frames go to a topic the node ignores)
    pub = feeder.node.create_publisher(CompressedImage, "/camera/image_raw/compressed", 10)
    spinner(node, feeder.node)
    assert wait_for(lambda: pub.get_subscription_count() >= 1, 10.0)
    decoded = []
    import lara_policy.ros.policy_node as pn
    real = pn.compressed_msg_to_rgb
    pn.compressed_msg_to_rgb = lambda m: decoded.append(len(m.data)) or real(m)
    try:
        for shape in [(3000, 4000, 3), (64, 64, 3)]:
            ok, buf = cv2.imencode(".png", np.zeros(shape, np.uint8))
            msg = CompressedImage(format="rgb8; png compressed bgr8", data=buf.tobytes())
            msg.header.stamp = feeder.node.get_clock().now().to_msg()
            pub.publish(msg)
            if shape[0] == 3000:
                assert wait_for(lambda: node.rejections.get("image:size", 0) >= 1, 10.0), dict(node.rejections)
        assert wait_for(lambda: policy.calls >= 1, 10.0), (dict(node.rejections), node.last_rejection)
    finally:
        pn.compressed_msg_to_rgb = real
    assert len(decoded) == 1, f"the bomb reached the decoder: {decoded}"
    assert policy.last_obs.images["corner4"].shape == (64, 64, 3)
    assert "compressed image declares 4000x3000 (12.0 MP), more than max_image_pixels 2500000" in capfd.readouterr().err

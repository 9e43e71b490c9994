"""policy_node with several cameras (image_topics) over real DDS: two topics in (one raw, one
compressed) give one chunk per paired observation, frames paired by stamp within
image_sync_slop_s; one camera stopping stops the chunks with the stale reason naming it; a
topic count that differs from the checkpoint's cameras is refused at start-up with both named.
Also the pairing (FrameSync) and the topic resolution on their own, and a real two-camera
LaraPolicy checkpoint through the node."""
from __future__ import annotations

import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
cv2 = pytest.importorskip("cv2")

from sensor_msgs.msg import CompressedImage, Image  # noqa: E402

from lara_policy.ros.cameras import FrameSync, resolve_cameras  # noqa: E402

from graph_helpers import GoalSeekingTestPolicy  # noqa: E402
from helpers_runtime import wait_for  # noqa: E402
from test_policy_node import Feeder, _policy_node  # noqa: E402

WRIST = "/camera/wrist/image_raw"
CAMS = ["corner4", "gripperPOV"]


def _two_camera_policy():
    policy = GoalSeekingTestPolicy()
    policy.meta.cameras = list(CAMS)
    policy.seen = []
    orig = policy.predict_chunk

    def predict(obs, num_candidates=1, seed=None):
        policy.seen.append(obs)
        return orig(obs, num_candidates, seed)
    policy.predict_chunk = predict
    return policy


class TwoCameraFeeder(Feeder):
    """Feeder with a second camera on `topic` (raw, or PNG-compressed: lossless), published right after
    the first with the first's stamp + offset_s; its pixels are 255 - the first camera's (so a paired
    observation has first + second == 255). `second_on` False: the second camera stops."""

    def __init__(self, rclpy, topic=WRIST, compressed=False, offset_s=0.0):
        super().__init__(rclpy)
        self.second_on, self.offset_s, self.compressed = True, offset_s, compressed
        from lara_policy.ros.params import qos_from_params
        self._img2 = self.node.create_publisher(CompressedImage if compressed else Image, topic,
                                                qos_from_params("reliable", 2))
        first = self._img.publish

        def both(msg):
            first(msg)
            if self.second_on:
                self._img2.publish(self._second(msg))
        self._img.publish = both

    def _second(self, img):
        rgb = 255 - np.frombuffer(bytes(img.data), np.uint8).reshape(img.height, img.width, 3)
        ns = img.header.stamp.sec * 10**9 + img.header.stamp.nanosec + int(self.offset_s * 1e9)
        if self.compressed:
            ok, buf = cv2.imencode(".png", rgb[:, :, ::-1])
            msg = CompressedImage(format="rgb8; png compressed bgr8", data=buf.tobytes())
        else:
            msg = Image(height=img.height, width=img.width, encoding="rgb8", step=img.width * 3, data=rgb.tobytes())
        msg.header.stamp.sec, msg.header.stamp.nanosec = ns // 10**9, ns % 10**9
        return msg


def _paired(obs) -> bool:
    a, b = (obs.images[c].astype(int) for c in CAMS)
    return bool(np.all(a + b == 255))


# -- ROS-free: pairing and topic resolution --------------------------------------------------------
def test_frame_sync_pairs_nearest_within_slop():
    fs = FrameSync(["a", "b"])
    assert fs.newest_set(0.05) is None and fs.missing() == ["a", "b"]
    for k in range(5):                       # a at 30 Hz, b 12 ms later
        fs.add("a", f"a{k}", k / 30)
        fs.add("b", f"b{k}", k / 30 + 0.012)
    s = fs.newest_set(0.02)
    assert s["a"] == ("a4", 4 / 30) and s["b"][0] == "b4"
    assert fs.newest_set(0.01) is None       # 12 ms apart > 10 ms slop: no set
    fs.add("a", "a5", 5 / 30)                # b's frame of that tick is not in yet
    assert fs.partner_may_come(0.02)
    assert fs.newest_set(0.02)["a"][0] == "a4"   # the newest complete set, not a mismatched one
    assert fs.partner_may_come(0.05)         # a slop over the period: b4 would pair, but b5 is due
    fs.add("b", "b5", 5 / 30 + 0.012)
    assert not fs.partner_may_come(0.02) and fs.newest_set(0.02)["b"][0] == "b5"
    fs.add("a", "a6", 6 / 30 + 0.010)        # b's frames 2 ms before a's: b6 (due 6/30 + 0.012) ...
    fs.add("b", "b6", 6 / 30 + 0.008)
    assert not fs.partner_may_come(0.02)     # ... is in, though older than a6: nothing to wait for
    fs.drop("b")
    assert fs.missing() == ["b"] and fs.newest_set(1.0) is None


def test_topics_mapped_to_checkpoint_cameras_in_order_and_counts_checked():
    ins = resolve_cameras(["/c/front/compressed", "/c/wrist"], "/camera/image_raw", "", CAMS)
    assert [(c.name, c.topic, c.transport) for c in ins] == [("corner4", "/c/front/compressed", "compressed"),
                                                             ("gripperPOV", "/c/wrist", "raw")]
    one = resolve_cameras([], "/camera/image_raw", "", ["corner4"])      # the one-camera shorthand
    assert [(c.name, c.topic, c.transport) for c in one] == [("corner4", "/camera/image_raw", "raw")]
    with pytest.raises(ValueError, match=r"image_topics lists 1 topic\(s\) \['/a'\] but the checkpoint 'm2' "
                                         r"reads 2 camera\(s\) \['corner4', 'gripperPOV'\]"):
        resolve_cameras(["/a"], "/camera/image_raw", "", CAMS, model_id="m2")
    with pytest.raises(ValueError, match=r"reads 2 cameras .* only image_topic \(/camera/image_raw\)"):
        resolve_cameras([], "/camera/image_raw", "", CAMS)
    with pytest.raises(ValueError, match="lists a topic twice"):
        resolve_cameras(["/a", "/a"], "/x", "", CAMS)


# -- real DDS --------------------------------------------------------------------------------------
@pytest.mark.ros
@pytest.mark.parametrize("compressed", [False, True])
def test_two_image_topics_in_chunks_out_paired_by_stamp(ros, spinner, compressed):
    policy = _two_camera_policy()
    topic = WRIST + ("/compressed" if compressed else "")
    node = _policy_node(policy, image_topics=["/camera/image_raw", topic], replan_period_steps=2)
    assert [c.transport for c in node.camera_inputs] == ["raw", "compressed" if compressed else "raw"]
    feeder = TwoCameraFeeder(ros, topic=topic, compressed=compressed, offset_s=0.004)
    spinner(node, feeder.node)
    assert wait_for(lambda: len(feeder.chunks) >= 4, 15.0), (dict(node.rejections), node.last_rejection)
    seen = list(policy.seen)
    assert all(set(o.images) == set(CAMS) for o in seen)
    assert all(_paired(o) for o in seen), "a chunk was predicted from frames of different ticks"
    # the chunk is stamped with the first camera's frame (the observation's stamp)
    stamps = {round(o.stamp, 6) for o in seen}
    for c in feeder.chunks:
        assert round(c.header.stamp.sec + c.header.stamp.nanosec * 1e-9, 6) in stamps


@pytest.mark.ros
def test_frames_further_apart_than_the_slop_are_not_paired(ros, spinner):
    policy = _two_camera_policy()
    node = _policy_node(policy, image_topics=["/camera/image_raw", WRIST], image_sync_slop_s=0.005)
    feeder = TwoCameraFeeder(ros, offset_s=0.012)      # the wrist camera 12 ms behind, 5 ms slop
    spinner(node, feeder.node)
    assert wait_for(lambda: node.rejections.get("unsynced_images", 0) >= 5, 10.0), dict(node.rejections)
    assert feeder.chunks == [] and policy.seen == []
    assert "image_sync_slop_s" in node.last_rejection
    from rclpy.parameter import Parameter
    node.set_parameters([Parameter("image_sync_slop_s", value=0.02)])   # run-time settable
    assert wait_for(lambda: len(feeder.chunks) >= 2, 10.0), (dict(node.rejections), node.last_rejection)
    assert all(_paired(o) for o in policy.seen)


@pytest.mark.ros
def test_one_camera_stopped_stops_chunks_with_the_stale_reason(ros, spinner):
    policy = _two_camera_policy()
    node = _policy_node(policy, image_topics=["/camera/image_raw", WRIST], replan_period_steps=2,
                        max_image_age_s=0.5)
    feeder = TwoCameraFeeder(ros)
    spinner(node, feeder.node)
    assert wait_for(lambda: len(feeder.chunks) >= 3, 15.0), (dict(node.rejections), node.last_rejection)
    feeder.set(second_on=False)                        # the wrist camera dies; the scene camera goes on
    t_stop = feeder.node.get_clock().now().nanoseconds * 1e-9
    assert wait_for(lambda: node.rejections.get("stale_image", 0) >= 3, 10.0), dict(node.rejections)
    assert "camera 'gripperPOV'" in node.last_rejection and WRIST in node.last_rejection, node.last_rejection
    n = len(feeder.chunks)
    time.sleep(1.0)
    assert len(feeder.chunks) == n, "chunks went on without the wrist camera"
    # no observation taken after the camera stopped was acted on
    assert max(o.stamp for o in policy.seen) <= t_stop + 0.05
    feeder.set(second_on=True)                          # back: chunks resume
    assert wait_for(lambda: len(feeder.chunks) >= n + 2, 10.0), (dict(node.rejections), node.last_rejection)


@pytest.mark.ros
def test_camera_count_mismatch_is_a_clear_start_up_error(ros):
    policy = _two_camera_policy()
    with pytest.raises(ValueError, match=r"image_topics lists 3 topic\(s\) .* but the checkpoint "
                                         r"'test-double-goal-seeker' reads 2 camera\(s\) \['corner4', 'gripperPOV'\]"):
        _policy_node(policy, image_topics=["/a", "/b", "/c"])
    with pytest.raises(ValueError, match=r"reads 2 cameras \['corner4', 'gripperPOV'\] but only image_topic"):
        _policy_node(policy)                            # the one-camera shorthand for a two-camera checkpoint
    one = GoalSeekingTestPolicy()
    with pytest.raises(ValueError, match=r"lists 2 topic\(s\) .* reads 1 camera\(s\) \['corner4'\]"):
        _policy_node(one, image_topics=["/camera/image_raw", WRIST])


@pytest.mark.ros
def test_real_two_camera_checkpoint_publishes_chunks(ros, spinner, tmp_path):
    from graph_helpers import build_tiny_checkpoint
    from lara_policy.ros.policy_node import load_policy

    ckpt = build_tiny_checkpoint(tmp_path / "tiny2", cameras=CAMS)
    policy = load_policy(str(ckpt))
    assert policy.meta.cameras == CAMS
    node = _policy_node(policy, image_topics=["/camera/image_raw", WRIST + "/compressed"],
                        instruction=policy_instruction(ckpt))
    feeder = TwoCameraFeeder(ros, topic=WRIST + "/compressed", compressed=True)
    spinner(node, feeder.node)
    assert wait_for(lambda: len(feeder.chunks) >= 2, 30.0), (dict(node.rejections), node.last_rejection)
    assert node.rejections.get("policy_input", 0) == 0 and node.rejections.get("policy_error", 0) == 0
    assert feeder.chunks[0].model_id == policy.meta.model_id


def policy_instruction(ckpt) -> str:
    from lara_policy.sim.phrasings import TASK_PHRASINGS
    return TASK_PHRASINGS["reach-v3"][0]

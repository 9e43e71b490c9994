"""policy_node camera input: CompressedImage (image_transport 'compressed'), depth refused with a
clear message, and camera QoS that matches a best-effort publisher ('auto') or says loudly why
nothing arrives. Real DDS; cv_bridge is not importable here, so only its absence is tested."""
from __future__ import annotations

import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
cv2 = pytest.importorskip("cv2")

from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402

from lara_policy.ros.codec import ImageConversionError, compressed_msg_to_rgb, image_msg_to_rgb  # noqa: E402

from graph_helpers import GoalSeekingTestPolicy  # noqa: E402
from helpers_runtime import wait_for  # noqa: E402
from test_policy_node import Feeder, _policy_node  # noqa: E402

pytestmark = pytest.mark.ros


def _scene():
    rgb = np.zeros((48, 64, 3), np.uint8)
    rgb[:, :32] = (255, 0, 0)        # red left half
    rgb[:, 32:] = (0, 0, 255)        # blue right half
    return rgb


@pytest.mark.parametrize("ext,fmt", [(".png", "rgb8; png compressed bgr8"), (".jpg", "rgb8; jpeg compressed bgr8")])
def test_compressed_image_decodes_to_rgb(ext, fmt):
    rgb = _scene()
    ok, buf = cv2.imencode(ext, rgb[:, :, ::-1])          # image_transport encodes bgr8
    msg = CompressedImage(format=fmt, data=buf.tobytes())
    out = compressed_msg_to_rgb(msg)
    assert out.shape == (48, 64, 3) and out.dtype == np.uint8
    if ext == ".png":                                      # lossless
        assert np.array_equal(out, rgb)
    else:                                                  # lossy: compare away from the edge
        assert np.abs(out[:, :24].astype(int) - rgb[:, :24]).max() <= 40
        assert np.abs(out[:, 40:].astype(int) - rgb[:, 40:]).max() <= 40


def test_depth_and_undecodable_images_are_refused_clearly():
    with pytest.raises(ImageConversionError, match="depth image .*colour stream"):
        image_msg_to_rgb(Image(height=4, width=4, encoding="16UC1", step=8, data=bytes(32)))
    with pytest.raises(ImageConversionError, match="compressed depth"):
        compressed_msg_to_rgb(CompressedImage(format="16UC1; compressedDepth png", data=b"\x00" * 10))
    with pytest.raises(ImageConversionError, match="cannot decode"):
        compressed_msg_to_rgb(CompressedImage(format="jpeg", data=b"not a jpeg"))
    # yuv422 needs the ROS install's cv_bridge, absent here: the message says so
    with pytest.raises(ImageConversionError, match="cv_bridge"):
        image_msg_to_rgb(Image(height=2, width=2, encoding="yuv422", step=4, data=bytes(8)))


class CompressedFeeder(Feeder):
    """Feeder whose camera is image_transport's compressed topic (jpeg)."""

    def __init__(self, rclpy):
        super().__init__(rclpy)
        self._cimg = self.node.create_publisher(CompressedImage, "/camera/image_raw/compressed", 2)
        self._img.publish = self._publish_compressed

    def _publish_compressed(self, img):
        rgb = np.frombuffer(bytes(img.data), np.uint8).reshape(img.height, img.width, 3)
        ok, buf = cv2.imencode(".jpg", rgb[:, :, ::-1])
        msg = CompressedImage(format="rgb8; jpeg compressed bgr8", data=buf.tobytes())
        msg.header = img.header
        self._cimg.publish(msg)


def test_policy_node_runs_on_compressed_images(ros, spinner):
    policy = GoalSeekingTestPolicy()
    node = _policy_node(policy, image_topic="/camera/image_raw/compressed")
    assert node.image_transport == "compressed"
    feeder = CompressedFeeder(ros)
    spinner(node, feeder.node)
    assert wait_for(lambda: len(feeder.chunks) >= 2, 15.0), (dict(node.rejections), node.last_rejection)
    img = policy.last_obs.images[node.camera_name]
    assert img.shape == (64, 64, 3)


class BestEffortFeeder(Feeder):
    def __init__(self, rclpy):
        super().__init__(rclpy)
        self.node.destroy_publisher(self._img)
        self._img = self.node.create_publisher(Image, "/camera/image_raw", QoSProfile(
            history=HistoryPolicy.KEEP_LAST, depth=2, reliability=ReliabilityPolicy.BEST_EFFORT))


def test_best_effort_camera_matched_by_auto_or_reported_loudly(ros, spinner, capfd):
    feeder = BestEffortFeeder(ros)                 # the camera is up before the node starts
    time.sleep(0.5)
    reliable = _policy_node(GoalSeekingTestPolicy(), camera_qos_reliability="reliable")
    spinner(reliable, feeder.node)
    assert wait_for(lambda: reliable.rejections.get("no_camera", 0) >= 1, 10.0), dict(reliable.rejections)
    assert "offer BEST_EFFORT and this subscription is RELIABLE" in reliable.last_rejection
    # the counter is set before the spinner thread writes the log line: wait for the line itself
    err = []
    assert wait_for(lambda: err.append(capfd.readouterr().err) or "BEST_EFFORT" in "".join(err), 5.0), "".join(err)
    assert reliable.chunks_published == 0
    reliable.destroy_node()
    auto = _policy_node(GoalSeekingTestPolicy(), camera_qos_reliability="auto")
    assert auto.camera_reliability == "best_effort"
    spinner(auto)
    assert wait_for(lambda: auto.chunks_published >= 2, 15.0), (dict(auto.rejections), auto.last_rejection)

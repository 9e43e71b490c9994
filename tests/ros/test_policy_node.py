"""policy_node over real DDS: bad input is reported and ignored (no output), inference runs
off the executor thread, and a real (tiny, random-init) LaraPolicy checkpoint publishes
ActionChunk + DynamicsCheck."""
from __future__ import annotations

import math
import threading

import numpy as np
import pytest
from rclpy.parameter import Parameter

from graph_helpers import GoalSeekingTestPolicy
from helpers_runtime import wait_for

pytestmark = pytest.mark.ros


class Feeder:
    """A test node publishing camera + state like a robot; `encoding`, `size`, `ee`, `goal_on`
    are mutable (change several at once, atomically w.r.t. a publish, with `set`). Every frame
    is recorded with the `tag` in force when it was published (`tag_of(chunk)`: the tag of the
    frame a chunk was predicted from, by its stamp)."""

    def __init__(self, rclpy, encoding="rgb8", size=(64, 64), rate=30.0):
        from geometry_msgs.msg import PointStamped, PoseStamped
        from sensor_msgs.msg import Image, JointState

        from lara_msgs.msg import ActionChunk, DynamicsCheck
        from lara_policy.ros.params import qos_from_params

        self.node = rclpy.create_node("test_feeder")
        self.encoding, self.size = encoding, size
        self.ee = np.array([0.0, 0.6, 0.2])
        self.goal = np.array([0.1, 0.8, 0.1])
        self.goal_on = True
        self.tag = ""
        self.frame_tags: dict[int, str] = {}       # frame stamp (ns) -> tag
        self._lock = threading.Lock()
        self.chunks, self.checks = [], []
        self._img = self.node.create_publisher(Image, "/camera/image_raw", qos_from_params("reliable", 2))
        self._pose = self.node.create_publisher(PoseStamped, "/lara/ee_pose", 10)
        self._goal = self.node.create_publisher(PointStamped, "/lara/goal", 10)
        self._js = self.node.create_publisher(JointState, "/joint_states", 10)
        self.node.create_subscription(ActionChunk, "/lara/action_chunk", self.chunks.append, 10)
        self.node.create_subscription(DynamicsCheck, "/lara/dynamics_check", self.checks.append, 10)
        self._types = (Image, PoseStamped, PointStamped, JointState)
        self.frame = 0
        self.node.create_timer(1.0 / rate, self.publish)

    def set(self, **changes):
        with self._lock:
            for k, v in changes.items():
                setattr(self, k, v)

    def tag_of(self, chunk) -> str | None:
        """Tag of the frame stamped within 1 us of the chunk's stamp (the node passes stamps
        through float seconds: ~0.2 us of rounding; frames are 33 ms apart)."""
        t = chunk.header.stamp.sec * 10**9 + chunk.header.stamp.nanosec
        near = [tag for ns, tag in list(self.frame_tags.items()) if abs(ns - t) <= 1000]
        return near[0] if len(near) == 1 else None

    def publish(self):
        Image, PoseStamped, PointStamped, JointState = self._types
        with self._lock:
            encoding, (h, w), ee, goal_on, tag = self.encoding, self.size, self.ee.copy(), self.goal_on, self.tag
        stamp = self.node.get_clock().now().to_msg()
        self.frame_tags[stamp.sec * 10**9 + stamp.nanosec] = tag
        ch = {"rgb8": 3, "bgr8": 3, "mono8": 1}.get(encoding, 2)
        img = Image(height=h, width=w, encoding=encoding, step=w * ch)
        img.header.stamp = stamp
        self.frame += 1
        img.data = bytes([self.frame % 256]) * (h * w * ch)
        self._img.publish(img)
        pose = PoseStamped()
        pose.header.stamp = stamp
        pose.pose.position.x, pose.pose.position.y, pose.pose.position.z = (float(v) for v in ee)
        self._pose.publish(pose)
        if goal_on:
            goal = PointStamped()
            goal.header.stamp = stamp
            goal.point.x, goal.point.y, goal.point.z = (float(v) for v in self.goal)
            self._goal.publish(goal)
        js = JointState(name=["right_j0", "gripper"], position=[0.0, 1.0])
        js.header.stamp = stamp
        self._js.publish(js)


def _recording(policy):
    """Wrap the double's predict_chunk: every observation it is handed is kept (policy.seen)."""
    policy.seen = []
    orig = policy.predict_chunk

    def predict(obs, num_candidates=1, seed=None):
        policy.seen.append(obs)
        return orig(obs, num_candidates, seed)
    policy.predict_chunk = predict
    return policy


def _rejected(node) -> int:
    """Inputs rejected for the most frequent reason (a rejection counts under its key and,
    with a cause, again under key:cause)."""
    return max(node.rejections.values(), default=0)


def _policy_node(policy=None, **params):
    from lara_policy.ros.policy_node import PolicyNode

    params.setdefault("instruction", "reach the goal")
    return PolicyNode(policy=policy, parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])


def test_wrong_encoding_reported_and_ignored(ros, spinner, capfd):
    policy = _recording(GoalSeekingTestPolicy())
    node = _policy_node(policy)
    feeder = Feeder(ros, encoding="yuv422")
    feeder.tag = "yuv422"
    spinner(node, feeder.node)
    # 10 bad frames handled (each rejected), none answered: counted in frames, not slept
    assert wait_for(lambda: node.rejections.get("image", 0) >= 10, 10.0), dict(node.rejections)
    assert feeder.chunks == [] and node.chunks_published == 0 and policy.calls == 0
    assert "unsupported image encoding 'yuv422'" in node.last_rejection
    err = capfd.readouterr().err
    assert "bad image on /camera/image_raw: unsupported image encoding 'yuv422'" in err, err[-2000:]
    assert err.count("unsupported image encoding") <= 3, "rejection log must be throttled"
    # the node is not wedged: valid frames produce chunks again. Chunks arrive in publish order,
    # so one answering a bad frame would have come before these: every chunk answers an rgb8 frame
    feeder.set(encoding="rgb8", tag="rgb8")
    assert wait_for(lambda: len(feeder.chunks) >= 2, 10.0), dict(node.rejections)
    assert [feeder.tag_of(c) for c in list(feeder.chunks)] == ["rgb8"] * len(feeder.chunks)
    c = feeder.chunks[0]
    assert c.horizon == 16 and c.action_dim == 4 and math.isclose(c.dt, 1 / 30, rel_tol=1e-5)
    assert c.instruction == "reach the goal" and c.model_id == "test-double-goal-seeker"


@pytest.mark.parametrize("case", ["wrong_size", "nan_state", "empty_instruction", "missing_goal"])
def test_bad_input_no_output(ros, spinner, capfd, case):
    policy = _recording(GoalSeekingTestPolicy())
    params = {}
    if case == "wrong_size":
        params = {"expected_image_width": 64, "expected_image_height": 64}
    if case == "empty_instruction":
        params = {"instruction": ""}
    node = _policy_node(policy, **params)
    feeder = Feeder(ros, size=(48, 64) if case == "wrong_size" else (64, 64))
    feeder.tag = "bad"
    if case == "nan_state":
        feeder.ee = np.array([0.0, float("nan"), 0.2])
    if case == "missing_goal":
        feeder.goal_on = False
    spinner(node, feeder.node)
    if case == "empty_instruction":
        from lara_msgs.srv import SetInstruction
        cli = feeder.node.create_client(SetInstruction, "/lara/set_instruction")
        assert cli.wait_for_service(timeout_sec=10.0)
        fut = cli.call_async(SetInstruction.Request(instruction="   "))
        assert wait_for(fut.done, 10.0)
        assert fut.result().success is False and "empty instruction" in fut.result().message
    expected = {"wrong_size": "image size 64x48 != expected 64x64",
                "nan_state": "state 'hand_y' from /lara/ee_pose is nan (NaN/inf)",
                "empty_instruction": "no instruction yet",
                "missing_goal": "state 'goal_x' missing (no message on /lara/goal)"}[case]
    # 10 bad inputs handled (each rejected), none answered: counted in inputs, not slept
    assert wait_for(lambda: expected in node.last_rejection and _rejected(node) >= 10, 10.0), \
        (node.last_rejection, dict(node.rejections))
    assert feeder.chunks == [] and node.chunks_published == 0 and policy.calls == 0
    assert expected in capfd.readouterr().err
    # then the input is made valid and a later frame is answered: the node was processing all
    # along, and what it answered is the valid input only (chunks arrive in publish order)
    if case == "empty_instruction":
        fut = cli.call_async(SetInstruction.Request(instruction="reach the goal"))
        assert wait_for(fut.done, 10.0) and fut.result().success
        feeder.set(tag="good")
    else:
        feeder.set(size=(64, 64), ee=np.array([0.0, 0.6, 0.2]), goal_on=True, tag="good")
    assert wait_for(lambda: len(feeder.chunks) >= 2, 15.0), (node.last_rejection, dict(node.rejections))
    chunks = list(feeder.chunks)
    assert all(np.all(np.isfinite(o.state)) for o in policy.seen)
    assert all(np.allclose(np.asarray(o.state)[4:7], feeder.goal) for o in policy.seen), \
        [list(o.state) for o in policy.seen]
    if case in ("wrong_size", "nan_state"):       # a bad frame (or its same-stamp NaN pose) is never answered
        assert [feeder.tag_of(c) for c in chunks] == ["good"] * len(chunks)
    if case == "empty_instruction":
        assert all(c.instruction == "reach the goal" for c in chunks) and \
            all(o.instruction == "reach the goal" for o in policy.seen)


def test_inference_runs_off_the_executor_thread(ros, spinner):
    """While a policy call is in progress (held open until the test releases it), the
    executor keeps answering services: inference does not run on the executor thread."""
    from lara_msgs.srv import SetInstruction

    seen_threads = []
    inside, release = threading.Event(), threading.Event()
    policy = GoalSeekingTestPolicy()
    orig = policy.predict_chunk

    def predict(obs, num_candidates=1, seed=None):
        seen_threads.append(threading.current_thread().name)
        inside.set()
        release.wait(30.0)                   # inference "takes" until the test says so
        return orig(obs, num_candidates, seed)

    policy.predict_chunk = predict
    node = _policy_node(policy, replan_period_steps=1)
    feeder = Feeder(ros)
    spinner(node, feeder.node)
    try:
        assert wait_for(inside.is_set, 10.0), (node.last_rejection, dict(node.rejections))
        cli = feeder.node.create_client(SetInstruction, "/lara/set_instruction")
        assert cli.wait_for_service(timeout_sec=10.0)
        for _ in range(5):
            fut = cli.call_async(SetInstruction.Request(instruction="reach the goal"))
            assert wait_for(fut.done, 10.0) and fut.result().success
            assert not release.is_set() and policy.calls == 0    # answered while inference was in progress
    finally:
        release.set()
    assert wait_for(lambda: len(feeder.chunks) >= 1, 10.0)       # and the held call completes
    assert set(seen_threads) == {"lara_policy_inference"}


def test_missing_checkpoint_is_a_clear_error(ros):
    from lara_policy.ros.policy_node import PolicyNode

    with pytest.raises(FileNotFoundError, match="checkpoint not found: /nonexistent/ckpt"):
        PolicyNode(parameter_overrides=[Parameter("checkpoint", value="/nonexistent/ckpt")])


def test_real_lara_checkpoint_chunk_and_dynamics_check(ros, spinner, tiny_checkpoint):
    node = _policy_node(None, checkpoint=str(tiny_checkpoint), device="cpu", num_candidates=4,
                        replan_period_steps=2, instruction="move the gripper to the target")
    feeder = Feeder(ros)
    spinner(node, feeder.node)
    assert wait_for(lambda: len(feeder.checks) >= 3 and len(feeder.chunks) >= 3, 30.0), \
        (len(feeder.chunks), len(feeder.checks), dict(node.rejections), node.last_rejection)
    c = feeder.chunks[0]
    assert c.horizon == 16 and c.action_dim == 4 and len(c.actions) == 64
    assert c.model_id.startswith("tiny-ros-test-") and c.action_space == "ee_delta_xyz_gripper"
    assert math.isclose(c.dt, 1 / 30, rel_tol=1e-5)
    assert np.all(np.isfinite(np.asarray(c.actions)))
    chk = feeder.checks[0]
    assert chk.num_candidates == 4 and 0 <= chk.chosen_index < 4 and len(chk.predicted_effect) == 4
    assert chk.header.stamp == c.header.stamp
    assert math.isnan(feeder.checks[0].surprise), "no chunk has run C periods yet: surprise unknown"
    # a chunk's surprise comes once its frame t + C has arrived (C = 16 periods here)
    assert wait_for(lambda: any(math.isfinite(k.surprise) for k in feeder.checks[1:]), 30.0), \
        ([k.surprise for k in feeder.checks[:20]], node.surprises[:5])


def test_flagged_dynamics_check_is_logged_and_inference_keeps_running(ros, spinner, capfd):
    """A step whose dynamics check is not accepted is published with the check and logged
    (throttled) after earlier rejection logs; the inference thread must survive both (rclpy
    raised "logging filters cannot be changed" when two log calls shared the deprecated
    `warn` call site with different throttling, killing the thread)."""
    from dataclasses import replace

    policy = GoalSeekingTestPolicy()
    orig = policy.predict_chunk

    def flagged(obs, num_candidates=1, seed=None):      # as LaraPolicy reports "all candidates null"
        pred = orig(obs, num_candidates, seed)
        return replace(pred, check=replace(pred.check, accepted=False, reason="test: all candidates null"))

    policy.predict_chunk = flagged
    node = _policy_node(policy, num_candidates=4, replan_period_steps=1)
    feeder = Feeder(ros)
    feeder.goal_on = False                             # first: rejections ("goal missing")
    spinner(node, feeder.node)
    assert wait_for(lambda: sum(node.rejections.values()) >= 2, 10.0)
    feeder.set(goal_on=True)
    assert wait_for(lambda: len(feeder.checks) >= 5, 15.0), (len(feeder.checks), node.last_rejection)
    assert not any(k.accepted for k in feeder.checks) and len(feeder.chunks) >= 5
    assert node._worker.is_alive()
    err = capfd.readouterr().err
    assert "dynamics check flagged the step: test: all candidates null" in err, err[-2000:]
    assert "Traceback" not in err, err[-3000:]

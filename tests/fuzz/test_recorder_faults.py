"""recorder_node fault targets (issue 13), real DDS, real bags: each fault gives a clear error or
a bag that opens (rosbags Reader and this project's formats.rosbag), never a silent loss.

- unwritable output folder: a path under a regular file, a read-only mount, the folder replaced by
  a file before a start, the episode folder removed mid-episode;
- topics that cannot be recorded: unknown package, unknown type, a configured type other than the
  publishers' (matches nothing in DDS): logged, named in the start answer and in episode_meta.json;
- disk full: the recorder PROCESS writes into a REAL 1 MiB tmpfs mounted in a private mount namespace
  (`unshare -m`; `unshare -Urm` when not root) with the disk guard off, until ENOSPC; where mount
  namespaces are not allowed, an OSError(ENOSPC) injected into the segment writer instead (the
  report says which ran);
- SIGKILL mid-episode at generated moments: the bag opens as it is (or after bag_tools.recover when
  the kill hit before the first segment was closed, which loses at most one flush period, and
  episode_meta.json then still says 'recording').

Counts per target go to the fuzz summary. Default run: a fixed sample; `-m fuzz`: the full counts."""
from __future__ import annotations

import errno
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
pytest.importorskip("rclpy")
pytest.importorskip("lara_msgs.msg")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ros"))
from helpers_runtime import (CAMERA_PUBLISHER, OutputReader, RosHarness, call_service, kill,  # noqa: E402
                             spawn_python, wait_for)

pytestmark = pytest.mark.ros
CAM_TOPIC = "/camera/image_raw:sensor_msgs/msg/Image"

# recorder_node as a process that closes cleanly when `stopfile` appears:
# argv: output_dir flush_period_s stopfile topics(comma separated) min_free_disk_gb
RECORDER_UNTIL_STOPFILE = """
import os, sys, rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from lara_policy.ros.recorder_node import RecorderNode
out, flush, stopfile, topics, min_free = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4].split(","), float(sys.argv[5])
rclpy.init()
try:
    node = RecorderNode(parameter_overrides=[Parameter("output_dir", value=out), Parameter("flush_period_s", value=flush),
                                             Parameter("topics", value=topics), Parameter("min_free_disk_gb", value=min_free)])
except ValueError as exc:
    print("FATAL", exc, flush=True)
    raise SystemExit(1)
ex = SingleThreadedExecutor()
ex.add_node(node)
print("ready", flush=True)
while not os.path.exists(stopfile):
    ex.spin_once(timeout_sec=0.05)
node.destroy_node()
rclpy.shutdown()
print("closed", flush=True)
"""


def _settings(n: int):
    return settings(max_examples=n, derandomize=True, database=None, deadline=None, print_blob=False,
                    suppress_health_check=list(HealthCheck))


def _make(h, out, **params):
    from rclpy.parameter import Parameter

    from lara_policy.ros.recorder_node import RecorderNode
    base = {"output_dir": str(out), "topics": [CAM_TOPIC], "flush_period_s": 0.3, "min_free_disk_gb": 0.0}
    base.update(params)
    return h.add(RecorderNode(context=h.context, parameter_overrides=[Parameter(k, value=v) for k, v in base.items()]))


class Cam:
    def __init__(self, h, topic="/camera/image_raw"):
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image
        self.n = h.node(f"cam_{abs(hash(topic)) % 10000}")
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self.pub = self.n.create_publisher(Image, topic, qos)
        self.sent = 0

    def send(self, k=1, size=(24, 32)):
        from lara_policy.ros.codec import rgb_to_image_msg
        for _ in range(k):
            self.pub.publish(rgb_to_image_msg(np.full((*size, 3), self.sent % 255, np.uint8), time.time(),
                                              frame_id=str(self.sent)))
            self.sent += 1


def _start(h, cl, **kw):
    from lara_msgs.srv import StartEpisode
    return call_service(h, cl, StartEpisode, "/lara/recorder/start", StartEpisode.Request(instruction="x", **kw),
                        timeout=20.0)


def _stop(h, cl):
    from lara_msgs.srv import StopEpisode
    return call_service(h, cl, StopEpisode, "/lara/recorder/stop", StopEpisode.Request(task_success=False),
                        timeout=20.0)


def _open_count(bag: Path) -> int:
    """Messages in the bag through rosbags AND this project's bag tools (they must agree)."""
    from rosbags.rosbag2 import Reader

    from lara_policy.formats import rosbag as bag_tools
    with Reader(bag) as r:
        n = r.message_count
    assert bag_tools.bag_info(bag)["messages"] == n
    assert sum(1 for _ in bag_tools.iter_messages(bag, raw=True)) == n
    return n


def _ns_prefix() -> list[str] | None:
    """A command prefix that runs in a private mount namespace where mounting a tmpfs is allowed."""
    if not shutil.which("unshare"):
        return None
    for pre in (["unshare", "-m", "--propagation", "private"], ["unshare", "-Urm", "--propagation", "private"]):
        with tempfile.TemporaryDirectory() as d:
            r = subprocess.run([*pre, "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs {d} && touch {d}/x"],
                               capture_output=True, timeout=20)
            if r.returncode == 0:
                return pre
    return None


# ------------------------------------------------------------------------------ unwritable folder
def _unwritable_case(kind: str, tmp: Path, record) -> None:
    h = RosHarness()
    try:
        if kind == "under_a_file":
            (tmp / "afile").write_text("x")
            try:
                _make(h, tmp / "afile" / "episodes")
                record.fail(kind, "construction accepted an output_dir under a regular file")
            except ValueError as e:
                ok = "output_dir" in str(e) and str(tmp / "afile") in str(e) and "Not a directory" in str(e)
                record.ok() if ok else record.fail(kind, f"unclear error: {e}")
            return
        out = tmp / "episodes"
        rec = _make(h, out)
        cam, cl = Cam(h), h.node("client")
        assert wait_for(lambda: cam.pub.get_subscription_count() >= 1, 15.0)
        if kind == "replaced_by_file":
            shutil.rmtree(out)
            out.write_text("not a folder")
            r = _start(h, cl)
            ok = (not r.success) and "refused" in r.message and str(out) in r.message and not rec.recording
            record.ok() if ok else record.fail(kind, f"start answered {r.success}: {r.message}")
            return
        # the episode folder removed mid-episode (a cleanup job, an unmounted disk)
        r = _start(h, cl)
        assert r.success, r.message
        for _ in range(30):
            cam.send()
            time.sleep(0.02)
        assert wait_for(lambda: rec._seg is not None and rec._seg.index >= 1, 10.0)
        # the writer thread may create a file while the folder is being removed (ENOTEMPTY):
        # remove until it is gone, as a cleanup job racing the recorder would
        assert wait_for(lambda: shutil.rmtree(Path(r.bag_path), ignore_errors=True)
                        or not Path(r.bag_path).exists(), 10.0), "could not remove the episode folder"
        shutil.rmtree(out / f".{r.episode_id}.partial", ignore_errors=True)
        for _ in range(40):
            cam.send()
            time.sleep(0.02)
        if not wait_for(lambda: not rec.recording, 10.0):
            record.fail(kind, "the recorder kept 'recording' into a removed folder (silent loss)")
            return
        ep = rec._episode
        s = _stop(h, cl)
        ok = (ep["state"] == "failed" and "write error" in ep["stop_reason"] and not s.success
              and "write error" in s.message)
        record.ok() if ok else record.fail(kind, f"episode {ep['state']} {ep['stop_reason']!r}; stop: {s.message}")
    finally:
        errors = list(h.errors)
        h.close()
        if errors:
            record.fail(kind, "a callback raised: " + errors[-1].splitlines()[-1])


def _readonly_mount_case(pre, tmp: Path, record) -> None:
    d = tmp / "ro"
    d.mkdir()
    stop = tmp / "stop"
    code = RECORDER_UNTIL_STOPFILE
    r = subprocess.run([*pre, "sh", "-c", 'mount -t tmpfs -o size=1m,ro tmpfs "$0" && exec "$1" -c "$2" "$0/episodes" 0.3 '
                        '"$3" "$4" 0', str(d), sys.executable, code, str(stop), CAM_TOPIC],
                       capture_output=True, text=True, timeout=120, env=dict(os.environ))
    out = r.stdout + r.stderr
    ok = r.returncode == 1 and "output_dir" in out and "Read-only file system" in out and "Traceback" not in out
    record.ok() if ok else record.fail("read_only_mount", f"rc={r.returncode}: {out[-400:]}")


@pytest.mark.parametrize("full", [False, pytest.param(True, marks=pytest.mark.fuzz)], ids=["sample", "full"])
def test_recorder_unwritable_folder(fuzz_record, tmp_path, full):
    kinds = ["under_a_file", "replaced_by_file", "removed_mid_episode"]
    for i in range(3 if full else 1):
        for kind in kinds:
            d = tmp_path / f"{kind}_{i}"
            d.mkdir()
            _unwritable_case(kind, d, fuzz_record)
    pre = _ns_prefix()
    if pre is not None:
        _readonly_mount_case(pre, tmp_path, fuzz_record)
    fuzz_record.check()


# ------------------------------------------------------------------------------------ unknown types
def test_recorder_unrecordable_topics_are_named(fuzz_record, tmp_path):
    """Each unrecordable topic is named (log, start answer, episode_meta.json) and the rest is recorded.
    Found by this target: a configured type that clashes with a subscription the recorder already has
    (/lara/action_chunk as String: it reads ActionChunk for model_id) raised RCLError in the discovery
    timer and took the recorder's executor down."""
    from lara_msgs.msg import ActionChunk

    h, other = RosHarness(), RosHarness()       # `other`: a second DDS participant (another process's view)
    try:
        topics = [CAM_TOPIC, "/x:no_such_pkg/msg/Foo", "/y:std_msgs/msg/NoSuchType", "/z:std_msgs",
                  "/lara/action_chunk:std_msgs/msg/String", "/w:std_msgs/msg/String", "/never_published"]
        rec = _make(h, tmp_path / "ep", topics=topics)
        cam, cl = Cam(h), h.node("client")
        w_pub = other.node("w_publisher").create_publisher(ActionChunk, "/w", 10)   # ActionChunk on a String topic
        assert wait_for(lambda: cam.pub.get_subscription_count() >= 1 and w_pub is not None, 15.0)
        assert wait_for(lambda: "/w" in rec._not_recorded and "/lara/action_chunk" in rec._not_recorded, 15.0), \
            rec._not_recorded
        r = _start(h, cl)
        assert r.success, r.message
        for i in range(20):
            cam.send()
            time.sleep(0.02)
        assert wait_for(lambda: rec._episode["received"].get("/camera/image_raw", 0) >= 20, 10.0)
        s = _stop(h, cl)
        assert s.success, s.message
        meta = json.loads((Path(r.bag_path) / "episode_meta.json").read_text())
        expect = {"/x": "no_such_pkg", "/y": "NoSuchType", "/z": "bad message type",
                  "/lara/action_chunk": "cannot subscribe as std_msgs/msg/String",
                  "/w": "publishers offer lara_msgs/msg/ActionChunk",
                  "/never_published": "no publisher seen yet"}
        for topic, words in expect.items():
            fine = words in r.message and f"{topic} (" in r.message and words in meta["not_recorded"].get(topic, "")
            fuzz_record.ok() if fine else fuzz_record.fail(topic, f"not named: start said {r.message!r}; meta "
                                                                  f"{meta['not_recorded'].get(topic)!r}")
        n = _open_count(Path(r.bag_path))
        fuzz_record.ok() if n == 20 else fuzz_record.fail("bag", f"{n} messages, 20 sent")
    finally:
        errors = list(h.errors)
        h.close()
        other.close()
    assert not errors, errors
    fuzz_record.check()


# ------------------------------------------------------------------------------------ disk full
def _disk_full_case(pre, tmp: Path, size_kb: int, flush: float, record) -> str:
    d, out, stop = tmp / "mnt", tmp / "copy", tmp / "stop"
    d.mkdir()
    out.mkdir()
    script = ('mount -t tmpfs -o size={size}k tmpfs "$0" && "$1" -c "$2" "$0/episodes" {flush} "$3" "$4" 0; rc=$?; '
              'cp -a "$0/." "$5/"; exit $rc').format(size=size_kb, flush=flush)
    proc = subprocess.Popen([*pre, "sh", "-c", script, str(d), sys.executable, RECORDER_UNTIL_STOPFILE, str(stop),
                             CAM_TOPIC, str(out)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ))
    log = OutputReader(proc)
    h = RosHarness()
    case = f"tmpfs {size_kb} KiB, flush {flush} s"
    try:
        cam, cl = Cam(h), h.node("client")
        if not wait_for(lambda: "recording /camera/image_raw" in log.text() and cam.pub.get_subscription_count() >= 1,
                        60.0):
            record.fail(case, f"recorder did not come up: {log.text()[-400:]}")
            return ""
        r = _start(h, cl)
        assert r.success, r.message
        t_end = time.monotonic() + 20.0
        while time.monotonic() < t_end and "STOPPED by a write error" not in log.text():
            cam.send(size=(120, 160))         # 57.6 kB a frame
            time.sleep(1 / 30)
        stopped = "STOPPED by a write error" in log.text()
        s = _stop(h, cl)
        stop.write_text("x")
        proc.wait(timeout=60)
        text = log.text()
        bag = out / "episodes" / r.episode_id
        if not stopped:
            record.fail(case, f"no write-error stop within 20 s: {text[-600:]}")
            return text
        m = re.search(r"keeps its (\d+) closed segment\(s\) \((\d+) messages", text)
        problems = []
        if "No space left on device" not in text:
            problems.append("the error line does not say the disk is full")
        if s.success or "write error" not in s.message:
            problems.append(f"stop answered {s.success}: {s.message}")
        if m is None:
            problems.append("no line saying what the bag keeps")
        elif int(m.group(1)) > 0:
            n = _open_count(bag)
            if n != int(m.group(2)):
                problems.append(f"bag opens with {n} messages, the error line says {m.group(2)}")
        # dropping the open segment frees its blocks (the file is closed even when its footer
        # failed), so the episode's own metadata still fits and says why it ended
        meta_path = bag / "episode_meta.json"
        if meta_path.is_file() and "episode_meta.json updated" in text:
            meta = json.loads(meta_path.read_text())
            if meta["state"] != "failed" or "No space left" not in meta["error"] or not meta["lost_messages"]:
                problems.append(f"episode_meta: {meta['state']} {meta['error']!r} lost {meta['lost_messages']}")
        else:
            problems.append("episode_meta.json not updated after the write error")
        if "Traceback" in text:
            problems.append("traceback in the recorder output")
        record.fail(case, "; ".join(problems)) if problems else record.ok()
        return text
    finally:
        stop.write_text("x")
        if proc.poll() is None:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                kill(proc, 9)
        h.close()


def _disk_full_injected(tmp: Path, record) -> None:
    """Fallback where mount namespaces are not allowed: ENOSPC injected into the segment writer."""
    from lara_policy.formats.rosbag.writer import EpisodeBagWriter
    real = EpisodeBagWriter.write
    h = RosHarness()
    try:
        rec = _make(h, tmp / "ep")
        cam, cl = Cam(h), h.node("client")
        assert wait_for(lambda: cam.pub.get_subscription_count() >= 1, 15.0)
        r = _start(h, cl)
        assert r.success

        def full(self, *a):
            if self.index >= 2:
                raise OSError(errno.ENOSPC, "No space left on device (injected)")
            return real(self, *a)
        EpisodeBagWriter.write = full
        t_end = time.monotonic() + 15
        while rec.recording and time.monotonic() < t_end:
            cam.send()
            time.sleep(1 / 30)
        ep = rec._episode
        ok = ep["state"] == "failed" and "No space" in ep["error"] and _open_count(Path(r.bag_path)) == \
            ep["flushed_messages"] > 0
        record.ok() if ok else record.fail("injected ENOSPC", f"{ep['state']} {ep['error']!r}")
    finally:
        EpisodeBagWriter.write = real
        h.close()


@pytest.mark.parametrize("full", [False, pytest.param(True, marks=pytest.mark.fuzz)], ids=["sample", "full"])
def test_recorder_disk_full(fuzz_record, tmp_path, full):
    pre = _ns_prefix()
    if pre is None:
        print("disk full: mount namespaces not allowed here: ENOSPC INJECTED into the segment writer")
        _disk_full_injected(tmp_path, fuzz_record)
    else:
        plan = [(1024, 0.2)] if not full else [(1024, 0.2), (600, 0.1), (2048, 0.3), (1536, 0.5)]
        for i, (size, flush) in enumerate(plan):
            d = tmp_path / f"case{i}"
            d.mkdir()
            _disk_full_case(pre, d, size, flush, fuzz_record)
    fuzz_record.check()


# ------------------------------------------------------------------------------------ SIGKILL
def _sigkill_case(tmp: Path, delay: float, flush: float, record) -> None:
    from lara_policy.common.errors import LaraError
    from lara_policy.formats import rosbag as bag_tools

    stop = tmp / "stop"
    proc = spawn_python(RECORDER_UNTIL_STOPFILE, str(tmp / "episodes"), str(flush), str(stop), CAM_TOPIC, "0")
    log = OutputReader(proc)
    cam_proc = spawn_python(CAMERA_PUBLISHER, "30", "160", "120")
    h = RosHarness()
    case = f"kill {delay:.2f} s after start, flush {flush} s"
    try:
        cl = h.node("client")
        if not wait_for(lambda: "recording /camera/image_raw" in log.text(), 60.0):
            record.fail(case, f"recorder did not come up: {log.text()[-300:]}")
            return
        r = _start(h, cl)
        assert r.success, r.message
        time.sleep(delay)
        kill(proc, 9)
        found = re.findall(r"flushed: segments=(\d+) messages=(\d+)", log.text())
        logged = int(found[-1][1]) if found else 0
        bag = Path(r.bag_path)
        meta = json.loads((bag / "episode_meta.json").read_text())
        try:
            n = _open_count(bag)
            how = "as is"
        except (LaraError, Exception) as exc:  # noqa: BLE001 - the bag did not open as it is
            rep = bag_tools.recover(bag)
            if rep["segments"] == 0:
                # killed before the first segment closed: at most one flush period lost, and said so
                ok = logged == 0 and meta["state"] == "recording" and "metadata.yaml" in str(
                    pytest.raises(LaraError, bag_tools.bag_info, bag).value)
                record.ok() if ok else record.fail(case, f"no segment, logged {logged}: {exc}")
                return
            n, how = _open_count(bag), "after recover"
        if n < logged:
            record.fail(case, f"bag opens {how} with {n} messages < {logged} logged as flushed (silent loss)")
        elif meta["state"] != "recording":
            record.fail(case, f"episode_meta says {meta['state']} for a killed episode")
        else:
            record.ok()
    finally:
        kill(proc, 9)
        kill(cam_proc, 9)
        h.close()


@pytest.mark.parametrize("full", [False, pytest.param(True, marks=pytest.mark.fuzz)], ids=["sample", "full"])
def test_recorder_sigkill_mid_episode(fuzz_record, tmp_path_factory, full):
    @given(delay=st.floats(0.05, 3.0), flush=st.sampled_from([0.2, 0.5, 1.0]))
    @_settings(12 if full else 1)
    def one(delay, flush):
        _sigkill_case(tmp_path_factory.mktemp("kill"), delay, flush, fuzz_record)
    one()
    fuzz_record.check()

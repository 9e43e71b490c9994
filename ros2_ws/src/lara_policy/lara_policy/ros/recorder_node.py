"""recorder_node: records configured topics into one rosbag2 MCAP bag per episode (`rosbags`).

- Start/stop: /lara/recorder/start (lara_msgs/srv/StartEpisode), /lara/recorder/stop
  (lara_msgs/srv/StopEpisode).
- Subscriptions are raw (serialized CDR bytes): recording never deserializes images. Callbacks
  only enqueue; one writer thread writes to disk.
- Crash safety: the episode is written as a split rosbag2 bag whose segments are CLOSED every
  `flush_period_s` (each segment a complete MCAP file with footer/index), and metadata.yaml is
  rewritten atomically after each close. A SIGKILL therefore loses at most the segment being
  written (one flush period); the bag opens as it is. `lara_policy.formats.rosbag.recover()` rebuilds
  metadata.yaml from per-segment metadata if the kill hit between a segment's close and the
  metadata update. Layout: lara_policy.formats.rosbag.layout.
- Disk: refuses to start when free space < min_free_disk_gb; stops the episode cleanly (bag
  closed and readable, stop_reason "disk low") when free space drops below it mid-episode.
- Write errors (disk full, the folder removed or remounted read-only, ...): the episode stops at
  once: the segment being written is dropped (its message count is in `lost_messages`), the
  closed segments stay a readable bag, episode_meta.json says `state: failed` and the error
  (when it can still be written), and ONE error line names the bag and what was lost; the next
  start is refused while the folder is not writable.
- An output_dir that cannot be created or written is refused at start-up (ValueError; the
  process exits 1 with the folder and the OS error), and at each start.
- Topics that cannot be recorded (unknown package or type, no definition for rosbags, a publisher
  type other than the configured one, no publisher yet) are logged once each, listed in the start
  service's answer and in episode_meta.json `not_recorded` (topic: reason): never a silent gap.
- QoS (`qos_reliability`, default auto): per topic, reliable unless a publisher offers
  BEST_EFFORT (sensor-data camera drivers), then best_effort; re-checked every discovery period.
  An explicit 'reliable' facing a BEST_EFFORT publisher is listed in `not_recorded`.
- Episode metadata (episode_meta.json in the bag folder): instruction, task, success, notes,
  model_id (from ActionChunk.model_id), dynamics checks seen / not accepted, start/stop times,
  per-topic message counts (received, written, dropped); rewritten at every flush.
"""
from __future__ import annotations

import ctypes
import importlib
import queue
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import rclpy
import rclpy.executors
import rclpy.logging
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

from lara_msgs.msg import ActionChunk, DynamicsCheck
from lara_msgs.srv import StartEpisode, StopEpisode
from lara_policy.ros import topics as T
from lara_policy.common.fileio import write_json
from lara_policy.formats.rosbag.writer import EpisodeBagWriter, free_gb, writable_problem, writer_typestore
from lara_policy.formats.rosbag import META_NAME
from lara_policy.ros.node_main import build_or_exit, spin_node
from lara_policy.ros.params import match_publisher_reliability

DEFAULT_TOPICS = [T.CAMERA_IMAGE, T.JOINT_STATES, T.EE_POSE, T.ACTION_CHUNK, T.DYNAMICS_CHECK,
                  T.SERVO_TWIST, T.GRIPPER_COMMAND, T.SAFETY_STATUS, T.INSTRUCTION, T.TASK_SUCCESS,
                  T.MONITOR_ALARM, T.DIAGNOSTICS]


def message_class(msgtype: str):
    """'pkg/msg/Name' (or 'pkg/Name') -> the generated Python class."""
    parts = msgtype.split("/")
    if len(parts) == 2:
        parts = [parts[0], "msg", parts[1]]
    if len(parts) != 3:
        raise ValueError(f"bad message type '{msgtype}' (expected pkg/msg/Name)")
    return getattr(importlib.import_module(f"{parts[0]}.{parts[1]}"), parts[2])


def normalize_type(msgtype: str) -> str:
    parts = msgtype.split("/")
    return f"{parts[0]}/msg/{parts[1]}" if len(parts) == 2 else msgtype


def set_malloc_mmap_threshold(kb: int) -> bool:
    """Fix glibc's mmap threshold (M_MMAP_THRESHOLD): by default it adapts upwards after the
    first large free, so image-sized buffers then come from the heap and fragment it. False
    where glibc's mallopt is unavailable (other libcs): nothing changes there."""
    if kb <= 0:
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(-3, int(kb) * 1024))      # -3 = M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        return False


_PARAMS = [
    ("output_dir", "episodes", "Folder the episode bags are written to."),
    ("topics", DEFAULT_TOPICS, "Topics to record: 'name' (type discovered from the graph) or 'name:pkg/msg/Type'."),
    ("flush_period_s", 1.0, "Segments are closed (made durable) this often; a kill loses at most this much."),
    ("min_free_disk_gb", 2.0, "Refuse to start below this much free disk; stop an episode when it drops below."),
    ("storage", "mcap", "rosbag2 storage plugin (only 'mcap' is supported)."),
    ("qos_reliable", True, "Subscribe reliably (must be compatible with the publishers; ENVIRONMENT.md: "
                           "best-effort loses most 640x480 frames); used when qos_reliability is ''."),
    ("qos_reliability", "auto", "Per recorded topic: auto (reliable, unless a publisher offers BEST_EFFORT, as a "
                                "sensor-data camera driver does: then best_effort; re-checked every "
                                "discovery_period_s) | reliable | best_effort | '' (= qos_reliable)."),
    ("qos_depth", 300, "Subscription queue depth: samples DDS keeps (and acknowledges) while Python is "
                       "busy; 300 = 10 s at 30 Hz, so a stall of the recorder process does not drop."),
    ("max_queue_mb", 512.0, "Messages waiting for the writer beyond this are dropped (and counted)."),
    ("malloc_mmap_threshold_kb", 256, "Own process only (main()): glibc allocations at least this big are "
                                      "mmapped and given back when freed (0 = glibc's adaptive default, under "
                                      "which ~1 MB frame buffers fragment the heap and RSS creeps up over "
                                      "minutes). Process-wide, so `lara bringup` does not apply it."),
    ("discovery_period_s", 0.5, "How often topics without a known type are looked up in the graph."),
    ("action_chunk_topic", T.ACTION_CHUNK, "ActionChunk topic read for model_id."),
    ("dynamics_check_topic", T.DYNAMICS_CHECK, "DynamicsCheck topic whose not-accepted count is stored."),
    ("start_service", T.RECORDER_START, "lara_msgs/srv/StartEpisode service name."),
    ("autostart", False, "Start ONE episode when the first message on a recorded topic arrives (offline_eval: "
                         "nobody calls the start service); it is closed at shut-down or by the stop service."),
    ("autostart_instruction", "", "Instruction stored for the autostarted episode."),
    ("autostart_task", "", "Task stored for the autostarted episode."),
    ("stop_service", T.RECORDER_STOP, "lara_msgs/srv/StopEpisode service name."),
]


class RecorderNode(Node):
    """See the module docstring."""

    def __init__(self, node_name: str = "recorder_node", **kwargs):
        super().__init__(node_name, **kwargs)
        for name, default, desc in _PARAMS:
            self.declare_parameter(name, default, ParameterDescriptor(description=desc))
        if self.p("storage") != "mcap":
            raise ValueError(f"storage '{self.p('storage')}' not supported (only 'mcap')")
        self.out_dir = Path(self.p("output_dir")).expanduser().resolve()
        why = writable_problem(self.out_dir)
        if why:
            raise ValueError(f"recorder_node: output_dir: {why}")
        self._not_recorded: dict[str, str] = {}     # topic -> why it is not recorded
        self.ts = writer_typestore()
        self._wanted: dict[str, str | None] = {}
        for entry in self.p("topics"):
            name, _, mtype = str(entry).partition(":")
            self._wanted[name.strip()] = normalize_type(mtype.strip()) if mtype.strip() else None
        self._types: dict[str, str] = {}
        self._subs = {}
        self._lock = threading.Lock()
        self._q: queue.Queue = queue.Queue()
        self._q_bytes = 0
        self._max_q = int(float(self.p("max_queue_mb")) * 1e6)
        self._recording = False
        self._episode: dict | None = None
        self._seg: EpisodeBagWriter | None = None
        self._ctl_done = threading.Event()
        self._stop_thread = threading.Event()
        self._writer = threading.Thread(target=self._writer_loop, name="recorder_writer", daemon=True)
        self._writer.start()
        mode = str(self.p("qos_reliability")).strip().lower().replace("-", "_")
        if not mode:
            mode = "reliable" if self.p("qos_reliable") else "best_effort"
        if mode not in ("auto", "reliable", "best_effort"):
            raise ValueError(f"recorder_node: qos_reliability must be auto, reliable or best_effort, got "
                             f"'{self.p('qos_reliability')}'")
        self._qos_mode = mode
        self._sub_rel: dict[str, str] = {}       # topic -> reliability of its subscription
        self.create_subscription(ActionChunk, self.p("action_chunk_topic"), self._on_chunk_meta, 10)
        self.create_subscription(DynamicsCheck, self.p("dynamics_check_topic"), self._on_check_meta, 10)
        self.create_service(StartEpisode, self.p("start_service"), self._on_start)
        self.create_service(StopEpisode, self.p("stop_service"), self._on_stop)
        self._discover()
        self.create_timer(float(self.p("discovery_period_s")), self._discover)
        self.get_logger().info(f"recording {len(self._wanted)} topics to {self.out_dir}")
        self._autostart_pending = bool(self.p("autostart"))

    def p(self, name):
        return self.get_parameter(name).value

    # ------------------------------------------------------------ subscriptions
    def _check_types(self) -> None:
        """A configured type that differs from the publishers' type matches nothing in DDS: say so."""
        for topic, mtype in list(self._types.items()):
            offered = sorted({normalize_type(i.topic_type) for i in self.get_publishers_info_by_topic(topic)})
            if offered and mtype not in offered:
                why = f"publishers offer {', '.join(offered)}, but it is configured as {mtype}: nothing arrives"
                if self._not_recorded.get(topic) != why:
                    self.get_logger().error(f"cannot record {topic}: {why}")
                self._not_recorded[topic] = why
            elif self._not_recorded.get(topic, "").startswith("publishers offer"):
                del self._not_recorded[topic]

    def _qos(self, reliability: str) -> QoSProfile:
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=int(self.p("qos_depth")),
                          reliability=ReliabilityPolicy.RELIABLE if reliability == "reliable"
                          else ReliabilityPolicy.BEST_EFFORT)

    def _subscribe(self, topic: str, cls, reliability: str):
        sub = self.create_subscription(cls, topic, lambda data, _t=topic: self._on_raw(_t, data),
                                       self._qos(reliability), raw=True)
        self._sub_rel[topic] = reliability
        return sub

    def _check_reliability(self) -> None:
        """A RELIABLE subscription never receives from a BEST_EFFORT publisher (sensor-data camera
        drivers): auto re-subscribes best_effort; an explicit 'reliable' says so, loudly."""
        for topic, sub in list(self._subs.items()):
            if sub is None or self._sub_rel.get(topic) != "reliable":
                continue
            be = any(i.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT
                     for i in self.get_publishers_info_by_topic(topic))
            why = ("publisher(s) offer BEST_EFFORT but the subscription is RELIABLE: nothing arrives from them "
                   "(set qos_reliability: auto or best_effort)")
            if be and self._qos_mode == "auto":
                self.destroy_subscription(sub)
                self._subs[topic] = self._subscribe(topic, message_class(self._types[topic]), "best_effort")
                self.get_logger().warning(f"{topic}: a publisher offers BEST_EFFORT: now subscribed best_effort")
            elif be:
                if self._not_recorded.get(topic) != why:
                    self.get_logger().error(f"cannot record {topic}: {why}")
                self._not_recorded[topic] = why
            elif self._not_recorded.get(topic) == why:
                del self._not_recorded[topic]

    def _discover(self) -> None:
        self._check_types()
        self._check_reliability()
        missing = [t for t in self._wanted if t not in self._subs]
        if not missing:
            return
        graph = dict(self.get_topic_names_and_types())
        for topic in missing:
            mtype = self._wanted[topic] or (graph[topic][0] if graph.get(topic) else None)
            if mtype is None:
                self._not_recorded.setdefault(topic, "no publisher seen yet (type unknown)")
                continue
            mtype = normalize_type(mtype)
            try:
                cls = message_class(mtype)
                if mtype not in self.ts.fielddefs:
                    raise ValueError(f"no message definition for {mtype} in the rosbags typestore")
            except (ImportError, AttributeError, ValueError) as e:
                why = f"type {mtype}: {type(e).__name__}: {e}"
                self.get_logger().error(f"cannot record {topic}: {why}")
                self._not_recorded[topic] = why
                self._subs[topic] = None
                continue
            self._not_recorded.pop(topic, None)
            try:
                # auto: the publishers' reliability where any is known now (params.match_publisher_reliability,
                # as policy_node / command_node); one appearing later is handled by _check_reliability
                rel = self._qos_mode if self._qos_mode != "auto" else \
                    match_publisher_reliability(self, "auto", topic, wait_s=0.01)
                sub = self._subscribe(topic, cls, rel)
            except Exception as e:  # noqa: BLE001 - rclpy's RCLError, e.g. the topic already has another type here
                why = f"cannot subscribe as {mtype}: {' '.join(str(e).split(', at ')[0].split())}"
                self.get_logger().error(f"cannot record {topic}: {why}")
                self._not_recorded[topic] = why
                self._subs[topic] = None
                continue
            self._types[topic] = mtype
            self._subs[topic] = sub
            self.get_logger().info(f"recording {topic} [{mtype}], {self._sub_rel[topic]}")

    def _autostart(self) -> bool:
        self._autostart_pending = False
        r = self._on_start(StartEpisode.Request(instruction=str(self.p("autostart_instruction")),
                                                task=str(self.p("autostart_task"))), StartEpisode.Response())
        if not r.success:
            self.get_logger().error(f"recorder_node autostart: {r.message}")
        return bool(r.success)

    def _on_raw(self, topic: str, data: bytes) -> None:
        if not self._recording and not (self._autostart_pending and self._autostart()):
            return
        t_ns = self.get_clock().now().nanoseconds
        ep = self._episode
        ep["received"][topic] = ep["received"].get(topic, 0) + 1
        with self._lock:
            if self._q_bytes + len(data) > self._max_q:
                ep["dropped"][topic] = ep["dropped"].get(topic, 0) + 1
                return
            self._q_bytes += len(data)
            if self._q_bytes > ep["queue_high_water_mb"] * 1e6:
                ep["queue_high_water_mb"] = round(self._q_bytes / 1e6, 1)
        self._q.put(("msg", topic, t_ns, data))

    def _on_chunk_meta(self, msg: ActionChunk) -> None:
        if self._recording and msg.model_id:
            self._episode["model_id"] = msg.model_id

    def _on_check_meta(self, msg: DynamicsCheck) -> None:
        if self._recording:
            self._episode["dynamics_checks"] += 1
            if not msg.accepted:
                self._episode["dynamics_not_accepted"] += 1

    # ------------------------------------------------------------ services
    def _on_start(self, req, resp):
        resp.success, resp.episode_id, resp.bag_path = False, "", ""
        if self._recording:
            resp.message = f"an episode is already recording ({self._episode['episode_id']}); stop it first"
            return resp
        why = writable_problem(self.out_dir)
        if why:
            resp.message = f"refused: {why}"
            self.get_logger().error(resp.message)
            return resp
        free, need = free_gb(self.out_dir), float(self.p("min_free_disk_gb"))
        if free < need:
            resp.message = f"refused: {free:.1f} GB free on {self.out_dir} < min_free_disk_gb {need:.1f}"
            self.get_logger().error(resp.message)
            return resp
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d_%H%M%S")
        ep_id = f"episode_{stamp}_{uuid.uuid4().hex[:6]}"
        self._episode = {
            "episode_id": ep_id, "instruction": req.instruction, "task": req.task, "success": None,
            "notes": "", "model_id": "", "dynamics_checks": 0, "dynamics_not_accepted": 0,
            "start_time": time.time(), "stop_time": None, "stop_reason": "", "state": "recording",
            "flush_period_s": float(self.p("flush_period_s")), "topics": {},
            "received": {}, "written": {}, "dropped": {}, "segments": 0, "flushed_messages": 0, "queue_high_water_mb": 0.0,
            "not_recorded": dict(self._not_recorded), "lost_messages": 0, "error": "",
            "qos_reliability": dict(self._sub_rel),
        }
        if not self._control(("start", ep_id)):
            resp.message = f"could not create the episode bag: {self._ctl_error}"
            return resp
        self._recording = True
        resp.success, resp.episode_id, resp.bag_path = True, ep_id, str(self.out_dir / ep_id)
        resp.message = f"recording {ep_id}"
        if self._not_recorded:
            resp.message += "; NOT recorded: " + "; ".join(f"{t} ({w})" for t, w in sorted(self._not_recorded.items()))
            self.get_logger().error(f"episode {ep_id}: {resp.message}")
        self.get_logger().info(f"episode {ep_id} started: '{req.instruction}' -> {resp.bag_path}")
        return resp

    def _on_stop(self, req, resp):
        resp.success, resp.bag_path = False, ""
        if not self._recording or self._episode is None:
            ep = self._episode
            resp.message = "no episode is recording"
            if ep is not None and ep.get("state") == "failed":
                resp.message += f" (episode {ep['episode_id']} was stopped by a write error: {ep['error']})"
                resp.bag_path = str(self.out_dir / ep["episode_id"])
            return resp
        self._episode["success"] = bool(req.task_success)
        self._episode["notes"] = req.notes
        ep = self._episode
        ok = self._stop_episode("stopped by service")
        resp.success, resp.bag_path = ok, str(self.out_dir / ep["episode_id"])
        resp.message = (f"closed {ep['episode_id']}: {sum(ep['written'].values())} messages"
                        if ok else f"closing failed: {self._ctl_error}")
        return resp

    def _stop_episode(self, reason: str) -> bool:
        self._recording = False
        self._episode["stop_reason"] = reason
        return self._control(("stop", None))

    def _control(self, cmd) -> bool:
        """Run a start/stop on the writer thread (after every queued message) and wait."""
        self._ctl_done.clear()
        self._ctl_error = ""
        self._q.put(cmd)
        if not self._ctl_done.wait(60.0):
            self._ctl_error = "writer thread did not answer in 60 s"
            return False
        return not self._ctl_error

    # ------------------------------------------------------------ writer thread
    def _writer_loop(self) -> None:
        period = None
        while not self._stop_thread.is_set():
            try:
                item = self._q.get(timeout=0.1)
            except queue.Empty:
                item = None
            try:
                if item is not None:
                    self._handle(item)
                if self._seg is not None:
                    period = period or float(self.p("flush_period_s"))
                    if self._seg.due(period):
                        self._flush()
            except Exception as e:  # noqa: BLE001 - keep the node alive, say what happened
                self._ctl_error = f"{type(e).__name__}: {e}"
                if self._seg is not None and isinstance(e, OSError):
                    self._fail_episode(self._ctl_error)
                else:
                    self.get_logger().error(f"recorder writer error: {self._ctl_error}")
                if item is not None and item[0] != "msg":
                    self._ctl_done.set()

    def _fail_episode(self, error: str) -> None:
        """A write failed mid-episode (disk full, folder gone, ...): stop now, keep what is closed."""
        seg, ep = self._seg, self._episode
        self._seg = None
        self._recording = False
        lost = seg.abort() + self._drain_queue()
        ep.update(state="failed", stop_reason=f"write error: {error}", error=error, stop_time=time.time(),
                  lost_messages=ep.get("lost_messages", 0) + lost, segments=seg.index,
                  flushed_messages=seg.flushed_messages, topics=dict(self._types))
        saved = "episode_meta.json updated"
        try:
            write_json(seg.ep_dir / META_NAME, ep, default=str)
        except OSError as e:   # write_json removed its temp file; the old episode_meta.json stands
            saved = f"episode_meta.json NOT updated ({e.strerror or e})"
        self.get_logger().error(
            f"episode {seg.episode_id} STOPPED by a write error: {error}. The bag {seg.ep_dir} keeps its "
            f"{seg.index} closed segment(s) ({seg.flushed_messages} messages, readable); {lost} message(s) of "
            f"the open segment and the queue are lost; {saved}")

    def _drain_queue(self) -> int:
        """Drop queued messages (the episode stopped); returns how many."""
        n = 0
        while True:
            try:
                item = self._q.get_nowait()
            except queue.Empty:
                return n
            if item[0] == "msg":
                with self._lock:
                    self._q_bytes -= len(item[3])
                n += 1
            else:
                self._q.put(item)      # a start/stop: handle it after the drain
                return n

    def _handle(self, item) -> None:
        kind = item[0]
        if kind == "msg":
            _, topic, t_ns, data = item
            with self._lock:
                self._q_bytes -= len(data)
            if self._seg is None:
                return
            self._seg.write(topic, self._types[topic], t_ns, data)
            w = self._episode["written"]
            w[topic] = w.get(topic, 0) + 1
        elif kind == "start":
            self._seg = EpisodeBagWriter(self.out_dir, item[1], self.ts)
            self._write_meta()
            self._ctl_done.set()
        elif kind == "stop":
            if self._seg is not None:
                self._seg.finish()
                self._episode["state"] = "closed"
                self._episode["stop_time"] = time.time()
                self._update_meta_counts()
                self._write_meta()
                self.get_logger().info(f"episode {self._seg.episode_id} closed: {self._seg.flushed_messages} "
                                       f"messages in {self._seg.index} segments ({self._episode['stop_reason']})")
                self._seg = None
            self._ctl_done.set()

    def _flush(self) -> None:
        self._seg.close_segment()
        self._update_meta_counts()
        self._write_meta()
        # parseable progress line (tests and operators): everything up to here survives a kill
        self.get_logger().info(f"flushed: segments={self._seg.index} messages={self._seg.flushed_messages}")
        need = float(self.p("min_free_disk_gb"))
        if free_gb(self.out_dir) < need and self._recording:
            self.get_logger().error(f"disk low (< {need} GB free): stopping episode {self._seg.episode_id}")
            self._recording = False
            self._episode["stop_reason"] = "disk low"
            self._handle(("stop", None))

    def _update_meta_counts(self) -> None:
        self._episode["segments"] = self._seg.index
        self._episode["flushed_messages"] = self._seg.flushed_messages
        self._episode["topics"] = dict(self._types)

    def _write_meta(self) -> None:
        ep = {k: (dict(v) if isinstance(v, dict) else v) for k, v in list(self._episode.items())}
        write_json(self._seg.ep_dir / META_NAME, ep, default=str)

    # ------------------------------------------------------------ lifecycle
    @property
    def recording(self) -> bool:
        return self._recording

    def close(self) -> None:
        """Close an open episode (bag stays readable) and stop the writer thread."""
        if self._recording:
            self._stop_episode("recorder shut down")
        self._stop_thread.set()
        self._writer.join(timeout=30.0)

    def destroy_node(self):
        self.close()
        return super().destroy_node()


def main(args=None) -> None:
    rclpy.init(args=args)
    # one executor thread (the writer has its own): rclpy's MultiThreadedExecutor busy-wakes
    # its pool and competes for the GIL on a small CPU
    node = build_or_exit(RecorderNode, "recorder_node")
    # process-wide: only where the recorder has the process to itself (in `lara bringup` it
    # slowed the control path: camera -> command p50 19.7 -> 36 ms)
    set_malloc_mmap_threshold(int(node.p("malloc_mmap_threshold_kb")))
    spin_node(node)


if __name__ == "__main__":
    main()

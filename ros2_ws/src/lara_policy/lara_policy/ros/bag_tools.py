"""rosbag2 helpers for the recorder's episode bags (pure `rosbags`, no rosbag2_py needed).

Episode layout written by recorder_node (a standard split rosbag2 bag, as `ros2 bag record
--max-bag-duration` writes; `ros2 bag info <episode>` and rosbags open it):

    <output_dir>/<episode_id>/metadata.yaml          rosbag2 metadata listing every CLOSED segment
    <output_dir>/<episode_id>/<episode_id>_<n>.mcap  one complete MCAP file per flush period
    <output_dir>/<episode_id>/episode_meta.json      LARA episode metadata (instruction, success, ...)
    <output_dir>/<episode_id>/.segments/<n>.yaml     per-segment rosbag2 metadata (used by recover)
    <output_dir>/.<episode_id>.partial/              the segment being written (lost on a kill)

CLI:  lara bag info|recover|dump <episode_dir>   (or python -m lara_policy.ros.bag_tools ...)
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path

from ruamel.yaml import YAML

META_NAME = "episode_meta.json"
SEGMENTS_DIR = ".segments"

from lara_policy.errors import LaraError  # noqa: E402
from lara_policy.fileio import write_atomic  # noqa: E402


class BagError(LaraError, ValueError):
    """A bag folder that is missing, incomplete or unreadable (the message names the path)."""


def _read_errors() -> tuple:
    """What a damaged bag raises while being read (rosbags, the YAML metadata, the file system)."""
    from rosbags.rosbag2 import ReaderError
    from ruamel.yaml import YAMLError
    return (ReaderError, YAMLError, OSError, KeyError, TypeError, ValueError, EOFError)


def _bag_error(d, exc: Exception) -> BagError:
    return BagError(f"cannot read bag {d}: {type(exc).__name__}: {exc}")


def _yaml() -> YAML:
    y = YAML(typ="safe")
    y.default_flow_style = False
    return y


def load_yaml(path: Path) -> dict:
    with open(path, encoding="utf8") as f:
        return _yaml().load(f)


def dump_yaml(data: dict) -> str:
    s = StringIO()
    _yaml().dump(data, s)
    return s.getvalue()


def merge_segment_metadata(segments: list[dict]) -> dict:
    """Merge per-segment rosbag2 metadata (each a whole `metadata.yaml` dict, one file each)
    into the metadata of one split bag holding all their files."""
    if not segments:
        raise ValueError("no segments to merge")
    infos = [s["rosbag2_bagfile_information"] for s in segments]
    out = dict(infos[-1])
    files = [f for info in infos for f in info["files"]]
    starts = [f["starting_time"]["nanoseconds_since_epoch"] for f in files]
    ends = [f["starting_time"]["nanoseconds_since_epoch"] + f["duration"]["nanoseconds"] for f in files]
    topics: dict[str, dict] = {}
    for info in infos:
        for t in info["topics_with_message_count"]:
            name = t["topic_metadata"]["name"]
            if name in topics:
                topics[name]["message_count"] += t["message_count"]
            else:
                topics[name] = {"topic_metadata": dict(t["topic_metadata"]), "message_count": t["message_count"]}
    out.update({
        "relative_file_paths": [f["path"] for f in files],
        "files": files,
        "starting_time": {"nanoseconds_since_epoch": min(starts)},
        "duration": {"nanoseconds": max(ends) - min(starts)},
        "message_count": sum(f["message_count"] for f in files),
        "topics_with_message_count": list(topics.values()),
    })
    return {"rosbag2_bagfile_information": out}


def segment_index(path: Path) -> int:
    return int(path.stem.rsplit("_", 1)[-1]) if "_" in path.stem else int(path.stem)


def recover(episode_dir: str | Path) -> dict:
    """Rebuild `metadata.yaml` of an episode bag from the per-segment metadata of every MCAP
    file that is complete on disk (use after a crash between a segment's close and the
    metadata update, or when metadata.yaml was lost). Returns a report dict.
    The segment being written at the time of a kill (in `.<id>.partial/`) has no MCAP footer
    and is reported as lost: at most one flush period of data."""
    d = Path(episode_dir)
    seg_meta = sorted((d / SEGMENTS_DIR).glob("*.yaml"), key=segment_index) if (d / SEGMENTS_DIR).is_dir() else []
    segments, missing = [], []
    for m in seg_meta:
        meta = load_yaml(m)
        files = meta["rosbag2_bagfile_information"]["relative_file_paths"]
        if all((d / f).is_file() for f in files):
            segments.append(meta)
        else:
            missing.extend(files)
    partial = d.parent / f".{d.name}.partial"
    lost = sorted(str(p) for p in partial.glob("*")) if partial.is_dir() else []
    if not segments:
        return {"episode": str(d), "segments": 0, "messages": 0, "missing": missing, "lost_partial": lost}
    merged = merge_segment_metadata(segments)
    write_atomic(d / "metadata.yaml", dump_yaml(merged))
    info = merged["rosbag2_bagfile_information"]
    return {"episode": str(d), "segments": len(segments), "messages": info["message_count"],
            "missing": missing, "lost_partial": lost}


def typestore_for(connections=()):
    """A rosbags typestore with the standard ROS 2 types plus every custom type found in the
    bag's connections' message definitions (so lara_msgs/* deserialize without a ROS install)."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore
    ts = get_typestore(Stores.LATEST)
    add = {}
    for c in connections:
        if c.msgtype in ts.fielddefs or not getattr(c, "msgdef", None) or not c.msgdef.data:
            continue
        try:
            add.update(_types_from_concatenated_msgdef(c.msgtype, c.msgdef.data, get_types_from_msg))
        except Exception:  # noqa: BLE001 - unknown definition: the raw bytes are still readable
            pass
    if add:
        ts.register({k: v for k, v in add.items() if k not in ts.fielddefs})
    return ts


def _types_from_concatenated_msgdef(msgtype: str, text: str, parse) -> dict:
    """rosbag2 stores `msg` definitions with their dependencies appended after '=====' + 'MSG: x'."""
    parts = text.split("=" * 80)
    types = parse(parts[0], msgtype)
    for part in parts[1:]:
        part = part.strip()
        if part.startswith("MSG: "):
            name, _, body = part[5:].partition("\n")
            name = name.strip()
            if "/msg/" not in name:
                name = name.replace("/", "/msg/", 1)
            types.update(parse(body, name))
    return types


@dataclass
class Episode:
    path: Path
    meta: dict                          # episode_meta.json (empty if absent)
    topics: dict[str, str]              # topic -> msgtype
    messages: list = field(default_factory=list)   # (topic, timestamp_ns, message) in time order


def iter_messages(episode_dir: str | Path, topics: list[str] | None = None, raw: bool = False):
    """Yield (topic, msgtype, timestamp_ns, msg) from an episode bag (or any rosbag2 bag);
    msg is a rosbags message object, or CDR bytes with raw=True."""
    from rosbags.rosbag2 import Reader
    try:
        with Reader(Path(episode_dir)) as reader:
            conns = [c for c in reader.connections if topics is None or c.topic in topics]
            ts = None if raw else typestore_for(reader.connections)
            for conn, t, data in reader.messages(connections=conns):
                yield conn.topic, conn.msgtype, t, (data if raw else ts.deserialize_cdr(data, conn.msgtype))
    except BagError:
        raise
    except _read_errors() as exc:
        raise _bag_error(episode_dir, exc) from exc


def read_episode(episode_dir: str | Path, topics: list[str] | None = None, raw: bool = False) -> Episode:
    """Read a whole recorded episode: metadata + every message (deserialized with rosbags).
    For long image episodes prefer iter_messages (streaming)."""
    from rosbags.rosbag2 import Reader
    d = Path(episode_dir)
    meta_path = d / META_NAME
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    try:
        with Reader(d) as reader:
            tmap = {c.topic: c.msgtype for c in reader.connections}
    except _read_errors() as exc:
        raise _bag_error(d, exc) from exc
    msgs = [(topic, t, m) for topic, _, t, m in iter_messages(d, topics, raw)]
    return Episode(d, meta, tmap, msgs)


def bag_info(episode_dir: str | Path) -> dict:
    from rosbags.rosbag2 import Reader
    if not (Path(episode_dir) / "metadata.yaml").is_file():
        raise BagError(f"{Path(episode_dir) / 'metadata.yaml'} is missing: not a complete rosbag2 bag "
                       "(an interrupted recorder episode? try `recover`)")
    try:
        files = load_yaml(Path(episode_dir) / "metadata.yaml")["rosbag2_bagfile_information"]["relative_file_paths"]
        with Reader(Path(episode_dir)) as reader:
            return {"path": str(episode_dir), "files": len(files), "messages": reader.message_count,
                    "duration_s": reader.duration * 1e-9,
                    "topics": {c.topic: {"type": c.msgtype, "count": c.msgcount} for c in reader.connections}}
    except _read_errors() as exc:
        raise _bag_error(episode_dir, exc) from exc


BAG_COMMANDS = ("info", "recover", "dump")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`lara bag info|recover|dump EPISODE_DIR` (cli.py sets `lara_command`)."""
    parser.add_argument("episode_dir", metavar="EPISODE_DIR",
                        help="a recorder episode folder (<output_dir>/<episode_id>: metadata.yaml, *.mcap, "
                             "episode_meta.json)")


def run_command(command: str, episode_dir: str | Path) -> int:
    """info | recover | dump on one episode folder; bad input raises BagError (a LaraError)."""
    d = Path(episode_dir)
    try:
        if not d.is_dir():
            raise BagError(f"{d}: no such bag folder")
        if command == "dump" and not (d / "metadata.yaml").is_file():
            bag_info(d)          # the same message as info: metadata.yaml is missing
        if command == "recover":
            print(json.dumps(recover(d), indent=2))
        elif command == "info":
            print(json.dumps(bag_info(d), indent=2))
        else:
            for topic, mtype, t, _ in iter_messages(d, raw=True):
                print(f"{t} {topic} {mtype}")
    except LaraError:
        raise
    except _read_errors() as exc:  # recover on a damaged segment metadata file
        raise _bag_error(d, exc) from exc
    return 0


def run(args: argparse.Namespace) -> int:
    command = str(getattr(args, "lara_command", "")).split()[-1]
    if command not in BAG_COMMANDS:
        raise BagError(f"unknown bag command {command!r} (one of {', '.join(BAG_COMMANDS)})")
    return run_command(command, args.episode_dir)


def main(argv=None) -> int:
    """`python -m lara_policy.ros.bag_tools info|recover|dump EPISODE_DIR` (same as `lara bag ...`)."""
    ap = argparse.ArgumentParser(prog="python -m lara_policy.ros.bag_tools", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=BAG_COMMANDS, help="what to do with the episode folder")
    add_arguments(ap)
    a = ap.parse_args(argv)
    try:
        return run_command(a.command, a.episode_dir)
    except LaraError as exc:
        print(f"bag_tools {a.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())


# ------------------------------------------------------------------------------ offline evaluation
OBSERVATION_TOPICS = ["/camera/image_raw", "/joint_states", "/lara/ee_pose", "/lara/goal", "/lara/instruction"]


def replay(node, bag: str | Path, topics: list[str], rate: float = 1.0, clock: bool = True,
           match_timeout_s: float = 15.0, log=print) -> int:
    """Publish the recorded messages of `topics` (raw CDR, never deserialized) from `node` at the
    recorded timing / rate, plus /clock (rosgraph_msgs/Clock at the bag's time) for use_sim_time
    nodes: the in-process stand-in for `ros2 bag play --clock --topics ...`. Only the given
    (observation) topics are played, so no recorded command reaches the graph. Returns the count."""
    import time as _time

    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

    from lara_policy.ros.recorder_node import message_class
    from rosbags.rosbag2 import Reader
    qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=30, reliability=ReliabilityPolicy.RELIABLE)
    with Reader(Path(bag)) as reader:
        types = {c.topic: c.msgtype for c in reader.connections}
    pubs = {t: node.create_publisher(message_class(types[t]), t, qos) for t in topics if t in types}
    clock_pub = None
    if clock:
        from rosgraph_msgs.msg import Clock
        clock_pub = node.create_publisher(Clock, "/clock", 10)
    t_end = _time.monotonic() + match_timeout_s
    while _time.monotonic() < t_end and any(p.get_subscription_count() == 0 for p in pubs.values()):
        _time.sleep(0.05)
    unmatched = [t for t, p in pubs.items() if p.get_subscription_count() == 0]
    if unmatched:
        log(f"replay: no subscriber for {', '.join(unmatched)} (played anyway)")
    _time.sleep(0.5)
    n, t_first, w0 = 0, None, _time.monotonic()
    for topic, _, t_ns, data in iter_messages(bag, list(pubs), raw=True):
        if t_first is None:
            t_first = t_ns
        due = w0 + (t_ns - t_first) * 1e-9 / rate
        delay = due - _time.monotonic()
        if delay > 0:
            _time.sleep(delay)
        if clock_pub is not None:
            from builtin_interfaces.msg import Time
            from rosgraph_msgs.msg import Clock
            clock_pub.publish(Clock(clock=Time(sec=int(t_ns // 1_000_000_000), nanosec=int(t_ns % 1_000_000_000))))
        pubs[topic].publish(bytes(data))
        n += 1
    for p in pubs.values():
        node.destroy_publisher(p)
    if clock_pub is not None:
        node.destroy_publisher(clock_pub)
    return n


def run_offline_eval(graph, bags: list[str], out: str | Path, rate: float = 1.0,
                     topics: list[str] | None = None, log=print) -> dict:
    """`lara bringup offline_eval.yaml --bag ...`: replay each recorded episode's OBSERVATION topics
    into the graph's policy_node (instruction first, from episode_meta.json), let the recorder
    (autostarted) record the chunks and dynamics checks it publishes, stop the recorder, then
    score those chunks against the actions executed in the source bags with `lara eval bag`'s
    metrics (results.json/.md + plots in `out`)."""
    import time as _time

    from std_msgs.msg import String

    from lara_msgs.srv import StopEpisode
    from lara_policy.data.rosbag_convert import expand_sources
    from lara_policy.evaluation.bag_eval import episodes_for_policy, evaluate_bags, recorded_chunks, write_outputs
    policy_node = graph.nodes.get("policy_node")
    rec = graph.nodes.get("recorder_node")
    if policy_node is None or rec is None:
        raise RuntimeError("offline evaluation needs policy_node and recorder_node in the graph")
    if not rec.recording and not rec.get_parameter("autostart").value:
        raise RuntimeError("recorder_node is not recording: set its 'autostart: true' (offline_eval.yaml does)")
    episodes = expand_sources([Path(b) for b in bags])
    topics = list(topics or OBSERVATION_TOPICS)
    ins_pub = graph.client.create_publisher(String, policy_node.topics["instruction_topic"], 10)
    import numpy as np

    from lara_policy.core.api import Observation
    pm = policy_node.policy.meta
    for ep in episodes:
        meta_path = Path(ep) / META_NAME
        instruction = json.loads(meta_path.read_text()).get("instruction", "") if meta_path.is_file() else ""
        if instruction:
            # warm-up (as `ros2 bag play --delay`): a new instruction loads the language model on the
            # first prediction, which would otherwise swallow the first seconds of the replay
            policy_node.policy.predict_chunk(Observation(
                images={c: np.zeros((*pm.image_size, 3), np.uint8) for c in pm.cameras},
                state=np.zeros(pm.state_dim, np.float32), instruction=instruction), seed=0)
            for _ in range(3):
                ins_pub.publish(String(data=instruction))
                _time.sleep(0.1)
        n = replay(graph.client, ep, [t for t in topics if t != policy_node.topics["instruction_topic"]
                                      or not instruction], rate=rate, log=log)
        log(f"offline_eval: replayed {n} observation messages of {ep}")
        last, t_quiet = policy_node.chunks_published, _time.monotonic()
        while _time.monotonic() - t_quiet < 1.0:      # the last prediction lands in the recording
            _time.sleep(0.1)
            if policy_node.chunks_published != last:
                last, t_quiet = policy_node.chunks_published, _time.monotonic()
    if not rec.recording:
        raise RuntimeError("policy_node published no chunk during the replay (nothing was recorded); see its log")
    r = graph.call(StopEpisode, rec.get_parameter("stop_service").value,
                   StopEpisode.Request(task_success=False, notes=f"offline_eval of {len(episodes)} episode(s)"),
                   timeout=120.0)     # closing flushes the last segment: slow on a loaded disk
    if not r.success:
        raise RuntimeError(f"recorder stop failed: {r.message}")
    policy = policy_node.policy
    eps = episodes_for_policy(episodes, policy.meta, None, None, trim=True)
    res = evaluate_bags(policy, eps, recorded=recorded_chunks(Path(r.bag_path)),
                        num_candidates=int(policy_node.get_parameter("num_candidates").value))
    res["bags"] = [str(b) for b in episodes]
    res["eval_recording"] = r.bag_path
    write_outputs(res, Path(out))
    return res

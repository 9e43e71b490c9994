"""Offline evaluation through the ROS graph (`lara bringup offline_eval.yaml --bag ...`): replay
recorded observation topics into policy_node, record what it publishes, score it with
`lara eval bag`'s metrics."""
from __future__ import annotations

import json
from pathlib import Path

from lara_policy.formats.rosbag.layout import META_NAME
from lara_policy.formats.rosbag.reader import iter_messages


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
    from lara_policy.formats.rosbag import expand_sources
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

    from lara_policy.common.policy_api import Observation
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

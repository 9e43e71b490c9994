"""`lara bench ros`: camera -> command latency through the ROS graph and control-tick
regularity while inference runs.

Runs sim_node + policy_node + command_node from a lara_bringup config in one process (as
`lara bringup` does) over real DDS, arms the command node for --duration seconds on one
Meta-World episode, and measures from a probe node subscribed to the graph's topics:

- cam_to_cmd: for every ActionChunk, (arrival of the first TwistStamped command published
  after the chunk arrived) - (the chunk's stamp = capture time of the camera frame it was
  predicted from): camera frame -> policy -> command_node -> Servo command.
- cam_to_chunk: chunk arrival - its camera stamp (the policy_node part alone).
- inference: policy_node's predict_chunk wall time.
- control ticks: intervals between the command node's TwistStamped header stamps while armed;
  a gap of k periods (k >= 2, i.e. > 1.5 periods) counts k - 1 missed ticks.
- breakdown (policy_node in this process): camera -> command split into transport, decode,
  queue, model, publish (policy_node's own per-chunk timings, ros/chunk_timing.py), delivery
  (chunk handed to DDS -> arrival at the probe) and tick wait (chunk arrival -> the first command
  after it: the control loop runs on its own clock, so a chunk waits for the next tick).

The policy is the config's checkpoint (or --checkpoint); without one, a RANDOM-INIT model of
the default size is built (same inference cost as a trained one; reported as such).
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import threading
import time

import numpy as np

TARGET_CAM_TO_CMD_P50_MS = 50.0


def _pct(values, q):
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if len(values) else float("nan")


def build_random_checkpoint(path: str, task: str) -> str:
    """A default-size LARA checkpoint with random weights (for latency measurement only)."""
    from lara_policy.core.checkpoint import save_checkpoint
    from lara_policy.core.configuration import ModelConfig
    from lara_policy.core.modeling import LaraModel
    from lara_policy.core.processing import NormStats, TextEmbedder
    from lara_policy.sim.metaworld_env import ACTION_DIM, STATE_NAMES
    from lara_policy.sim.phrasings import TASK_PHRASINGS

    import torch
    torch.manual_seed(0)
    cfg = ModelConfig(name="random-init-default", variant="lara")
    cfg.state_names = list(STATE_NAMES)
    model = LaraModel(cfg)
    stats = NormStats([0.0] * ACTION_DIM, [0.5] * ACTION_DIM, [0.0] * len(STATE_NAMES), [0.3] * len(STATE_NAMES))
    instructions = list(TASK_PHRASINGS.get(task, ["move the gripper to the target"]))
    emb, mask = TextEmbedder.get().embed(instructions, cfg.vla.text_tokens)
    save_checkpoint(path, model, cfg, stats=stats, instructions=instructions, text=(emb, mask))
    return path


class Probe:
    """Records chunk and command arrivals (a node in the same executor)."""

    def __init__(self, rclpy, twist_topic: str, chunk_topic: str):
        from geometry_msgs.msg import TwistStamped

        from lara_msgs.msg import ActionChunk
        from lara_policy.ros.codec import stamp_to_sec

        self.node = rclpy.create_node("lara_bench_probe")
        self.clock = self.node.get_clock()
        self.recording = False
        self.chunks: list[tuple[float, float]] = []   # (arrival, stamp)
        self.twists: list[tuple[float, float]] = []   # (arrival, header stamp)
        self._lock = threading.Lock()
        self._s = stamp_to_sec
        self.node.create_subscription(ActionChunk, chunk_topic, self._on_chunk, 50)
        self.node.create_subscription(TwistStamped, twist_topic, self._on_twist, 50)

    def now(self) -> float:
        return self.clock.now().nanoseconds * 1e-9

    def _on_chunk(self, msg) -> None:
        if self.recording:
            with self._lock:
                self.chunks.append((self.now(), self._s(msg.header.stamp)))

    def _on_twist(self, msg) -> None:
        if self.recording:
            with self._lock:
                self.twists.append((self.now(), self._s(msg.header.stamp)))


def analyse(chunks, twists, period: float, warmup_s: float = 0.5, published: dict | None = None) -> dict:
    """Figures from the probe's (arrival, stamp) of chunks and twists; `published` maps a chunk's
    stamp to the time policy_node handed it to DDS (its timings), for the delivery part."""
    chunks = sorted(chunks)
    twists = sorted(twists)
    t_first = twists[0][0] if twists else 0.0
    arrivals = np.array([t for t, _ in twists])
    cam_to_cmd, cam_to_chunk, tick_wait, delivery = [], [], [], []
    for arrival, stamp in chunks:
        if arrival < t_first + warmup_s:
            continue
        cam_to_chunk.append((arrival - stamp) * 1e3)
        if published and stamp in published:
            delivery.append((arrival - published[stamp]) * 1e3)
        i = int(np.searchsorted(arrivals, arrival, side="right"))
        if i < len(arrivals):
            cam_to_cmd.append((arrivals[i] - stamp) * 1e3)
            tick_wait.append((arrivals[i] - arrival) * 1e3)
    stamps = np.array([s for _, s in twists if s > 0])
    stamps = stamps[stamps >= (stamps[0] + warmup_s if len(stamps) else 0)]
    intervals = np.diff(stamps) if len(stamps) > 1 else np.array([])
    missed = int(sum(int(round(iv / period)) - 1 for iv in intervals if iv > 1.5 * period))
    return {
        "cam_to_cmd_p50_ms": _pct(cam_to_cmd, 50), "cam_to_cmd_p95_ms": _pct(cam_to_cmd, 95),
        "cam_to_cmd_max_ms": float(max(cam_to_cmd)) if cam_to_cmd else float("nan"),
        "cam_to_chunk_p50_ms": _pct(cam_to_chunk, 50), "cam_to_chunk_p95_ms": _pct(cam_to_chunk, 95),
        "delivery_p50_ms": _pct(delivery, 50), "tick_wait_p50_ms": _pct(tick_wait, 50),
        "tick_wait_p95_ms": _pct(tick_wait, 95),
        "chunks_measured": len(cam_to_cmd),
        "ticks": int(len(stamps)), "missed_ticks": missed,
        "tick_interval_p50_ms": _pct(intervals * 1e3, 50), "tick_interval_p99_ms": _pct(intervals * 1e3, 99),
        "tick_interval_max_ms": float(intervals.max() * 1e3) if len(intervals) else float("nan"),
        "late_ticks_over_1p5_periods": int((intervals > 1.5 * period).sum()),
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from lara_policy.common.args import deprecated_alias, positive_float
    from lara_policy.common.errors import positive_int
    parser.description = __doc__
    parser.add_argument("--config", default="sim", help="lara_bringup config with sim/policy/command nodes")
    parser.add_argument("--checkpoint", help="LARA checkpoint (default: the config's; random-init default "
                                             "model when that does not exist)")
    parser.add_argument("--task", default="reach-v3", help="Meta-World task the sim_node runs")
    parser.add_argument("--seed-start", type=int, default=1000,
                        help="layout seed of the simulated scene (as in lara eval sim / lara bringup)")
    deprecated_alias(parser, "--seed", "--seed-start", dest="seed_start", type=int)
    parser.add_argument("--duration", type=positive_float, default=15.0, help="seconds armed and measured")
    parser.add_argument("--num-candidates", type=positive_int, default=1, help="> 1 runs the dynamics check")
    parser.add_argument("--device", default="", help="torch device (default: auto)")
    parser.add_argument("--runtime", choices=("torch", "onnxruntime", "onnxruntime-int8"), default="torch",
                        help="policy_node's inference runtime (onnxruntime: the exported graphs, exported on "
                             "first use when the checkpoint has none)")
    parser.add_argument("--rtc", action="store_true", help="policy_node samples with real-time chunking (torch)")
    parser.add_argument("--control-priority", choices=("normal", "high", "realtime"), default="normal",
                        help="scheduling priority of the control thread, where permitted")
    parser.add_argument("--policy-process", action="store_true",
                        help="run policy_node in its own process (as `ros2 launch` does) instead of in "
                             "the bench process next to the control loop")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON (parent folders created)")
    deprecated_alias(parser, "--out", "--json", dest="json")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 when a target is missed (camera->command p50, missed ticks; default: report only)")


def run(args: argparse.Namespace) -> int:
    from lara_policy.ros.bringup import BringupError, Graph, bringup_settings, resolve_config
    from lara_policy.ros.params import load_params_yaml, node_params, resolve_path

    try:
        config = load_params_yaml(resolve_config(args.config))
    except (BringupError, FileNotFoundError, ValueError) as exc:
        print(f"lara bench ros: {exc}", file=sys.stderr)
        return 2
    bring = bringup_settings(config)
    ckpt = args.checkpoint or node_params(config, "policy_node").get("checkpoint") or bring.get("checkpoint", "")
    ckpt = resolve_path(str(ckpt)) if ckpt else ""
    tmpdir = None
    source = "checkpoint"
    if args.checkpoint and not os.path.isdir(ckpt):
        print(f"lara bench ros: checkpoint not found: {ckpt}", file=sys.stderr)
        return 2
    if not (ckpt and os.path.isdir(ckpt)):
        tmpdir = tempfile.TemporaryDirectory(prefix="lara_bench_")
        print(f"lara bench ros: no checkpoint at '{ckpt}': building a random-init default-size model "
              "(latency only)", flush=True)
        ckpt = build_random_checkpoint(os.path.join(tmpdir.name, "random"), args.task)
        source = "random-init default-size model (no trained checkpoint found)"

    if "ROS_DOMAIN_ID" not in os.environ:
        # a private domain: another graph on this machine (a test, `lara bringup`) publishing the
        # same topics would be counted as this graph's chunks and ticks (measured: 2x the ticks)
        os.environ["ROS_DOMAIN_ID"] = str(150 + os.getpid() % 80)
        print(f"lara bench ros: ROS_DOMAIN_ID {os.environ['ROS_DOMAIN_ID']} (private; set ROS_DOMAIN_ID to choose)")
    import rclpy
    from std_srvs.srv import Trigger

    from lara_msgs.srv import SetInstruction
    rclpy.init()
    graph = None
    try:
        overrides = {"sim_node": {"task": args.task, "seed": args.seed_start, "auto_reset": True},
                     "policy_node": {"checkpoint": ckpt, "num_candidates": int(args.num_candidates),
                                     "runtime": args.runtime, "rtc": bool(args.rtc)}}
        if args.device:
            overrides["policy_node"]["device"] = args.device
        # the graph of `lara bringup`; with --policy-process its policy_node is a child process
        # (RemotePolicy: started and waited for by Graph, stopped by graph.close())
        graph = Graph(config, ["sim_node", "policy_node", "command_node"], overrides=overrides,
                      control_priority=args.control_priority, policy_process=args.policy_process)
        sim, cmd = graph.nodes["sim_node"], graph.nodes["command_node"]
        policy = graph.policy                    # the in-process node or the RemotePolicy handle
        pol = graph.nodes.get("policy_node")     # in-process only: its inference times
        chunk_topic = node_params(config, "policy_node").get("action_chunk_topic", "/lara/action_chunk")
        probe = Probe(rclpy, cmd.get_parameter("twist_topic").value, chunk_topic)
        graph.executor.add_node(probe.node)
        period = 1.0 / float(cmd.get_parameter("control_rate_hz").value)
        ok, msg = sim.reset_episode()
        if not ok:
            raise BringupError(msg)
        # one way for both placements: the policy's services, as Graph.run_episode uses them
        graph.call(Trigger, policy.topics["reset_service"], Trigger.Request())
        r = graph.call(SetInstruction, policy.topics["set_instruction_service"],
                       SetInstruction.Request(instruction=sim.instruction), timeout=20.0)
        if not r.success:
            raise BringupError(f"policy refused the instruction: {r.message}")
        probe.recording = True   # chunks before arming are only used to wait for the first one
        t_wait = time.monotonic()
        while not probe.chunks and time.monotonic() - t_wait < 60:
            time.sleep(0.02)
        if not probe.chunks:
            raise BringupError(f"policy published no chunk: {policy.last_rejection}")
        probe.chunks.clear()
        probe.twists.clear()
        if pol is not None:
            pol.inference_ms.clear()
            pol.timings.clear()
        graph.arm()
        load0 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        time.sleep(args.duration)
        probe.recording = False
        graph.disarm()
        published = {r[0]: r[5] for r in pol.timings.records} if pol is not None else None
        res = analyse(probe.chunks, probe.twists, period, published=published)
        if pol is not None:
            res["breakdown"] = {**pol.timings.summary(), "delivery_p50_ms": res["delivery_p50_ms"],
                                "tick_wait_p50_ms": res["tick_wait_p50_ms"], "tick_wait_p95_ms": res["tick_wait_p95_ms"]}
        res.update({
            "control_rate_hz": 1.0 / period, "duration_s": args.duration,
            "inference_p50_ms": _pct(pol.inference_ms, 50) if pol else float("nan"),
            "inference_p95_ms": _pct(pol.inference_ms, 95) if pol else float("nan"),
            "num_candidates": int(args.num_candidates), "runtime": args.runtime, "rtc": bool(args.rtc),
            "policy_in": "this process" if pol else "a separate process",
            "model_id": pol.meta.model_id if pol else "", "policy": source, "sim_steps": int(sim.steps),
            "sim_success": bool(sim.success), "sim_late_ticks": int(sim.late_ticks),
            "control_priority": graph.control_priority_applied,
            "command_faults": sorted({r.reason.split(":")[0] for r in cmd.tick_log if r.state == "fault"}),
            "targets": {"cam_to_cmd_p50_ms": TARGET_CAM_TO_CMD_P50_MS, "missed_ticks": 0},
            "host": {"cpus": os.cpu_count(), "loadavg_1min_at_start": load0, "python": platform.python_version()},
        })
        res["pass"] = bool(res["cam_to_cmd_p50_ms"] <= TARGET_CAM_TO_CMD_P50_MS and res["missed_ticks"] == 0)
    except (BringupError, ValueError, FileNotFoundError, RuntimeError, ImportError) as exc:
        print(f"lara bench ros: {exc}", file=sys.stderr)
        return 1
    finally:
        if graph is not None:
            graph.close()
        if rclpy.ok():
            rclpy.shutdown()
        if tmpdir is not None:
            tmpdir.cleanup()
    print(f"policy_node ran in {res['policy_in']}")
    print(f"camera -> command through ROS: p50 {res['cam_to_cmd_p50_ms']:.1f} ms, p95 "
          f"{res['cam_to_cmd_p95_ms']:.1f} ms over {res['chunks_measured']} chunks (target p50 <= "
          f"{TARGET_CAM_TO_CMD_P50_MS:.0f} ms); camera -> chunk p50 {res['cam_to_chunk_p50_ms']:.1f} ms; "
          f"inference p50 {res['inference_p50_ms']:.1f} ms (N={res['num_candidates']}, runtime {res['runtime']}"
          f"{', rtc' if res['rtc'] else ''})")
    b = res.get("breakdown")
    if b:
        parts = [("transport", "transport"), ("decode", "decode"), ("queue", "queue"), ("model", "model"),
                 ("publish", "publish"), ("delivery", "delivery"), ("tick wait", "tick_wait")]
        print("camera -> command, p50 per part (ms): " + ", ".join(f"{label} {b[f'{key}_p50_ms']:.1f}"
                                                                    for label, key in parts))
    print(f"control ticks at {res['control_rate_hz']:.0f} Hz: {res['ticks']} ticks, {res['missed_ticks']} missed, "
          f"interval p50 {res['tick_interval_p50_ms']:.1f} ms, p99 {res['tick_interval_p99_ms']:.1f} ms, max "
          f"{res['tick_interval_max_ms']:.1f} ms; policy: {res['policy']}")
    if args.json:
        from lara_policy.common.args import write_json
        write_json(args.json, res)
        print(f"wrote {args.json}")
    return 1 if args.check and not res["pass"] else 0

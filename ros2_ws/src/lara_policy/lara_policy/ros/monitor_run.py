"""`lara monitor ros`: the fault monitors through the ROS graph (issue 25), with a real checkpoint.

Runs sim_node + policy_node + command_node of a lara_bringup config in one process over real DDS
(the graph of `lara bringup`), on held-out layouts (seeds --seed-start, +1, ... per task):

- fault episodes: sim_node jams the arm (`fault` frozen-arm) from a seeded random step per layout
  (fault_onset_step..fault_onset_max_step, fault_seed: the same onset step for the same layout as
  `lara eval sim --fault frozen-arm --fault-onset 24,56`); policy_node runs the LAM monitor with the
  checkpoint's monitor.json (read when the command starts; --threshold/--debounce override it);
  command_node has hold_on_monitor_alarm. The episode runs until --post-onset-steps after the onset
  (240, as `lara eval sim --monitor`) or --after-hold-s after a hold.
- `--fault frozen-camera`: sim_node re-sends its last frame with fresh stamps from the onset (FaultyEnv,
  as `lara eval sim`) and camera_watch_node (the camera-motion detector without a LAM: the hand moved,
  the image did not) runs beside the LAM monitor (`--monitors`), with monitor.json's camera_threshold
  (--camera-threshold overrides it), its debounce and the checkpoint's LAM frame gap as the window,
  as `lara eval sim --monitor` judges it. Each monitor's first alarm is recorded; the hold names the
  monitor whose alarm it was.
- fault-free episodes (--normal-episodes per task, a graph without the fault): --normal-steps of
  normal operation (400, as experiments/monitor_eval.sh); any alarm or hold there is a false alarm.

Per episode, on this process's ROS clock: the fault onset (sim side: the tick at which sim_node's
step counter reaches the onset step, polled every 5 ms), the first /lara/monitor_alarm arrival at
a probe node, the first lara_msgs/SafetyStatus in FAULT with the monitor's reason (command_node
holding), the sim step at each, and, for a fault nobody caught, what the arm did: the share of
command_node's control ticks after the onset that commanded motion and how far the hand moved.
Delays are given in wall seconds and in sim steps x Meta-World's dt (12.5 ms), the unit of
`lara eval sim --monitor` (results/monitor/<model>/table.md): sim_node steps once per control tick
(30 Hz in sim.yaml), so one sim step is 33 ms of wall time here, 12.5 ms there.

Resumable: every finished episode is appended to OUT/episodes.jsonl with the id of its settings
(checkpoint, threshold, debounce, rates, onset range); a rerun skips the episodes done with the
same settings, and OUT/results.json + OUT/table.md summarise those. A checkpoint inside the
repository is written relative to its root (no machine paths in results).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import threading
import time
from pathlib import Path

import numpy as np

# the summary and table (re-exported: monitor_run.summarise / .table)
from lara_policy.ros.monitor_report import (COAST_STEPS, METAWORLD_DT, _monitors_text,  # noqa: F401
                                            in_sim_reference, repo_relative, summarise, table)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from lara_policy.common.args import add_list_option, non_negative_float, positive_float
    from lara_policy.common.errors import non_negative_int, positive_int, positive_int_list
    parser.description = __doc__
    parser.add_argument("--config", default="sim", help="lara_bringup config with sim/policy/command nodes")
    parser.add_argument("--checkpoint", default="models/lara-metaworld-mt3",
                        help="checkpoint with a LAM and monitor.json (relative to the repository root or absolute)")
    add_list_option(parser, "--tasks", default=["MT3"], metavar="TASK", help="tasks and/or suites (MT3, MT10)")
    parser.add_argument("--episodes", type=non_negative_int, default=3, help="fault episodes per task")
    parser.add_argument("--normal-episodes", type=non_negative_int, default=1,
                        help="fault-free episodes per task (false alarms)")
    parser.add_argument("--seed-start", type=int, default=100000, help="first held-out layout seed")
    parser.add_argument("--fault", default="frozen-arm", choices=("frozen-arm", "frozen-camera", "object-teleport"),
                        help="the fault sim_node injects")
    parser.add_argument("--fault-onset", type=positive_int_list, default=[24, 56], metavar="MIN,MAX",
                        help="onset step uniform in [MIN, MAX] per layout (as lara eval sim --fault-onset)")
    parser.add_argument("--fault-seed", type=int, default=0, help="seed of the onset draw (lara eval sim: 0)")
    parser.add_argument("--post-onset-steps", type=positive_int, default=240,
                        help="a fault episode ends this many sim steps after the onset (lara eval sim: 240)")
    parser.add_argument("--normal-steps", type=positive_int, default=400,
                        help="sim steps of a fault-free episode (experiments/monitor_eval.sh: 400)")
    parser.add_argument("--after-hold-s", type=non_negative_float, default=1.0,
                        help="seconds a fault episode goes on after command_node holds (checks it stays held)")
    parser.add_argument("--not-following-s", type=non_negative_float, default=0.0, metavar="S",
                        help="also hold when the arm does not follow the commands for S seconds (command_node "
                             "max_not_following_s: the detector without a LAM, beside the LAM monitor; 0: off)")
    parser.add_argument("--monitors", default="auto", choices=("auto", "lam", "camera", "lam,camera"),
                        metavar="auto|lam|camera|lam,camera",
                        help="monitors in the graph: lam (policy_node's LAM monitor), camera (camera_watch_node); "
                             "auto: lam,camera for frozen-camera, else lam")
    parser.add_argument("--camera-threshold", type=float, default=-1.0,
                        help="camera_watch_node's stillness threshold (-1: monitor.json's camera_threshold)")
    parser.add_argument("--threshold", type=float, default=-1.0, help="monitor threshold (-1: monitor.json's)")
    parser.add_argument("--debounce", type=non_negative_int, default=0, help="chunks in a row (0: monitor.json's)")
    parser.add_argument("--control-rate-hz", type=positive_float, default=None,
                        help="control/sim rate of every node (default: the config's)")
    parser.add_argument("--out", default="", help="results folder (default results/monitor/<checkpoint name>/ros, "
                        "ros_camera for frozen-camera, ros_teleport for object-teleport)")
    parser.add_argument("--fresh", action="store_true", help="start over: ignore OUT/episodes.jsonl")
    parser.add_argument("--quiet", action="store_true", help="no per-episode lines")


# ------------------------------------------------------------------ the probe

class _Probe:
    """Alarm and safety-status arrivals (a node in the graph's executor), stamped on its clock
    with the sim step at arrival."""

    def __init__(self, rclpy, sim, alarm_topic: str, status_topic: str):
        from std_msgs.msg import String

        from lara_msgs.msg import SafetyStatus
        self.node = rclpy.create_node("lara_monitor_probe")
        self.clock = self.node.get_clock()
        self.sim = sim
        self._lock = threading.Lock()
        self.alarms: list[tuple[float, int, str]] = []
        self.holds: list[tuple[float, int, str]] = []       # SafetyStatus FAULT with the monitor's reason
        self.other_faults: set[str] = set()
        self.node.create_subscription(String, alarm_topic, self._on_alarm, 50)
        self.node.create_subscription(SafetyStatus, status_topic, self._on_status, 50)

    def now(self) -> float:
        return self.clock.now().nanoseconds * 1e-9

    def clear(self) -> None:
        with self._lock:
            self.alarms, self.holds, self.other_faults = [], [], set()

    def _on_alarm(self, msg) -> None:
        with self._lock:
            self.alarms.append((self.now(), int(self.sim.steps), msg.data))

    def _on_status(self, msg) -> None:
        if msg.state != "fault":
            return
        with self._lock:
            if any(h in msg.reason for h in HOLD_REASONS):
                self.holds.append((self.now(), int(self.sim.steps), msg.reason))
            else:
                self.other_faults.add(msg.reason.split(":")[0][:80])


# ------------------------------------------------------------------ one episode

# command_node faults that hold the arm for a detected fault: the monitors' alarms (hold_on_monitor_alarm)
# and, with --not-following-s, its hand-not-following watch (motion_watch.py)
HOLD_REASONS = ("LAM monitor", "camera monitor", "arm not following")
MONITOR_OF = {"LAM monitor": "lam", "camera monitor": "camera", "arm not following": "not_following"}
OUT_DIRS = {"frozen-arm": "ros", "frozen-camera": "ros_camera", "object-teleport": "ros_teleport"}


def _monitor_of(reason: str) -> str:
    return next((m for prefix, m in MONITOR_OF.items() if reason.startswith(prefix)), "other")

def _path_length(points: list) -> float:
    if len(points) < 2:
        return 0.0
    p = np.asarray(points, dtype=np.float64)
    return float(np.linalg.norm(np.diff(p, axis=0), axis=1).sum())


def run_episode(graph, probe, task: str, seed: int, kind: str, s: dict) -> dict:
    """One episode; `kind` 'fault' or 'none'. Returns its record (times relative to arming)."""
    from rclpy.parameter import Parameter
    from std_srvs.srv import Trigger

    from lara_msgs.srv import SetInstruction
    from lara_policy.ros.bringup import BringupError
    sim, pol, cmd = (graph.nodes[n] for n in ("sim_node", "policy_node", "command_node"))
    graph.disarm()
    sim.set_parameters([Parameter("task", value=task), Parameter("seed", value=int(seed))])
    r = graph.call(Trigger, sim.topics["reset_service"], Trigger.Request(), timeout=120.0)
    if not r.success:
        raise BringupError(f"sim reset failed: {r.message}")
    graph.call(Trigger, pol.topics["reset_service"], Trigger.Request())
    r = graph.call(SetInstruction, pol.topics["set_instruction_service"],
                   SetInstruction.Request(instruction=sim.instruction))
    if not r.success:
        raise BringupError(f"policy refused the instruction: {r.message}")
    chunks_before, t_wait = pol.chunks_published, time.monotonic()
    while pol.chunks_published <= chunks_before and time.monotonic() - t_wait < 30.0:
        time.sleep(0.01)
    if pol.chunks_published <= chunks_before:
        raise BringupError(f"no action chunk within 30 s ({pol.last_rejection})")
    onset = sim.fault_onset if kind == "fault" else None
    end_step = (onset + s["post_onset_steps"]) if onset is not None else s["normal_steps"]
    period = 1.0 / s["control_rate_hz"]
    n_surprises = len(pol.surprises)
    watch = graph.nodes.get("camera_watch_node")
    n_stillness = len(watch.scores) if watch is not None else 0
    probe.clear()
    t0 = probe.now()
    graph.arm()
    onset_t = None
    pre, post = [], []              # hand positions before / after the onset (one per sim step seen)
    post_steps: list[int] = []
    last_step, timeout = -1, end_step * period * 3.0 + 30.0
    end_reason = "timeout"
    while probe.now() - t0 < timeout:
        now, steps, state = probe.now(), int(sim.steps), sim.state
        if steps != last_step and state is not None:
            last_step = steps
            if onset is not None and onset_t is None and steps >= onset:
                onset_t = now
            (post if onset_t is not None else pre).append(state[:3].tolist())
            if onset_t is not None:
                post_steps.append(steps)
        holds = list(probe.holds)
        if holds and now - holds[0][0] >= s["after_hold_s"]:
            end_reason = "held"
            break
        if steps >= end_step:
            end_reason = "steps"
            break
        time.sleep(0.005)
    t_end = probe.now()
    graph.disarm()
    alarms, holds = list(probe.alarms), list(probe.holds)
    ticks = [t for t in list(cmd.tick_log) if t0 <= t.t <= t_end]
    hold_tick = next((t.t for t in ticks if any(h in t.reason for h in HOLD_REASONS)), None)
    ref = onset_t if onset_t is not None else t_end
    alarm_after = [a for a in alarms if onset_t is not None and a[0] >= onset_t]
    alarm_before = [a for a in alarms if onset_t is None or a[0] < onset_t]
    hold_after = [h for h in holds if onset_t is not None and h[0] >= onset_t]
    stop = hold_after[0][0] if hold_after else t_end
    frozen_ticks = [t for t in ticks if onset_t is not None and onset_t <= t.t < stop]
    after_hold = [t for t in ticks if hold_tick is not None and t.t > hold_tick]
    surprises = [(cs, v) for cs, _lag, v in pol.surprises[n_surprises:]]
    stillness = [(t, v) for t, v, _path in list(watch.scores)[n_stillness:]] if watch is not None else []
    after_onset = [v for cs, v in surprises if onset_t is not None and cs >= onset_t and not math.isnan(v)]
    rel = lambda t: None if t is None else round(t - t0, 4)   # noqa: E731
    rec = {
        "kind": kind, "task": task, "seed": int(seed), "instruction": sim.instruction,
        "settings_id": s["id"], "end": end_reason, "steps": int(sim.steps), "wall_s": round(t_end - t0, 3),
        "success": bool(sim.success),
        "onset_step": onset, "onset_s": rel(onset_t), "fault_reached": onset_t is not None,
        "alarm_s": rel(alarm_after[0][0]) if alarm_after else None,
        "alarm_step": alarm_after[0][1] if alarm_after else None,
        "hold_s": rel(hold_after[0][0]) if hold_after else None,
        "hold_step": hold_after[0][1] if hold_after else None,
        "hold_tick_s": rel(hold_tick), "hold_reason": hold_after[0][2] if hold_after else "",
        "false_alarms": len(alarm_before), "false_holds": int(any(onset_t is None or h[0] < onset_t for h in holds)),
        "moving_ticks_after_hold": sum(t.moving for t in after_hold), "ticks_after_hold": len(after_hold),
        # a fault nobody caught: command_node keeps commanding, the hand does not follow
        "commanding_share_while_frozen": (round(sum(t.moving for t in frozen_ticks) / len(frozen_ticks), 3)
                                          if frozen_ticks else None),
        "frozen_s_unheld": round(stop - ref, 3) if onset_t is not None else None,
        "hand_path_before_onset_m": round(_path_length(pre), 4),
        "hand_path_after_onset_m": round(_path_length(post), 4),
        # Meta-World's hand follows a mocap target through a weld: it coasts a few cm over the first
        # steps of a freeze, then creeps; what it does after COAST_STEPS is the frozen arm
        "hand_path_after_coast_m": round(_path_length([p for p, k in zip(post, post_steps)
                                                       if onset is not None and k >= onset + COAST_STEPS]), 4),
        "commanded_path_while_frozen_m": round(sum(float(np.linalg.norm(t.linear)) * period
                                                   for t in frozen_ticks if t.moving), 4),
        "fault_ticks": {k: sum(1 for t in ticks if t.state == "fault" and t.reason.split(":")[0][:60] == k)
                        for k in sorted({t.reason.split(":")[0][:60] for t in ticks if t.state == "fault"})},
        "ticks": len(ticks),
        "other_faults": sorted(probe.other_faults),
        "surprises": [[round(cs - t0, 3), None if math.isnan(v) else round(v, 4)] for cs, v in surprises],
        "surprise_max_after_onset": round(max(after_onset), 4) if after_onset else None,
        "surprise_nan": sum(math.isnan(v) for _, v in surprises),
        "hold_monitor": _monitor_of(hold_after[0][2]) if hold_after else None,
    }
    if watch is not None:       # camera_watch_node's judgements (stamp, stillness) and its alarms
        rec["stillness"] = [[round(t - t0, 3), round(v, 4)] for t, v in stillness]
        rec["stillness_max_before_onset"] = max((v for t, v in stillness if onset_t is None or t < onset_t),
                                                default=None)
    by = {}
    for a in alarm_after:
        by.setdefault(_monitor_of(a[2]), a)
    rec["first_alarm_monitor"] = _monitor_of(alarm_after[0][2]) if alarm_after else None
    rec["false_alarms_by"] = {m: sum(_monitor_of(a[2]) == m for a in alarm_before)
                              for m in sorted({_monitor_of(a[2]) for a in alarm_before})}
    if onset_t is not None:
        for key, t, step in (("alarm", rec["alarm_s"], rec["alarm_step"]), ("hold", rec["hold_s"], rec["hold_step"])):
            rec[f"{key}_delay_wall_s"] = None if t is None else round(t - rec["onset_s"], 3)
            rec[f"{key}_delay_steps"] = None if step is None else int(step - onset)
            rec[f"{key}_delay_sim_s"] = None if step is None else round((step - onset) * METAWORLD_DT, 4)
        rec["alarm_to_hold_ms"] = (None if rec["alarm_s"] is None or rec["hold_s"] is None
                                   else round((rec["hold_s"] - rec["alarm_s"]) * 1e3, 1))
        rec["alarms_by"] = {m: {"s": rel(t), "step": step, "delay_wall_s": round(t - onset_t, 3),
                                "delay_steps": int(step - onset), "delay_sim_s": round((step - onset) * METAWORLD_DT, 4)}
                            for m, (t, step, _r) in by.items()}
    return rec


# ------------------------------------------------------------------ the command

def _settings(args, ckpt: Path, config: dict) -> dict:
    from lara_policy.core.monitor import MonitorConfig
    from lara_policy.ros.bringup import BringupError
    from lara_policy.ros.params import node_params
    mc = MonitorConfig.load(ckpt)
    mons = (["lam", "camera"] if args.fault == "frozen-camera" else ["lam"]) if args.monitors == "auto" \
        else args.monitors.split(",")
    if mc is None and "lam" in mons and (args.threshold < 0 or args.debounce <= 0):
        raise BringupError(f"no monitor.json in {ckpt}: calibrate it (`lara eval sim --monitor --calibrate-monitor`) "
                           "or give --threshold and --debounce")
    rate = args.control_rate_hz or float(node_params(config, "sim_node").get("control_rate_hz", 30.0))
    lo, hi = (list(args.fault_onset) + [args.fault_onset[-1]])[:2]
    meta = json.loads((ckpt / "meta.json").read_text()) if (ckpt / "meta.json").is_file() else {}
    s = {"checkpoint": repo_relative(ckpt), "model_id": meta.get("model_id", ckpt.name), "config": args.config,
         "fault": args.fault, "fault_onset": [lo, hi], "fault_seed": args.fault_seed,
         "threshold": args.threshold if args.threshold >= 0 else (float(mc.threshold) if mc else -1.0),
         "debounce": args.debounce if args.debounce > 0 else (int(mc.debounce) if mc else 2),
         "threshold_source": "--threshold/--debounce" if args.threshold >= 0 else f"{ckpt.name}/monitor.json",
         "control_rate_hz": rate, "post_onset_steps": args.post_onset_steps, "normal_steps": args.normal_steps,
         "after_hold_s": args.after_hold_s}
    if args.not_following_s > 0:      # only when set: earlier runs keep their id
        s["not_following_s"] = args.not_following_s
    if mons != ["lam"]:               # the same
        s["monitors"] = mons
    if "camera" in mons:              # camera_watch_node as `lara eval sim --monitor` judges the camera
        from lara_policy.ros.camera_watch_node import DEFAULT_WINDOW, checkpoint_window
        cam = args.camera_threshold if args.camera_threshold >= 0 else (mc.camera_threshold if mc else None)
        if cam is None:
            raise BringupError(f"no camera_threshold in {ckpt}/monitor.json: calibrate it (`lara eval sim --monitor "
                               "--calibrate-monitor`) or give --camera-threshold")
        cam_debounce = args.debounce if args.debounce > 0 else ((mc.camera_debounce if mc else None) or s["debounce"])
        s["camera"] = {"threshold": float(cam), "debounce": cam_debounce, "min_moved_m": 0.01,
                       "window_frames": checkpoint_window(str(ckpt)) or DEFAULT_WINDOW}
        s["camera_threshold_source"] = ("--camera-threshold" if args.camera_threshold >= 0
                                        else f"{ckpt.name}/monitor.json")
    s["id"] = _settings_id(s)
    return s


def _settings_id(s: dict) -> str:
    key = {k: v for k, v in s.items() if k not in ("threshold_source", "camera_threshold_source", "config",
                                                   "after_hold_s", "id")}
    return hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]


def _graph(config: dict, s: dict, fault: str, policy=None):
    """The sim/policy/command graph of `config` with the fault, the monitors and the hold set
    (`policy`: an in-process policy object instead of the checkpoint's, for tests)."""
    from lara_policy.ros.bringup import Graph
    from lara_policy.ros.params import resolve_path
    rate = {"control_rate_hz": s["control_rate_hz"]}
    lo, hi = s["fault_onset"]
    mons, ckpt = s.get("monitors", ["lam"]), resolve_path(s["checkpoint"])
    over = {"sim_node": {**rate, "fault": fault, "fault_onset_step": lo, "fault_onset_max_step": hi,
                         "fault_seed": s["fault_seed"], "auto_reset_on_budget": False, "auto_increment_seed": False},
            "policy_node": {**rate, "checkpoint": ckpt, "num_candidates": 1, "fault_monitor": "lam" in mons,
                            "fault_monitor_threshold": s["threshold"], "fault_monitor_debounce": s["debounce"]},
            "command_node": {**rate, "hold_on_monitor_alarm": True,
                             "max_not_following_s": float(s.get("not_following_s", 0.0))}}
    nodes = ["sim_node", "policy_node", "command_node"]
    if "camera" in mons:
        from lara_policy.ros.camera_watch_node import launch_params
        over["camera_watch_node"] = {**launch_params(config, ckpt), **s["camera"]}
        nodes.append("camera_watch_node")
    return Graph(config, nodes, overrides=over, policy=policy)


def run(args: argparse.Namespace) -> int:
    from lara_policy.ros.bringup import BringupError, resolve_config
    from lara_policy.ros.params import load_params_yaml, resolve_path
    from lara_policy.sim.metaworld_env import resolve_tasks

    config = load_params_yaml(resolve_config(args.config))
    ckpt = Path(resolve_path(args.checkpoint))
    if not ckpt.is_dir():
        raise BringupError(f"checkpoint not found: {ckpt}")
    tasks = resolve_tasks(args.tasks)
    s = _settings(args, ckpt, config)
    out = Path(args.out) if args.out else \
        Path(os.environ.get("LARA_ROOT", ".")) / "results/monitor" / ckpt.name / OUT_DIRS[args.fault]
    out.mkdir(parents=True, exist_ok=True)
    log = out / "episodes.jsonl"
    ids = {s["id"], _settings_id({**s, "checkpoint": str(ckpt)})}   # and the id of runs that wrote the absolute path
    records = [] if args.fresh or not log.is_file() else \
        [r for r in (json.loads(x) for x in log.read_text().splitlines() if x.strip()) if r["settings_id"] in ids]
    if args.fresh and log.is_file():
        log.rename(out / f"episodes.{time.strftime('%Y%m%d-%H%M%S')}.jsonl")
    done = {(r["kind"], r["task"], r["seed"]) for r in records}
    plan = {kind: [(t, args.seed_start + i) for t in tasks for i in range(n) if (kind, t, args.seed_start + i) not in done]
            for kind, n in (("fault", args.episodes), ("none", args.normal_episodes))}
    print(f"lara monitor ros: {ckpt.name} threshold {s['threshold']:.4f} debounce {s['debounce']} "
          f"({s['threshold_source']}){_monitors_text(s)}, {s['control_rate_hz']:g} Hz; {len(records)} episodes done, "
          f"{len(plan['fault'])} fault + {len(plan['none'])} fault-free to run -> {out}", flush=True)
    if "ROS_DOMAIN_ID" not in os.environ and any(plan.values()):
        # a private domain, as `lara bench ros`: another graph on this host (a test, `lara bringup`)
        # would otherwise add its alarms, statuses and chunks to what this run measures
        os.environ["ROS_DOMAIN_ID"] = str(150 + os.getpid() % 80)
    import rclpy
    for kind, todo in plan.items():
        if not todo:
            continue
        rclpy.init()
        graph = None
        try:
            graph = _graph(config, s, args.fault if kind == "fault" else "none")
            sim, cmd = graph.nodes["sim_node"], graph.nodes["command_node"]
            probe = _Probe(rclpy, sim, cmd.get_parameter("monitor_alarm_topic").value,
                           cmd.get_parameter("safety_status_topic").value)
            graph.executor.add_node(probe.node)
            for task, seed in todo:
                rec = run_episode(graph, probe, task, seed, kind, s)
                records.append(rec)
                with log.open("a") as f:
                    f.write(json.dumps(rec) + "\n")
                if not args.quiet:
                    what = ("alarm +%.2f s, hold +%.2f s wall (%s)" % (rec["alarm_delay_wall_s"], rec["hold_delay_wall_s"],
                                                                        rec["hold_monitor"])
                            if rec.get("hold_delay_wall_s") is not None else
                            "no alarm" if kind == "fault" else f"{rec['false_alarms']} alarms")
                    print(f"  {kind:5s} {task} seed {seed}: onset step {rec['onset_step']}, {what}, "
                          f"{rec['steps']} steps, {rec['wall_s']:.1f} s", flush=True)
        finally:
            if graph is not None:
                graph.close()
            if rclpy.ok():
                rclpy.shutdown()
    from lara_policy.ros.monitor_report import in_sim_results
    ref = in_sim_reference(in_sim_results(Path(resolve_path("results")).parent, ckpt.name, args.fault))
    summary = summarise(records, ref)
    command = " ".join(getattr(args, "lara_argv", ["lara", "monitor", "ros"]))
    from lara_policy.common.args import write_json
    write_json(out / "results.json", {"command": command, "settings": s, "summary": summary,
                                      "in_sim": {k: v for k, v in ref.items() if k != "episodes"},
                                      "episodes": records, "created": time.strftime("%Y-%m-%dT%H:%M:%S")})
    text = table(records, summary, s, ref, command)
    (out / "table.md").write_text(text)
    print(text.split("Summary:", 1)[1].strip())
    print(f"wrote {out / 'table.md'} and {out / 'results.json'}")
    return 0

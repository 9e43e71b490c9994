"""`lara bringup CONFIG.yaml`: the launch files' node graph in ONE process (one executor
thread for the graph, one for command_node), for machines without `ros2 launch`.

The YAML is the same params file the launch files pass to the nodes
(lara_bringup/config/*.yaml): one `node_name: {ros__parameters: {...}}` section per
node (plus `/**` for all), and a `lara_bringup:` section read only here and by the launch files
(nodes to start, task, episodes, seeds, step budget, checkpoint, record dir).

With a sim_node in the graph it runs episodes:
    deactivate command_node (zero motion) -> set sim task/seed, call the sim reset service
    -> reset the policy and set the instruction (services) -> start the recorder (service)
    -> configure + activate command_node -> wait for task success or the step budget
    -> deactivate command_node -> stop the recorder with the success flag
and prints one line per episode (success, steps, bag path) and a summary.
Without a sim_node (real arm) it runs the graph until Ctrl-C or --duration.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import threading
import time
from dataclasses import asdict, dataclass

from lara_policy.ros.params import (bringup_paths, load_params_yaml, node_params, node_sections, resolve_path,
                                    to_overrides)

# node name (YAML section) -> (module, class)
NODE_TYPES = {
    "sim_node": ("lara_policy.ros.sim_node", "SimNode"),
    "policy_node": ("lara_policy.ros.policy_node", "PolicyNode"),
    "command_node": ("lara_policy.ros.command_node", "CommandNode"),
    "recorder_node": ("lara_policy.ros.recorder_node", "RecorderNode"),
    "camera_watch_node": ("lara_policy.ros.camera_watch_node", "CameraWatchNode"),   # lara_bringup.camera_watch
}
DEFAULT_NODES = ["sim_node", "policy_node", "command_node", "recorder_node"]


BRINGUP_SECTION = "lara_bringup"


from lara_policy.common.errors import LaraError, positive_int  # noqa: E402


class BringupError(LaraError, RuntimeError):
    pass


def bringup_settings(config: dict) -> dict:
    """The `lara_bringup: {ros__parameters: {...}}` section (nodes, task, episodes, ...).
    It is a params section of its own so the whole file stays a valid ROS 2 params file."""
    return node_params({k: v for k, v in config.items() if k != "/**"}, BRINGUP_SECTION)


def robot_nodes(config: dict, camera_watch: str | bool | None = None) -> list[str]:
    """Nodes to start: lara_bringup.nodes, else every known node section in the file; plus
    camera_watch_node when switched on (`camera_watch`, else lara_bringup.camera_watch)."""
    from lara_policy.ros.camera_watch_node import switched_on
    listed = bringup_settings(config).get("nodes")
    names = list(listed) if listed else [n for n in node_sections(config) if n in NODE_TYPES]
    if switched_on(config, camera_watch) and "camera_watch_node" not in names:
        names.append("camera_watch_node")
    return names


def resolve_config(name: str) -> str:
    """A path, or the name of a shipped config ('sim', 'sim.yaml') in lara_bringup/config."""
    if os.path.isfile(name):
        return os.path.abspath(name)
    try:
        from lara_bringup import config_dir
        cdir = config_dir()
    except Exception as exc:  # noqa: BLE001
        raise BringupError(f"config '{name}' not found and lara_bringup is not importable: {exc}")
    for cand in (name, name + ".yaml"):
        path = os.path.join(cdir, cand)
        if os.path.isfile(path):
            return path
    shipped = sorted(f for f in os.listdir(cdir) if f.endswith(".yaml"))
    raise BringupError(f"config '{name}' not found (shipped configs in {cdir}: {', '.join(shipped)})")


@dataclass
class EpisodeResult:
    index: int
    task: str
    seed: int
    instruction: str
    success: bool
    steps: int
    duration_s: float
    bag_path: str = ""
    message: str = ""


CONTROL_PRIORITIES = ("normal", "high", "realtime")


def set_thread_priority(level: str) -> str:
    """Raise the calling thread's scheduling priority (Linux): 'high' = nice -10,
    'realtime' = SCHED_FIFO 50. Best effort: without the privilege (CAP_SYS_NICE / rtprio
    limit) the thread keeps its priority. Returns what was applied."""
    if level not in CONTROL_PRIORITIES:
        raise BringupError(f"control priority must be one of {CONTROL_PRIORITIES}, got '{level}'")
    if level == "normal" or not hasattr(os, "sched_setscheduler"):
        return "normal"
    tid = threading.get_native_id()
    try:
        if level == "realtime":
            os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(50))
            return "SCHED_FIFO 50"
        os.setpriority(os.PRIO_PROCESS, tid, -10)
        return "nice -10"
    except (PermissionError, OSError) as exc:
        return f"normal (could not raise: {exc.strerror or exc})"


def start_policy_process(config: dict, overrides: dict, workdir: str):
    """policy_node as `python -m lara_policy.ros.policy_node --ros-args --params-file F`."""
    import subprocess

    import yaml
    params = node_params(config, "policy_node")
    params.update(overrides)
    path = os.path.join(workdir, "policy_node.yaml")
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump({"policy_node": {"ros__parameters": params}}, f)
    return subprocess.Popen([sys.executable, "-m", "lara_policy.ros.policy_node", "--ros-args",
                             "--params-file", path], env=os.environ.copy())


class RemotePolicy:
    """policy_node in a process of its own (as `ros2 launch` runs it), started from the same
    parameters: reached through its services, its chunks counted by a subscription, so an
    episode runs exactly as with the in-process node."""

    def __init__(self, config: dict, overrides: dict, client_node):
        import tempfile

        from lara_msgs.msg import ActionChunk
        from lara_policy.ros import topics
        params = {**node_params(config, "policy_node"), **overrides}
        reset = str(params.get("reset_service", "~/reset"))
        self.topics = {
            "action_chunk_topic": str(params.get("action_chunk_topic", topics.ACTION_CHUNK)),
            "set_instruction_service": str(params.get("set_instruction_service", topics.SET_INSTRUCTION)),
            "reset_service": "/policy_node" + reset[1:] if reset.startswith("~/") else reset,
        }
        self.chunks_published = 0
        self.last_rejection = "policy_node runs in its own process: its reasons are in its log above"
        self._workdir = tempfile.TemporaryDirectory(prefix="lara_policy_node_")
        self.process = start_policy_process(config, overrides, self._workdir.name)
        self._sub = client_node.create_subscription(ActionChunk, self.topics["action_chunk_topic"],
                                                    self._on_chunk, 10)

    def _on_chunk(self, _msg) -> None:
        self.chunks_published += 1

    def wait_ready(self, graph: "Graph", timeout_s: float = 120.0) -> None:
        """Until its reset service answers (loading torch and the checkpoint takes seconds)."""
        from std_srvs.srv import Trigger
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout_s:
            if self.process.poll() is not None:
                raise BringupError(f"policy_node process exited with code {self.process.returncode} "
                                   "(its log is above)")
            try:
                if graph.call(Trigger, self.topics["reset_service"], Trigger.Request(), timeout=10.0).success:
                    return
            except BringupError:
                pass
            time.sleep(0.5)
        raise BringupError(f"policy_node process did not come up within {timeout_s:.0f} s")

    def stop(self) -> None:
        import signal
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=10.0)
            except Exception:  # noqa: BLE001
                self.process.kill()
                self.process.wait(timeout=5.0)
        self._workdir.cleanup()


def call_service(cli, request, name: str, *, timeout: float, attempts: int = 2, spin_node=None):
    """Call a service and wait for its answer, asking again when none comes: a response can be
    lost when the server answers before DDS has matched the client's response reader (a known
    ROS 2 race, seen in CI). Each of `attempts` tries waits timeout/attempts seconds. With
    `spin_node` the wait spins that node (no executor running it); otherwise an executor on
    another thread must be spinning the client's node. Raises BringupError when nothing answers."""
    per_try = timeout / attempts
    for _ in range(attempts):
        future = cli.call_async(request)
        if spin_node is not None:
            import rclpy
            rclpy.spin_until_future_complete(spin_node, future, timeout_sec=per_try)
        else:
            done = threading.Event()
            future.add_done_callback(lambda _f: done.set())
            done.wait(per_try)
        if future.done():
            if future.exception() is not None:
                raise BringupError(f"service {name} failed: {future.exception()}")
            return future.result()
        cli.remove_pending_request(future)
    raise BringupError(f"service {name} did not answer within {timeout:g} s ({attempts} tries)")


class Graph:
    """The node graph of one config, built in this process and spun on a background thread
    (with `policy_process`, policy_node runs in a child process instead: see RemotePolicy)."""

    def __init__(self, config: dict, nodes: list[str] | None = None, *, policy=None,
                 overrides: dict[str, dict] | None = None, control_priority: str = "normal",
                 policy_process: bool = False):
        import rclpy

        self.config = config
        names = list(nodes or robot_nodes(config))
        remote = policy_process and "policy_node" in names
        if remote:
            names.remove("policy_node")
        self.remote_policy = None
        unknown = [n for n in names if n not in NODE_TYPES]
        if unknown:
            raise BringupError(f"unknown node(s) {unknown} in the config (known: {', '.join(NODE_TYPES)})")
        overrides = overrides or {}
        self.nodes: dict = {}
        self.skipped: dict[str, str] = {}
        try:
            for name in names:
                module_name, cls_name = NODE_TYPES[name]
                try:
                    cls = getattr(importlib.import_module(module_name), cls_name)
                except (ImportError, AttributeError) as exc:
                    if name == "recorder_node":
                        self.skipped[name] = f"{module_name}.{cls_name} not available ({exc})"
                        continue
                    raise BringupError(f"cannot import {module_name}.{cls_name}: {exc}")
                params = node_params(config, name)
                params.update(overrides.get(name, {}))
                kwargs = {"parameter_overrides": to_overrides(params)}
                if name == "policy_node" and policy is not None:
                    kwargs["policy"] = policy
                self.nodes[name] = cls(**kwargs)
            self.client = rclpy.create_node("lara_bringup")
        except BaseException:
            self._destroy_nodes()
            raise
        # The control loop gets an executor (and thread) of its own, so its timer is never
        # queued behind camera, sim or service callbacks; everything else shares one thread
        # (rclpy's MultiThreadedExecutor busy-woke ~1800/s here and starved inference).
        from rclpy.executors import SingleThreadedExecutor
        self.executor = SingleThreadedExecutor()
        self.control_executor = SingleThreadedExecutor()
        for name, node in self.nodes.items():
            (self.control_executor if name == "command_node" else self.executor).add_node(node)
        self.executor.add_node(self.client)
        self._thread = threading.Thread(target=self._spin, args=(self.executor,),
                                        name="lara_bringup_executor", daemon=True)
        self.control_priority = control_priority
        self.control_priority_applied = ""
        self._control_thread = threading.Thread(target=self._spin_control, name="lara_bringup_control",
                                                daemon=True)
        self._thread.start()
        self._control_thread.start()
        self._command_configured = False
        self._clients: dict = {}
        if remote:
            try:
                self.remote_policy = RemotePolicy(config, overrides.get("policy_node", {}), self.client)
                self.remote_policy.wait_ready(self)
            except BaseException:
                self.close()
                raise

    @property
    def policy(self):
        """The in-process policy_node, or the RemotePolicy handle, or None."""
        return self.nodes.get("policy_node") or self.remote_policy

    def _spin_control(self) -> None:
        self.control_priority_applied = set_thread_priority(self.control_priority)
        self._spin(self.control_executor)

    @staticmethod
    def _spin(executor) -> None:
        try:
            executor.spin()
        except Exception:  # noqa: BLE001 - shutdown race at exit
            pass

    # -- helpers ---------------------------------------------------------------------------
    def call(self, srv_type, name: str, request, timeout: float = 30.0, attempts: int = 2):
        """Call a service from this process (the graph's executor thread spins the client).
        Clients are created once and reused; see call_service for the retry."""
        key = (srv_type, name)
        cli = self._clients.get(key)
        if cli is None:
            cli = self._clients[key] = self.client.create_client(srv_type, name)
            if not cli.wait_for_service(timeout_sec=min(timeout, 10.0)):
                raise BringupError(f"service {name} not available")
            time.sleep(0.2)
        return call_service(cli, request, name, timeout=timeout, attempts=attempts)

    def configure(self) -> None:
        """Configure command_node (zero motion, not armed)."""
        cmd = self.nodes.get("command_node")
        if cmd is None or self._command_configured:
            return
        from rclpy.lifecycle import TransitionCallbackReturn
        if cmd.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            raise BringupError(f"command_node refused to configure: {getattr(cmd, 'reason', '')}")
        self._command_configured = True

    def arm(self) -> None:
        cmd = self.nodes.get("command_node")
        if cmd is None:
            return
        from rclpy.lifecycle import TransitionCallbackReturn
        self.configure()
        if cmd.trigger_activate() != TransitionCallbackReturn.SUCCESS:
            raise BringupError(f"command_node refused to activate: {getattr(cmd, 'reason', '')}")

    def disarm(self) -> None:
        cmd = self.nodes.get("command_node")
        if cmd is None or not self._command_configured:
            return
        if getattr(cmd, "_active", True):
            try:
                cmd.trigger_deactivate()
            except Exception as exc:  # noqa: BLE001 - report, keep going to zero motion
                print(f"lara bringup: command_node deactivate failed: {exc}", file=sys.stderr)

    # -- episodes --------------------------------------------------------------------------
    def run_episode(self, index: int, task: str, seed: int, max_steps: int = 150,
                    timeout_s: float | None = None, record: bool = True,
                    first_chunk_timeout_s: float = 20.0) -> EpisodeResult:
        from rclpy.parameter import Parameter
        from std_srvs.srv import Trigger

        from lara_msgs.srv import SetInstruction, StartEpisode, StopEpisode

        sim = self.nodes.get("sim_node")
        if sim is None:
            raise BringupError("episodes need a sim_node in the graph")
        policy = self.policy
        self.disarm()
        sim.set_parameters([Parameter("task", value=task), Parameter("seed", value=int(seed))])
        res = self.call(Trigger, sim.topics["reset_service"], Trigger.Request(), timeout=120.0)
        if not res.success:
            raise BringupError(f"sim reset failed: {res.message}")
        instruction = sim.instruction
        if policy is not None:
            self.call(Trigger, policy.topics["reset_service"], Trigger.Request())
            r = self.call(SetInstruction, policy.topics["set_instruction_service"],
                          SetInstruction.Request(instruction=instruction))
            if not r.success:
                raise BringupError(f"policy refused the instruction: {r.message}")
        chunks_before = policy.chunks_published if policy is not None else 0
        bag_path, message = "", ""
        recording = record and "recorder_node" in self.nodes
        if recording:
            r = self.call(StartEpisode, "/lara/recorder/start", StartEpisode.Request(instruction=instruction, task=task))
            if not r.success:
                recording = False
                message = f"recorder did not start: {r.message}"
                print(f"lara bringup: {message}", file=sys.stderr)
            bag_path = r.bag_path
        period = 1.0 / float(sim.control_rate_hz)
        budget = min(int(max_steps), sim.max_steps or int(max_steps))
        timeout_s = timeout_s if timeout_s is not None else budget * period * 3.0 + 20.0
        if policy is not None:
            # arm only once the policy has a chunk for this episode (no budget spent waiting)
            t_wait = time.monotonic()
            while policy.chunks_published <= chunks_before and time.monotonic() - t_wait < first_chunk_timeout_s:
                time.sleep(0.01)
            if policy.chunks_published <= chunks_before:
                message = (message + "; " if message else "") + \
                    f"no action chunk within {first_chunk_timeout_s:.0f} s ({policy.last_rejection})"
        t_start = time.monotonic()
        self.arm()
        try:
            while time.monotonic() - t_start < timeout_s:
                if sim.success or sim.steps >= budget:
                    break
                time.sleep(period / 2)
            else:
                message = (message + "; " if message else "") + \
                    f"wall-clock timeout after {timeout_s:.0f} s at step {sim.steps}"
        finally:
            self.disarm()
        success, steps = bool(sim.success), int(sim.steps)
        duration = time.monotonic() - t_start
        if recording:
            r = self.call(StopEpisode, "/lara/recorder/stop", StopEpisode.Request(
                task_success=success, notes=f"lara bringup episode {index} seed {seed} steps {steps}"))
            if r.success:
                bag_path = r.bag_path or bag_path
            else:
                message = (message + "; " if message else "") + f"recorder stop failed: {r.message}"
        return EpisodeResult(index, task, int(seed), instruction, success, steps, duration, bag_path, message)

    # -- teardown --------------------------------------------------------------------------
    def _destroy_nodes(self) -> None:
        for node in reversed(list(self.nodes.values())):
            try:
                node.destroy_node()
            except Exception:  # noqa: BLE001
                pass
        self.nodes = {}

    def close(self) -> None:
        self.disarm()
        if self.remote_policy is not None:
            self.remote_policy.stop()
        for node in self.nodes.values():      # worker/sim threads first: nothing publishes late
            if hasattr(node, "stop_threads"):
                node.stop_threads()
        for cli in self._clients.values():
            try:
                self.client.destroy_client(cli)
            except Exception:  # noqa: BLE001
                pass
        self._clients = {}
        self.control_executor.shutdown(timeout_sec=3.0)
        self.executor.shutdown(timeout_sec=3.0)
        self._control_thread.join(timeout=10.0)
        self._thread.join(timeout=10.0)
        self._destroy_nodes()
        try:
            self.client.destroy_node()
        except Exception:  # noqa: BLE001
            pass


def build_overrides(config: dict, args) -> dict[str, dict]:
    """Per-node parameter overrides from the command line."""
    bring = bringup_settings(config)
    out: dict[str, dict] = {"sim_node": {}, "policy_node": {}, "recorder_node": {}}
    task = getattr(args, "task", None) or bring.get("task")
    if task:
        out["sim_node"]["task"] = task
    # the same reading of the YAML's paths as the launch files (params.bringup_paths)
    paths = bringup_paths(config, checkpoint=getattr(args, "checkpoint", None) or "",
                          record_dir=getattr(args, "record_dir", None) or "")
    if paths["checkpoint"]:
        out["policy_node"]["checkpoint"] = paths["checkpoint"]
    if getattr(args, "num_candidates", None):
        out["policy_node"]["num_candidates"] = int(args.num_candidates)
    if getattr(args, "device", None):
        out["policy_node"]["device"] = args.device
    if paths["record_dir"]:
        out["recorder_node"]["output_dir"] = paths["record_dir"]
    from lara_policy.ros.cameras import sim_camera_overrides     # a checkpoint with several cameras
    per_node = {n: node_params(config, n) for n in robot_nodes(config)}
    for node, extra in sim_camera_overrides(paths["checkpoint"], per_node).items():
        out[node].update(extra)
    from lara_policy.ros.camera_watch_node import launch_params     # the policy's camera, pose and checkpoint
    out["camera_watch_node"] = launch_params(config, paths["checkpoint"])
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from lara_policy.common.args import add_list_option, deprecated_alias, non_negative_float, positive_float
    parser.add_argument("config", help="params YAML (path, or a shipped config name: sim, real_arm, gazebo, "
                                       "isaac, offline_eval)")
    parser.add_argument("--task", help="Meta-World task (sim); default from the config's bringup section")
    parser.add_argument("--episodes", type=positive_int, help="episodes to run (sim, >= 1); default from the config")
    parser.add_argument("--seed-start", type=int,
                        help="first layout seed (episode i uses seed-start + i); default bringup.first_seed")
    deprecated_alias(parser, "--seed", "--seed-start", dest="seed_start", type=int)
    parser.add_argument("--max-steps", type=positive_int, help="step budget per episode (>= 1); default bringup.max_steps")
    parser.add_argument("--checkpoint", help="LARA checkpoint directory (overrides policy_node.checkpoint)")
    parser.add_argument("--num-candidates", type=positive_int,
                        help="policy candidates (>= 1; > 1 runs the dynamics check)")
    parser.add_argument("--device", help="torch device for the policy (default: auto)")
    parser.add_argument("--record-dir", help="where the recorder writes episode bags")
    parser.add_argument("--no-record", action="store_true", help="do not start the recorder")
    parser.add_argument("--arm", action="store_true",
                        help="graphs without a sim (real arm): activate command_node at start "
                             "(default: configured, zero motion, until activated)")
    parser.add_argument("--duration", type=non_negative_float, default=0.0,
                        help="graphs without a sim: run this many seconds (0 = until Ctrl-C)")
    parser.add_argument("--control-priority", choices=CONTROL_PRIORITIES, default="normal",
                        help="scheduling priority of the control (command_node) thread, where permitted")
    parser.add_argument("--camera-watch", choices=("true", "false"), default=None,
                        help="start camera_watch_node, the frozen-camera detector (default: lara_bringup.camera_watch)")
    parser.add_argument("--policy-process", action="store_true",
                        help="run policy_node in a process of its own (as `ros2 launch` does) instead of this one")
    parser.add_argument("--json", metavar="FILE", help="also write the episode results as JSON (parent folders "
                        "created)")
    add_list_option(parser, "--bag", default=None, metavar="EPISODE",
                    help="offline_eval: recorded episode(s) whose observation topics are replayed into policy_node, "
                         "then scored (lara eval bag metrics); default bringup.bag")
    parser.add_argument("--rate", type=positive_float, default=1.0, help="offline_eval: replay rate")
    parser.add_argument("--out", default="runs/offline_eval", metavar="DIR",
                        help="offline_eval: the folder the scores are written to (created)")


def run(args: argparse.Namespace) -> int:
    try:
        path = resolve_config(args.config)
        config = load_params_yaml(path)
    except (BringupError, FileNotFoundError, ValueError) as exc:
        print(f"lara bringup: {exc}", file=sys.stderr)
        return 2
    bring = bringup_settings(config)
    try:
        nodes = robot_nodes(config, getattr(args, "camera_watch", None))
    except ValueError as exc:
        print(f"lara bringup: {path}: {exc}", file=sys.stderr)
        return 2
    if args.no_record and "recorder_node" in nodes:
        nodes.remove("recorder_node")
    overrides = build_overrides(config, args)
    ckpt = overrides["policy_node"].get("checkpoint", "")
    if "policy_node" in nodes and not (ckpt and os.path.exists(ckpt)):
        print(f"lara bringup: policy checkpoint not found: '{ckpt}'. Train one (`lara train ...`) or pass "
              "--checkpoint DIR.", file=sys.stderr)
        return 2

    import rclpy
    rclpy.init()
    graph = None
    results: list[EpisodeResult] = []
    try:
        graph = Graph(config, nodes, overrides=overrides, control_priority=args.control_priority,
                      policy_process=args.policy_process)
        for name, why in graph.skipped.items():
            print(f"lara bringup: {name} not started: {why}", file=sys.stderr)
        print(f"lara bringup: {os.path.basename(path)}: nodes {', '.join(graph.nodes)}"
              + (f" + policy_node (own process, pid {graph.remote_policy.process.pid})"
                 if graph.remote_policy is not None else ""), flush=True)
        if "sim_node" in graph.nodes:
            sim = graph.nodes["sim_node"]
            task = sim.get_parameter("task").value
            episodes = int(args.episodes if args.episodes is not None else bring.get("episodes", 1))
            seed0 = int(args.seed_start if args.seed_start is not None else bring.get("first_seed", 0))
            max_steps = int(args.max_steps or bring.get("max_steps", 150))
            for i in range(episodes):
                r = graph.run_episode(i + 1, task, seed0 + i, max_steps=max_steps, record=not args.no_record)
                results.append(r)
                print(f"episode {r.index}/{episodes} {r.task} seed {r.seed}: "
                      f"{'SUCCESS' if r.success else 'failure'} in {r.steps} steps ({r.duration_s:.1f} s) "
                      f"'{r.instruction}'" + (f" bag: {r.bag_path}" if r.bag_path else "")
                      + (f" [{r.message}]" if r.message else ""), flush=True)
            n_ok = sum(r.success for r in results)
            print(f"lara bringup: {n_ok}/{len(results)} episodes succeeded on {task}", flush=True)
        elif getattr(args, "bag", None) or bring.get("bag"):
            from lara_policy.evaluation.bag_eval import summary_line
            from lara_policy.ros.offline_eval import run_offline_eval
            bags = args.bag or [resolve_path(str(bring.get("bag")))]
            res = run_offline_eval(graph, bags, args.out, rate=args.rate, topics=bring.get("observation_topics"))
            print(f"lara bringup: offline_eval [open-loop proxy]: {summary_line(res)} -> {args.out}/results.md",
                  flush=True)
        else:
            if args.arm:
                graph.arm()
                print("lara bringup: running, command_node ARMED (Ctrl-C to stop)", flush=True)
            else:
                graph.configure()
                print("lara bringup: running; command_node configured but NOT armed (zero motion): pass "
                      "--arm, or activate it through its lifecycle services (Ctrl-C to stop)", flush=True)
            t_end = time.monotonic() + args.duration if args.duration > 0 else float("inf")
            while time.monotonic() < t_end:
                time.sleep(0.2)
    except KeyboardInterrupt:
        print("lara bringup: interrupted", file=sys.stderr)
    except (BringupError, ValueError, FileNotFoundError, RuntimeError, ImportError) as exc:
        print(f"lara bringup: {exc}", file=sys.stderr)
        return 1
    finally:
        if graph is not None:
            graph.close()
        if rclpy.ok():
            rclpy.shutdown()
    if args.json:
        from lara_policy.common.args import write_json
        write_json(args.json, {"config": path, "episodes": [asdict(r) for r in results],
                               "success_rate": (sum(r.success for r in results) / len(results)) if results else None})
    return 0


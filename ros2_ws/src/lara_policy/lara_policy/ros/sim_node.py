"""sim_node: Meta-World (MuJoCo) as a ROS robot driven like a MoveIt-Servo arm.

Every control tick (control_rate_hz) it
  1. turns the latest commands into one Meta-World action and steps the env once:
       action[:3] = twist.linear * control_period / ee_delta_scale_m   (inverse of command_node)
       action[3]  = latest gripper command (-1 open .. +1 close)
     A command older than command_timeout_s, or none at all, means zero motion: the env
     is not stepped (the arm holds still, no step budget is used). The gripper keeps its
     last command.
  2. renders the camera(s) and publishes each image (rgb8, stamp = render time, the same for
     every camera of a tick), joint states (arm joints + the gripper joint), end-effector pose,
     goal point and task success. `cameras` lists several (e.g. [corner4, gripperPOV] for a
     two-camera checkpoint): the first on image_topic, the others on /camera/<name>/image_raw
     (topics.camera_topics) unless `image_topics` names them.

Services: std_srvs/Trigger `reset_service` starts a new episode with the current `task`
and `seed` parameters (set them first, e.g. `ros2 param set /sim_node seed 7`); with
`auto_increment_seed` the seed parameter is advanced after every reset.
"""
from __future__ import annotations

import threading
import time

import numpy as np
import rclpy
import rclpy.executors
from geometry_msgs.msg import PointStamped, PoseStamped, TwistStamped
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool, Float64, String
from std_srvs.srv import Trigger

from lara_policy.ros import topics
from lara_policy.ros.cameras import declare_string_list
from lara_policy.ros.codec import rgb_to_image_msg, sec_to_stamp
from lara_policy.ros.params import declare, qos_from_params
from lara_policy.ros.node_main import spin_node


class SimNode(Node):
    def __init__(self, node_name: str = "sim_node", **kwargs):
        super().__init__(node_name, **kwargs)
        p = lambda *a, **k: declare(self, *a, **k)  # noqa: E731
        self.task = p("task", "reach-v3", "Meta-World v3 task name used at the next reset")
        self.seed = p("seed", 0, "layout seed used at the next reset (>= 0)", min_value=0)
        self.auto_increment_seed = p("auto_increment_seed", False,
                                     "advance the seed parameter by one after every reset")
        self.camera = p("camera", "corner4", "Meta-World camera rendered to image_topic (the one-camera "
                        "shorthand of cameras)", read_only=True)
        cams = declare_string_list(self, "cameras", "Meta-World cameras to render and publish, in order "
                                   "([] = [camera]); the first on image_topic, the others on image_topics")
        cam_topics = declare_string_list(self, "image_topics", "one topic per camera of cameras ([] = image_topic, "
                                         "then /camera/<name>/image_raw for the others)")
        self.image_width = p("image_width", 64, "rendered image width (px)", read_only=True,
                             min_value=8, max_value=1024)
        self.image_height = p("image_height", 64, "rendered image height (px)", read_only=True,
                              min_value=8, max_value=1024)
        self.control_rate_hz = p("control_rate_hz", 30.0, "sim steps (control ticks) per second",
                                 read_only=True, min_value=1.0, max_value=500.0)
        self.ee_delta_scale_m = p("ee_delta_scale_m", 0.01,
                                  "metres of end-effector motion per unit action per step "
                                  "(Meta-World action_scale); must equal command_node's",
                                  read_only=True, min_value=1e-6, max_value=1.0)
        self.command_timeout_s = p("command_timeout_s", 0.25,
                                   "commands older than this are ignored (zero motion)",
                                   min_value=0.0, max_value=10.0)
        self.max_episode_steps = p("max_episode_steps", 0,
                                   "step budget per episode (0 = Meta-World's 500)", min_value=0)
        self.auto_reset = p("auto_reset", True, "reset once at start-up so topics flow immediately",
                            read_only=True)
        self.publish_instruction = p("publish_instruction", False,
                                     "publish the episode's instruction on instruction_topic "
                                     "(at reset and at 1 Hz), for graphs without an episode runner",
                                     read_only=True)
        self.auto_reset_on_budget = p("auto_reset_on_budget", False,
                                      "start the next episode (next seed with auto_increment_seed) when "
                                      "the step budget is used up; for graphs without an episode runner",
                                      read_only=True)
        self.gripper_joint_name = p("gripper_joint_name", "gripper",
                                    "name of the gripper joint in joint_states", read_only=True)
        self.frame_id = p("frame_id", "base", "frame of the pose/goal messages", read_only=True)
        self.fault = p("fault", "none", "inject a fault from fault_onset_step of every episode: none | frozen-arm | "
                       "frozen-camera | object-teleport (sim/faults.py)", read_only=True)
        self.fault_onset_step = p("fault_onset_step", 60, "sim step at which the fault starts (the first of the "
                                  "range with fault_onset_max_step)", read_only=True, min_value=0)
        self.fault_onset_max_step = p("fault_onset_max_step", -1, "> fault_onset_step: the onset is a seeded random step "
                                      "in [fault_onset_step, this] per episode, a function of (fault_seed, layout "
                                      "seed) as in `lara eval sim --fault-onset`; -1 = fixed", read_only=True,
                                      min_value=-1)
        self.fault_seed = p("fault_seed", 0, "seed of the random fault onset (sim/faults.py FaultSpec)", read_only=True)
        qos_rel = p("camera_qos_reliability", "reliable", "camera QoS: reliable | best_effort",
                    read_only=True)
        qos_depth = p("camera_qos_depth", 2, "camera QoS history depth", read_only=True, min_value=1)
        t = {k: p(k, v, d, read_only=True) for k, v, d in [
            ("image_topic", topics.CAMERA_IMAGE, "camera image out (sensor_msgs/Image rgb8)"),
            ("joint_states_topic", topics.JOINT_STATES, "joint states out"),
            ("ee_pose_topic", topics.EE_POSE, "end-effector pose out"),
            ("goal_topic", topics.GOAL, "task goal out"),
            ("task_success_topic", topics.TASK_SUCCESS, "task success out (std_msgs/Bool)"),
            ("twist_topic", topics.SERVO_TWIST, "Servo twist commands in"),
            ("gripper_topic", topics.GRIPPER_COMMAND, "gripper command in (std_msgs/Float64)"),
            ("instruction_topic", topics.INSTRUCTION, "instruction out (when publish_instruction)"),
            ("reset_service", topics.SIM_RESET, "reset service (std_srvs/Trigger)"),
        ]}
        self.topics = t
        self.cameras = cams or [self.camera]
        self.camera = self.cameras[0]
        self.image_topics = cam_topics or topics.camera_topics(self.cameras, t["image_topic"])
        if len(self.image_topics) != len(self.cameras):
            raise ValueError(f"sim_node: image_topics {self.image_topics} must name one topic per camera of "
                             f"cameras {self.cameras}")
        self.control_period = 1.0 / self.control_rate_hz

        self._lock = threading.RLock()
        self._env = None
        self._env_task = None
        self._state = None
        self._success = False
        self._ever_success = False
        self._twist = None            # (linear xyz np.ndarray, receive time)
        self._gripper = None          # (value, receive time)
        self._budget_logged = False
        self.instruction = ""
        self.steps = 0
        self.episode = 0
        self._arm_joint_names: list[str] = []

        self.image_pubs = {c: self.create_publisher(Image, topic, qos_from_params(qos_rel, qos_depth))
                           for c, topic in zip(self.cameras, self.image_topics)}
        self.image_pub = self.image_pubs[self.camera]
        self.joint_pub = self.create_publisher(JointState, t["joint_states_topic"], 10)
        self.pose_pub = self.create_publisher(PoseStamped, t["ee_pose_topic"], 10)
        self.goal_pub = self.create_publisher(PointStamped, t["goal_topic"], 10)
        self.success_pub = self.create_publisher(Bool, t["task_success_topic"], 10)
        latched = QoSProfile(depth=1)
        from rclpy.qos import DurabilityPolicy
        latched.durability = DurabilityPolicy.TRANSIENT_LOCAL
        self.instruction_pub = self.create_publisher(String, t["instruction_topic"], latched)
        self.create_subscription(TwistStamped, t["twist_topic"], self._on_twist, 10)
        self.create_subscription(Float64, t["gripper_topic"], self._on_gripper, 10)
        self.create_service(Trigger, t["reset_service"], self._on_reset)
        # MuJoCo's GL context belongs to the thread that created it, and executors run
        # callbacks on varying threads: every env operation happens on this one sim thread.
        self._requests: list = []
        self._stop = threading.Event()
        self.ticks = 0
        self.late_ticks = 0
        self._thread = threading.Thread(target=self._loop, name="lara_sim", daemon=True)
        self._thread.start()
        if self.auto_reset:
            ok, msg = self.reset_episode()
            if not ok:
                self.get_logger().error(msg)
        self.get_logger().info(
            f"sim_node: {self.task} camera(s) {', '.join(self.cameras)} {self.image_width}x{self.image_height} "
            f"at {self.control_rate_hz:.1f} Hz, publishing {', '.join(self.image_topics)}")

    # -- commands ------------------------------------------------------------------------
    def _on_twist(self, msg: TwistStamped) -> None:
        lin = np.array([msg.twist.linear.x, msg.twist.linear.y, msg.twist.linear.z], dtype=np.float64)
        if not np.all(np.isfinite(lin)):
            self.get_logger().warning("sim_node: non-finite twist ignored (zero motion)",
                                      throttle_duration_sec=2.0)
            self._twist = None
            return
        self._twist = (lin, time.monotonic())

    def _on_gripper(self, msg: Float64) -> None:
        if not np.isfinite(msg.data):
            self.get_logger().warning("sim_node: non-finite gripper command ignored",
                                      throttle_duration_sec=2.0)
            return
        self._gripper = (float(msg.data), time.monotonic())

    def current_action(self, now: float | None = None) -> np.ndarray | None:
        """The env action the latest commands map to, or None when there is no fresh command."""
        now = time.monotonic() if now is None else now
        twist, grip = self._twist, self._gripper
        fresh_twist = twist is not None and now - twist[1] <= self.command_timeout_s
        fresh_grip = grip is not None and now - grip[1] <= self.command_timeout_s
        if not fresh_twist and not fresh_grip:
            return None
        a = np.zeros(4, dtype=np.float64)
        if fresh_twist:
            a[:3] = twist[0] * self.control_period / self.ee_delta_scale_m
        if grip is not None:
            a[3] = grip[0]   # the gripper holds its last command (never drops a grasp on a timeout)
        return a

    # -- sim thread ----------------------------------------------------------------------
    def _loop(self) -> None:
        period = self.control_period
        next_t = time.monotonic()
        while not self._stop.is_set() and self.context.ok():
            while self._requests:
                done, result = self._requests.pop(0)
                result.append(self._reset_now())
                done.set()
            if self._stop.is_set():
                break
            if self.publish_instruction and self.instruction and self.ticks % max(1, int(self.control_rate_hz)) == 0:
                self.instruction_pub.publish(String(data=self.instruction))   # ~1 Hz, for late joiners
            try:
                self._tick()
            except Exception as exc:  # noqa: BLE001 - never let the sim thread die silently
                if not self.context.ok():
                    break   # Ctrl-C shut the context down between the loop check and the publish
                self.get_logger().error(f"sim_node: tick failed: {exc}", throttle_duration_sec=2.0)
            self.ticks += 1
            next_t += period
            delay = next_t - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            elif delay < -period:
                self.late_ticks += 1
                next_t = time.monotonic()
        with self._lock:
            if self._env is not None:
                self._env.close()
                self._env = None

    # -- episode -------------------------------------------------------------------------
    def reset_episode(self, timeout: float = 60.0) -> tuple[bool, str]:
        """Start a new episode with the current task/seed parameters (thread-safe, blocking)."""
        if not self._thread.is_alive():
            return False, "sim thread is not running"
        done, result = threading.Event(), []
        self._requests.append((done, result))
        if not done.wait(timeout):
            return False, f"sim reset timed out after {timeout:.0f} s"
        return result[0]

    def _reset_now(self) -> tuple[bool, str]:
        task = str(self.get_parameter("task").value)
        seed = int(self.get_parameter("seed").value)
        try:
            with self._lock:
                if self._env is None or self._env_task != task:
                    from lara_policy.sim.metaworld_env import MetaWorldEnv
                    if self._env is not None:
                        self._env.close()
                        self._env = None
                    budget = int(self.get_parameter("max_episode_steps").value) or None
                    self._env = MetaWorldEnv(task=task, cameras=tuple(self.cameras),
                                             image_size=(self.image_height, self.image_width),
                                             max_steps=budget)
                    if self.fault != "none":
                        from lara_policy.sim.faults import FaultSpec, FaultyEnv
                        self._env = FaultyEnv(self._env, FaultSpec(
                            self.fault, self.fault_onset_step, max(self.fault_onset_step, self.fault_onset_max_step),
                            self.fault_seed))
                    self._env_task = task
                    model = self._env.raw_env.model
                    self._arm_joint_names = [model.joint(i).name for i in range(min(7, model.njnt))
                                             if model.jnt_type[i] == 3]
                obs = self._env.reset(seed=seed)
                self._state = obs.state.copy()
                self._success = False
                self._ever_success = False
                self._twist = self._gripper = None
                self._budget_logged = False
                self.instruction = obs.instruction
                self.steps = 0
                self.episode += 1
                self._publish(obs.images)
        except Exception as exc:  # noqa: BLE001 - reported to the caller, node stays up
            return False, f"sim reset failed ({task}, seed {seed}): {exc}"
        if self.get_parameter("auto_increment_seed").value:
            self.set_parameters([Parameter("seed", value=seed + 1)])
        if self.publish_instruction:
            self.instruction_pub.publish(String(data=self.instruction))
        return True, f"task={task} seed={seed} instruction={self.instruction}"

    def _on_reset(self, request, response):
        response.success, response.message = self.reset_episode()
        # one logging call site per severity (rclpy refuses mixing severities at one site)
        if response.success:
            self.get_logger().info(f"sim_node reset: {response.message}")
        else:
            self.get_logger().error(f"sim_node reset: {response.message}")
        return response

    @property
    def success(self) -> bool:
        return self._ever_success

    @property
    def fault_onset(self) -> int | None:
        """The current episode's first faulty step (None: no fault injected)."""
        return getattr(self._env, "onset", None) if self.fault != "none" else None

    @property
    def state(self) -> np.ndarray | None:
        return None if self._state is None else self._state.copy()

    @property
    def max_steps(self) -> int:
        return 0 if self._env is None else self._env.max_steps

    def _tick(self) -> None:
        with self._lock:
            env = self._env
            if env is None or self._state is None:
                return
            action = self.current_action()
            if action is not None and self.steps < env.max_steps:
                try:
                    obs, success, _info = env.step(action, render=False)
                except Exception as exc:  # noqa: BLE001
                    self.get_logger().error(f"sim_node: env.step failed: {exc}", throttle_duration_sec=2.0)
                    return
                self._state = obs.state.copy()
                self._success = bool(success)
                self._ever_success = self._ever_success or self._success
                self.steps = env.steps
            elif action is not None and self.auto_reset_on_budget:
                self.get_logger().info(f"sim_node: step budget {env.max_steps} used up "
                                       f"(success: {self._ever_success}); starting the next episode")
                ok, msg = self._reset_now()
                if not ok:
                    self.get_logger().error(msg)
                return
            elif action is not None and not self._budget_logged:
                self._budget_logged = True
                self.get_logger().warning(f"sim_node: step budget {env.max_steps} used up; "
                                          "holding still until the next reset")
            self._publish(env.render_images())

    def _publish(self, images: dict[str, np.ndarray]) -> None:
        stamp_s = self.get_clock().now().nanoseconds * 1e-9
        stamp = sec_to_stamp(stamp_s)
        s = self._state
        for cam, pub in self.image_pubs.items():     # every camera of the tick with the same stamp
            pub.publish(rgb_to_image_msg(images[cam], stamp_s, frame_id=f"{cam}_camera"))
        js = JointState()
        js.header.stamp = stamp
        js.header.frame_id = self.frame_id
        qpos = self._env.raw_env.data.qpos if self._env is not None else []
        names = list(self._arm_joint_names)
        js.name = names + [self.gripper_joint_name]
        js.position = [float(qpos[i]) for i in range(len(names))] + [float(s[3])]
        self.joint_pub.publish(js)
        pose = PoseStamped()
        pose.header.stamp = stamp
        pose.header.frame_id = self.frame_id
        pose.pose.position.x, pose.pose.position.y, pose.pose.position.z = (float(v) for v in s[:3])
        pose.pose.orientation.w = 1.0
        self.pose_pub.publish(pose)
        goal = PointStamped()
        goal.header.stamp = stamp
        goal.header.frame_id = self.frame_id
        goal.point.x, goal.point.y, goal.point.z = (float(v) for v in s[4:7])
        self.goal_pub.publish(goal)
        self.success_pub.publish(Bool(data=bool(self._success)))

    def stop_threads(self) -> None:
        """Stop the sim thread (closes the env; idempotent)."""
        if hasattr(self, "_thread"):
            self._stop.set()
            if self._thread.is_alive() and threading.current_thread() is not self._thread:
                self._thread.join(timeout=10.0)

    def destroy_node(self):
        self.stop_threads()
        return super().destroy_node()


def main(args=None) -> None:
    rclpy.init(args=args)
    spin_node(SimNode())


if __name__ == "__main__":
    main()

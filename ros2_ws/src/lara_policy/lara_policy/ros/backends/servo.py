from __future__ import annotations

import threading
import time

from geometry_msgs.msg import TwistStamped

from ..safety import MotionCommand
from .base import Backend, BackendError

# MoveIt Servo's services and status codes (checked against moveit2 humble / jazzy / main):
# Jazzy+ (servo_node.cpp): ~/switch_command_type (moveit_msgs/srv/ServoCommandType, TWIST = 1),
#   ~/pause_servo (std_srvs/srv/SetBool: true pauses, false resumes), ~/status
#   (moveit_msgs/msg/ServoStatus: int8 code, string message).
# Humble (servo_node.cpp): ~/start_servo, ~/stop_servo, ~/pause_servo, ~/unpause_servo
#   (std_srvs/srv/Trigger), ~/status (std_msgs/msg/Int8).
SWITCH_TYPE = "moveit_msgs/srv/ServoCommandType"
TWIST = 1
# codes that mean "Servo halted the arm" (numbering differs between the distributions)
HALT_CODES = {
    "jazzy": {-1: "INVALID", 2: "HALT_FOR_SINGULARITY", 5: "HALT_FOR_COLLISION", 6: "JOINT_BOUND"},
    "humble": {-1: "INVALID", 2: "HALT_FOR_SINGULARITY", 4: "HALT_FOR_COLLISION", 5: "JOINT_BOUND"},
}
ACTIVATIONS = ("auto", "switch_command_type", "start_servo", "none")


class ServoBackend(Backend):
    """MoveIt Servo: publishes geometry_msgs/TwistStamped (twist = step / control period, m/s
    and rad/s: Servo must run with `command_in_type: speed_units`), in `frame_id`; the angular
    part is the step's rotation vector / period about frame_id's axes (Servo applies it about the
    end-effector point, composed on the left: docs/runtime_command_recorder.md "Rotations").
    Zero motion = an all-zero twist, published every tick so Servo halts the arm.

    Activation (`activation`):
    - "switch_command_type" (Jazzy, Kilted, Rolling): on arm, `<servo>/pause_servo`(false) and
      `<servo>/switch_command_type`(TWIST); Servo drops twists until the command type is set.
    - "start_servo" (Humble): `<servo>/start_servo` on the first arm, `<servo>/unpause_servo` later.
    - "auto": whichever of the two services Servo advertises (waits up to `wait_s`).
    - "none": no services (a twist consumer that needs no activation, e.g. LARA's sim_node).
    Deactivate and e-stop pause Servo (`pause_servo`), so no other twist source moves the arm.
    `<servo>/status` halts (singularity, collision, joint bound, invalid) become command_node
    faults with Servo's code and message, for as long as Servo reports them.

    Service calls go through a private client node spun on its own thread, so they work from
    any thread (a lifecycle service callback included) without blocking the caller's executor."""
    name = "servo"
    action_spaces = frozenset({"ee_delta_xyz_gripper", "ee_delta_6d_gripper"})
    commands_are_rates = True      # twists in speed units

    def __init__(self, node, gripper_topic: str, period: float, twist_topic: str, frame_id: str,
                 activation: str = "none", servo_node: str = "/servo_node", wait_s: float = 5.0):
        if activation not in ACTIVATIONS:
            raise BackendError(f"servo_activation must be one of {', '.join(ACTIVATIONS)}, got '{activation}'")
        super().__init__(node, gripper_topic, period)
        self.frame_id = frame_id
        self._pub = node.create_publisher(TwistStamped, twist_topic, 10)
        self.activation = activation
        self.servo = "/" + servo_node.strip("/")
        self.wait_s = float(wait_s)
        self.distro = ""               # "jazzy" or "humble" once detected
        self._started = False
        self._status_sub = None
        self._halt = ""
        self._halt_lock = threading.Lock()
        self._client_node = None
        self._executor = None
        self._spin_thread = None
        self._clients: dict = {}
        if activation != "none":
            self._start_client_node()

    # ------------------------------------------------------------------ twists
    def _twist(self, lin=(0.0, 0.0, 0.0), ang=(0.0, 0.0, 0.0)) -> TwistStamped:
        msg = TwistStamped()
        msg.header.stamp = self.node.get_clock().now().to_msg()
        msg.header.frame_id = self.frame_id
        msg.twist.linear.x, msg.twist.linear.y, msg.twist.linear.z = (float(v) for v in lin)
        msg.twist.angular.x, msg.twist.angular.y, msg.twist.angular.z = (float(v) for v in ang)
        return msg

    def send(self, cmd: MotionCommand) -> None:
        lin = cmd.linear_step / self.period
        ang = cmd.angular_step / self.period if cmd.angular_step is not None else (0.0, 0.0, 0.0)
        self._pub.publish(self._twist(lin, ang))
        self.send_gripper(cmd.gripper)

    def zero(self) -> None:
        self._pub.publish(self._twist())

    # ------------------------------------------------------------------ Servo services
    def _start_client_node(self) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        ctx = self.node.context
        base = self.node.get_name()
        self._client_node = rclpy.create_node(f"{base}_servo_client", context=ctx,
                                              namespace=self.node.get_namespace())
        self._executor = SingleThreadedExecutor(context=ctx)
        self._executor.add_node(self._client_node)
        self._spin_thread = threading.Thread(target=self._spin, name="servo_client", daemon=True)
        self._spin_thread.start()

    def _spin(self) -> None:
        try:
            self._executor.spin()
        except Exception:  # noqa: BLE001 - context shut down
            pass

    def _service_types(self) -> dict[str, list[str]]:
        return dict(self._client_node.get_service_names_and_types())

    def detect(self) -> str:
        """'jazzy' (switch_command_type) or 'humble' (start_servo); waits up to wait_s."""
        want = {"switch_command_type": "jazzy", "start_servo": "humble"}
        if self.activation != "auto":
            want = {self.activation: want[self.activation]}
        deadline = time.monotonic() + self.wait_s
        while True:
            services = self._service_types()
            for srv, distro in want.items():
                if f"{self.servo}/{srv}" in services:
                    return distro
            if time.monotonic() >= deadline:
                names = " or ".join(f"{self.servo}/{s}" for s in want)
                raise BackendError(f"MoveIt Servo not found: no service {names} after {self.wait_s:.1f} s "
                                   "(start servo_node, set servo_node to its name, or servo_activation: none "
                                   "for a twist consumer that needs no activation)")
            time.sleep(0.05)

    def _call(self, srv_type, name: str, request, timeout: float):
        cli = self._clients.get(name)
        if cli is None:
            cli = self._clients[name] = self._client_node.create_client(srv_type, name)
        if not cli.wait_for_service(timeout_sec=timeout):
            raise BackendError(f"Servo service {name} not available")
        done = threading.Event()
        fut = cli.call_async(request)
        fut.add_done_callback(lambda _f: done.set())
        if not done.wait(timeout):
            raise BackendError(f"Servo service {name} did not answer within {timeout:.1f} s")
        return fut.result()

    def activate(self) -> None:
        if self.activation == "none":
            return
        from std_srvs.srv import SetBool, Trigger

        if not self.distro:
            self.distro = self.detect()
            self._subscribe_status()
        with self._halt_lock:
            self._halt = ""
        if self.distro == "jazzy":
            try:
                from moveit_msgs.srv import ServoCommandType
            except ImportError as e:
                raise BackendError("Servo offers switch_command_type but moveit_msgs is not importable "
                                   "(install ros-$ROS_DISTRO-moveit-msgs)") from e
            r = self._call(SetBool, f"{self.servo}/pause_servo", SetBool.Request(data=False), self.wait_s)
            if not r.success:
                raise BackendError(f"Servo refused to resume: {r.message}")
            r = self._call(ServoCommandType, f"{self.servo}/switch_command_type",
                           ServoCommandType.Request(command_type=TWIST), self.wait_s)
            if not r.success:
                raise BackendError("Servo refused switch_command_type TWIST")
        else:
            srv = "unpause_servo" if self._started else "start_servo"
            r = self._call(Trigger, f"{self.servo}/{srv}", Trigger.Request(), self.wait_s)
            if not r.success:
                raise BackendError(f"Servo refused {srv}: {r.message}")
            self._started = True

    def pause(self) -> None:
        """Fire-and-forget pause (never blocks the e-stop or the control loop); the answer is logged."""
        if self.activation == "none" or not self.distro or self._client_node is None:
            return
        from std_srvs.srv import SetBool, Trigger

        name = f"{self.servo}/pause_servo"
        srv_type, req = (SetBool, SetBool.Request(data=True)) if self.distro == "jazzy" else (Trigger, Trigger.Request())
        cli = self._clients.get(name)
        if cli is None:
            cli = self._clients[name] = self._client_node.create_client(srv_type, name)
        if not cli.service_is_ready():
            self.node.get_logger().error(f"cannot pause Servo: {name} not available (zero twist sent)")
            return
        fut = cli.call_async(req)

        def done(f):
            r = f.result()
            if r is None or not r.success:
                self.node.get_logger().error(f"Servo did not pause: {getattr(r, 'message', 'no answer')}")
        fut.add_done_callback(done)

    # ------------------------------------------------------------------ Servo status
    def _subscribe_status(self) -> None:
        topic = f"{self.servo}/status"
        if self.distro == "jazzy":
            from moveit_msgs.msg import ServoStatus
            self._status_sub = self.node.create_subscription(ServoStatus, topic, self._on_status, 10)
        else:
            from std_msgs.msg import Int8
            self._status_sub = self.node.create_subscription(Int8, topic, self._on_status, 10)

    def _on_status(self, msg) -> None:
        code = int(getattr(msg, "code", getattr(msg, "data", 0)))
        name = HALT_CODES[self.distro or "jazzy"].get(code)
        text = ""
        if name is not None:
            detail = getattr(msg, "message", "")
            text = f"servo halted: {name} ({code})" + (f": {detail}" if detail else "")
        with self._halt_lock:
            self._halt = text

    def fault_reason(self) -> str:
        with self._halt_lock:
            return self._halt

    def close(self) -> None:
        if self._status_sub is not None:
            self.node.destroy_subscription(self._status_sub)
            self._status_sub = None
        if self._executor is not None:
            self._executor.shutdown(timeout_sec=1.0)
            if self._spin_thread is not None:
                self._spin_thread.join(timeout=2.0)
            self._client_node.destroy_node()
            self._executor = self._client_node = None
        super().close()

    def _publishers(self) -> list:
        return super()._publishers() + [self._pub]

"""The shared body of the nodes' `main()`: build the node (a configuration error is one fatal
line and exit status 1), spin until Ctrl-C, SIGTERM or context shutdown."""
from __future__ import annotations

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node


def build_or_exit(factory, name: str, errors: tuple = (ValueError,)) -> Node:
    """`factory()`, or, when it raises one of `errors` (a bad parameter, a missing checkpoint), that
    error as one fatal log line under `name`, rclpy shut down and exit status 1: no traceback."""
    try:
        return factory()
    except errors as exc:
        rclpy.logging.get_logger(name).fatal(str(exc))
        rclpy.shutdown()
        raise SystemExit(1)


def spin_node(node: Node) -> None:
    """Spin `node` on one executor thread (rclpy's MultiThreadedExecutor busy-wakes its pool and
    starves other threads on a small CPU; nodes that need concurrency own their threads), then
    destroy it and shut rclpy down (whatever ended the spin)."""
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:  # noqa: BLE001 - a shutdown race (SIGTERM) ends the spin; anything else is real
        if rclpy.ok():
            raise
    finally:
        executor.shutdown()
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()

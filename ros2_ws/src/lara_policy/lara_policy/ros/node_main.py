"""The shared body of the nodes' `main()`: spin until Ctrl-C, SIGTERM or context shutdown."""
from __future__ import annotations

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.node import Node


def spin_node(node: Node, num_threads: int = 1) -> None:
    """Spin `node`, then destroy it and shut rclpy down (whatever ended the spin)."""
    executor = MultiThreadedExecutor(num_threads=num_threads) if num_threads > 1 else SingleThreadedExecutor()
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

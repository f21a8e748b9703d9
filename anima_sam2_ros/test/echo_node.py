#!/usr/bin/env python3
"""Child process for the interface round-trip test: republishes ObjectMaskArray unchanged."""

from __future__ import annotations

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.qos import QoSProfile, ReliabilityPolicy

from anima_sam2_msgs.msg import ObjectMaskArray


def main() -> None:
    rclpy.init()
    node = rclpy.create_node("anima_echo")
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    pub = node.create_publisher(ObjectMaskArray, "anima_test/out", qos)
    node.create_subscription(ObjectMaskArray, "anima_test/in", pub.publish, qos)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()

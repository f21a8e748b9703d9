"""Test-session environment: DDS stays on loopback, in a test-only domain, with field checks on.

Set before anything imports rclpy, so every in-process node and every child process started
by the tests inherits it.
"""

from __future__ import annotations

import os

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.pop("ROS_STATIC_PEERS", None)
# A test-only domain per session (0..101 are the portable ids): parallel sessions don't meet.
os.environ["ROS_DOMAIN_ID"] = os.environ.get("ANIMA_TEST_DOMAIN_ID", str(100 - os.getpid() % 60))
# Type-check message fields as Humble always does.
os.environ["ROS_PYTHON_CHECK_FIELDS"] = "1"
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
# No model hub, ever.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

"""``node/safety.py`` on a real rclpy context: faults are logged, the shutdown race is not.

Ctrl-C shuts the context down while an executor thread may still be inside a camera callback;
its publisher calls then raise ``RCLError: ... context is invalid``. That is the shutdown, so it
must not print a traceback (the CI run that found this had one in ``ros2 launch``'s output).
"""

from __future__ import annotations

from typing import List

import pytest

from ros_helpers import require_workspace

pytestmark = pytest.mark.ros


class _Lines:
    """Where ErrorLog writes: the lines it would log, by level."""

    def __init__(self) -> None:
        self.errors: List[str] = []

    def error(self, text: str) -> None:
        self.errors.append(text)


@pytest.fixture
def private_node():
    """``(ctx, node, publisher)`` in a context of their own, which a test may shut down."""
    require_workspace()
    import rclpy
    from std_msgs.msg import String

    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node("safety_test", context=ctx)
    try:
        yield ctx, node, node.create_publisher(String, "safety_test", 1)
    finally:
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)


def test_a_fault_is_logged_with_its_traceback_and_the_shutdown_race_only_counted(private_node):
    import rclpy

    from anima_sam2_ros.node.safety import ErrorLog

    ctx, _, pub = private_node
    lines = _Lines()
    errors = ErrorLog(lines, context_ok=ctx.ok)
    try:
        raise ValueError("a real fault")
    except ValueError as exc:
        errors.report("camera callback", exc)
    assert len(lines.errors) == 1 and "Traceback" in lines.errors[0]
    assert "ValueError: a real fault" in lines.errors[0]

    rclpy.shutdown(context=ctx)  # what the SIGINT handler does
    with pytest.raises(Exception) as raised:  # noqa: PT011 - rclpy's RCLError is not public
        pub.get_subscription_count()
    errors.report("camera callback (camera_info)", raised.value)
    assert len(lines.errors) == 1, lines.errors[-1]
    assert errors.during_shutdown == 1 and errors.total == 1


def test_camera_source_spin_ends_quietly_when_ctrl_c_shuts_the_context_mid_publish(private_node):
    """The frame timer publishing after the SIGINT handler shut the context down (seen in CI)."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from std_msgs.msg import String

    from anima_sam2_ros.node.camera_source import spin_once_until_shutdown

    ctx, node, pub = private_node
    calls = []

    def tick():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a real fault while the context is up")
        rclpy.shutdown(context=ctx)  # what Ctrl-C does, between two lines of the callback
        pub.publish(String(data="x"))  # RCLError: publisher's context is invalid

    node.create_timer(0.001, tick)
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(node)
    try:
        with pytest.raises(RuntimeError, match="a real fault"):
            for _ in range(100):
                spin_once_until_shutdown(ctx.ok, executor, 0.1)
        for _ in range(100):
            if not ctx.ok():
                break
            spin_once_until_shutdown(ctx.ok, executor, 0.1)  # must not raise
        assert not ctx.ok() and len(calls) == 2
    finally:
        executor.shutdown(timeout_sec=1.0)

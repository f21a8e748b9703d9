"""The generated interfaces (anima_sam2_msgs) and the installed node package (anima_sam2_ros)."""

from __future__ import annotations

import array
import os
import pathlib

import pytest

from ros_helpers import require_workspace, spawn, stop, wait_for

HERE = pathlib.Path(__file__).resolve().parent

pytestmark = pytest.mark.ros


def test_a_client_uses_the_interfaces_without_torch_or_the_node_package():
    """What a client node depending on ``anima_sam2_msgs`` alone does: builds and serializes requests."""
    require_workspace()
    import subprocess
    import sys

    code = ("import sys; sys.modules['torch'] = None; sys.modules['anima_sam2_ros'] = None\n"
            "from rclpy.serialization import serialize_message\n"
            "from anima_sam2_msgs.srv import Segment\n"
            "from anima_sam2_msgs.action import Track\n"
            "from anima_sam2_msgs.msg import Prompt\n"
            "req = Segment.Request(prompts=[Prompt(object_id=1, box=[1.0, 2.0, 3.0, 4.0])])\n"
            "goal = Track.Goal(prompts=req.prompts, max_frames=5)\n"
            "print(len(serialize_message(req)), len(serialize_message(goal)))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert all(int(n) > 0 for n in proc.stdout.split()), proc.stdout


def test_interfaces_come_from_the_msgs_package_and_the_node_package_is_installed_whole():
    """Clients import anima_sam2_msgs alone; colcon installs every module of anima_sam2_ros."""
    require_workspace()
    from ament_index_python.packages import get_package_prefix

    import anima_sam2_msgs.msg as msg_mod
    from anima_sam2_msgs.action import Track
    from anima_sam2_msgs.msg import ObjectMask, ObjectMaskArray, Prompt
    from anima_sam2_msgs.srv import Segment

    msgs_prefix = pathlib.Path(get_package_prefix("anima_sam2_msgs"))
    assert msgs_prefix in pathlib.Path(msg_mod.__file__).parents
    # The interfaces package carries no Python of ours (and so no torch).
    assert not (pathlib.Path(msg_mod.__file__).parent.parent / "engine").exists()
    prefix = pathlib.Path(get_package_prefix("anima_sam2_ros"))
    installed = next(prefix.glob("lib/python3*/site-packages/anima_sam2_ros"))
    source = HERE.parent / "anima_sam2_ros"
    missing = [str(f.relative_to(source)) for f in source.rglob("*.py")
               if not (installed / f.relative_to(source)).is_file()]
    assert not missing, f"setup.py does not install {missing}"
    # The user-facing contract (issue "Foundation"): field names and types.
    assert Prompt.get_fields_and_field_types() == {
        "object_id": "uint32",
        "points": "sequence<geometry_msgs/Point>",
        "labels": "sequence<int8>",
        "box": "sequence<float>",
        "mask": "sensor_msgs/Image",
        "mask_logits": "sequence<float>",
    }
    fields = ObjectMask.get_fields_and_field_types()
    for name, typ in [("object_id", "uint32"), ("mask", "sensor_msgs/Image"), ("score", "float"),
                      ("object_score", "float"), ("visible", "boolean"), ("x_min", "int32"),
                      ("y_max", "int32"), ("area", "uint32")]:
        assert fields[name] == typ
    assert ObjectMaskArray.get_fields_and_field_types()["header"] == "std_msgs/Header"
    req = Segment.Request.get_fields_and_field_types()
    assert req == {"image": "sensor_msgs/Image", "prompts": "sequence<anima_sam2_msgs/Prompt>",
                   "multimask_output": "boolean", "return_mask_logits": "boolean", "camera": "string"}
    res = Segment.Response.get_fields_and_field_types()
    assert res == {"success": "boolean", "message": "string",
                   "result": "anima_sam2_msgs/ObjectMaskArray", "inference_ms": "float",
                   "mask_logits_size": "uint32", "mask_logits": "sequence<float>"}
    goal = Track.Goal.get_fields_and_field_types()
    assert goal == {"prompts": "sequence<anima_sam2_msgs/Prompt>", "max_frames": "uint32",
                    "min_score": "float", "max_lost_frames": "uint32", "camera": "string"}
    assert set(Track.Result.get_fields_and_field_types()) == {"frames_processed", "object_ids", "reason"}
    assert set(Track.Feedback.get_fields_and_field_types()) == {
        "masks", "frame_index", "latency_ms", "received", "step_start", "step_end", "published"}


def test_field_checks_are_on():
    """ROS_PYTHON_CHECK_FIELDS=1 (as Humble always checks): a wrong type is refused."""
    require_workspace()
    from anima_sam2_msgs.msg import ObjectMask

    assert os.environ["ROS_PYTHON_CHECK_FIELDS"] == "1"
    with pytest.raises(AssertionError):
        ObjectMask(object_id=-1)


def test_message_round_trip_across_processes():
    require_workspace()
    import rclpy
    from geometry_msgs.msg import Point
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    from anima_sam2_msgs.msg import ObjectMask, ObjectMaskArray, Prompt

    assert os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    child = spawn([str(HERE / "echo_node.py")])
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node("anima_round_trip", context=ctx)
    received = []
    try:
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        pub = node.create_publisher(ObjectMaskArray, "anima_test/in", qos)
        node.create_subscription(ObjectMaskArray, "anima_test/out", received.append, qos)
        executor = rclpy.executors.SingleThreadedExecutor(context=ctx)
        executor.add_node(node)

        def spin_until(pred, timeout):
            return wait_for(lambda: (executor.spin_once(timeout_sec=0.05), pred())[1], timeout)

        assert spin_until(lambda: pub.get_subscription_count() > 0
                          and node.count_publishers("anima_test/out") > 0, 30.0), "echo node not seen"
        msg = ObjectMaskArray()
        msg.header.frame_id = "camera_optical"
        msg.header.stamp.sec = 1234
        msg.header.stamp.nanosec = 5678
        om = ObjectMask(object_id=7, score=0.5, object_score=0.25, visible=True,
                        x_min=1, y_min=2, x_max=30, y_max=40, area=999, event="added")
        om.mask.height, om.mask.width, om.mask.encoding, om.mask.step = 480, 640, "mono8", 640
        om.mask.data = array.array("B", bytes(range(256)) * 1200)
        msg.objects = [om]
        prompt = Prompt(object_id=3, labels=[1, 0], box=[1.0, 2.0, 3.0, 4.0])
        prompt.points = [Point(x=1.0, y=2.0), Point(x=3.0, y=4.0)]
        assert prompt.points[1].y == 4.0
        # Publish until the echo arrives (discovery of the reverse path may lag).
        assert spin_until(lambda: received or pub.publish(msg), 30.0), "no echo received"
        back = received[0]
        assert back.header == msg.header
        assert back.objects[0].object_id == 7 and back.objects[0].event == "added"
        assert back.objects[0].area == 999 and back.objects[0].y_max == 40
        assert bytes(back.objects[0].mask.data) == bytes(om.mask.data)
    finally:
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)
        stop(child)

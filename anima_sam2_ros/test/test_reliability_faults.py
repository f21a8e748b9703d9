"""Reliability of sam2_node under faults, across real processes (issue 7).

One node, started unconfigured with a corrupt weights file: calls while unconfigured / inactive,
configure FAILURE then success with good weights, re-prompt takeover, cancel storm, a client
killed mid-goal, deactivate + cleanup during a goal, a real out-of-memory failure (address-space
limit on the node process), and shutdown from active during a goal.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time

import numpy as np
import pytest

from ros_helpers import require_workspace, wait_for

pytestmark = pytest.mark.ros

NAME = "sam2_faults_test"
TEST_DIR = os.path.dirname(os.path.abspath(__file__))


class Env:
    """The node process and the current client (a test may replace the client)."""

    def __init__(self, node, client, good_weights):
        self.node = node
        self.client = client
        self.good_weights = good_weights


def _save_weights(tmp):
    """A test-micro checkpoint on disk (config.json + safetensors), a corrupt copy, an image-only copy."""
    from anima_sam2_ros.engine import load_model

    good = tmp / "good"
    lm = load_model("test-micro", weights="dummy", precision="fp32", device="cpu", seed=3)
    lm.model.save_pretrained(str(good))
    # The model card's format: an image-only model.safetensors, no config.json.
    from safetensors.torch import save_file

    from anima_sam2_ros.engine.image_only import MEMORY_PREFIXES

    card = tmp / "card"
    card.mkdir()
    image_part = {k: v.contiguous() for k, v in lm.model.state_dict().items()
                  if not k.startswith(MEMORY_PREFIXES)}
    save_file(image_part, str(card / "model.safetensors"))
    lm.release()
    bad = tmp / "corrupt"
    bad.mkdir()
    (bad / "config.json").write_bytes((good / "config.json").read_bytes())
    rng = np.random.default_rng(0)
    # A plausible header length followed by garbage: not a safetensors file.
    (bad / "model.safetensors").write_bytes(b"\x40\x00\x00\x00\x00\x00\x00\x00" + rng.bytes(4096))
    return good, bad, card


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    require_workspace()
    from sam2_client import Sam2Client, start_node

    tmp = tmp_path_factory.mktemp("faults")
    good, bad, card = _save_weights(tmp)
    node = start_node(tmp, NAME, autostart=False,
                      overrides={"weights": str(bad), "max_objects": 6, "camera_timeout": 5.0,
                                 "client_lost_timeout": 1.0,
                                 # the out-of-memory test's 6 masks of 4096^2 (96 MB) must reach the engine
                                 "max_result_mb": 512.0})
    e = Env(node, Sam2Client(NAME), str(good))
    e.image_only_weights = str(card)
    try:
        assert e.client.get_state.wait_for_service(timeout_sec=60.0), "node did not come up"
        yield e
    finally:
        e.client.close()
        code = node.stop()
        print(node.log()[-8000:])
        assert code in (0, -2, 130), f"node exited with {code}"


def _status():
    from action_msgs.msg import GoalStatus

    return GoalStatus


def _good_segment(client):
    from sam2_client import camera_image, point_prompt

    res = client.segment_call([point_prompt(30, 30)], image=camera_image(64, 48))
    assert res.success, res.message


def _diag(client):
    """The latest /diagnostics values of the node as a dict ({} if none yet)."""
    status = [s for m in client.messages("diagnostics") for s in m.status if NAME in s.name]
    return {kv.key: kv.value for kv in status[-1].values} if status else {}


def test_calls_while_unconfigured_are_answered(env):
    from sam2_client import camera_image, point_prompt

    client = env.client
    assert client.state() == "unconfigured"
    t0 = time.monotonic()
    res = client.segment_call([point_prompt(10, 10)], image=camera_image(64, 48))
    assert not res.success and "not configured" in res.message
    handle, _ = client.send_goal([point_prompt(10, 10)])
    assert not handle.accepted
    assert time.monotonic() - t0 < 10.0


def test_corrupt_weights_fail_configure_then_good_weights_work(env):
    from sam2_client import camera_image, point_prompt

    client, node = env.client, env.node
    assert client.transition("configure") is False
    assert client.state() == "unconfigured"
    assert wait_for(lambda: "configure failed: cannot load model" in node.log(), 5.0)
    assert "corrupt" in node.log() or "cannot read" in node.log()
    # Image-only weights (the model card's model.safetensors): Segment works, Track is refused.
    assert client.set_param("weights", env.image_only_weights)
    assert client.transition("configure") and client.transition("activate")
    _good_segment(client)
    handle, _ = client.send_goal([point_prompt(10, 10)])
    assert not handle.accepted
    assert wait_for(lambda: "image-only" in node.log() and "cannot track" in node.log(), 5.0)
    assert client.transition("deactivate") and client.transition("cleanup")
    assert client.set_param("weights", env.good_weights)
    assert client.transition("configure")
    assert client.state() == "inactive"
    res = client.segment_call([point_prompt(10, 10)], image=camera_image(64, 48))
    assert not res.success and "not active" in res.message
    handle, _ = client.send_goal([point_prompt(10, 10)])
    assert not handle.accepted
    assert client.transition("activate")
    _good_segment(client)


def test_new_goal_takes_over_an_object_of_a_running_goal(env):
    from sam2_client import point_prompt

    client = env.client
    client.start_camera(rate=8.0)
    try:
        a, fa = client.send_goal([point_prompt(60, 60, object_id=11), point_prompt(100, 60, object_id=12)])
        assert a.accepted
        assert wait_for(lambda: len(fa) >= 2, 20.0)
        # Duplicates within one goal are still refused.
        dup, _ = client.send_goal([point_prompt(60, 60, object_id=5), point_prompt(70, 60, object_id=5)])
        assert not dup.accepted
        # Object 12 is re-prompted by a new goal: same tracker object, new owner.
        b, fb = client.send_goal([point_prompt(105, 62, object_id=12)], max_frames=3)
        assert b.accepted
        status, result = client.result(b)
        assert status == _status().STATUS_SUCCEEDED and list(result.object_ids) == [12]
        assert wait_for(lambda: len(fb) == 3, 5.0)
        assert [(o.object_id, o.event) for o in fb[0].masks.objects] == [(12, "reprompted")]
        first = fb[0].frame_index
        n = len(fa)
        assert wait_for(lambda: len(fa) >= n + 2, 20.0)
        later = [f for f in fa if f.frame_index >= first]
        assert later and all([o.object_id for o in f.masks.objects] == [11] for f in later)
        # Object 12 ended with goal b (its owner); goal a still runs with 11 only.
        # Taking over a's last object ends a with reason taken_over.
        c, fc = client.send_goal([point_prompt(62, 60, object_id=11)], max_frames=2)
        assert c.accepted
        status, result = client.result(a)
        assert status == _status().STATUS_ABORTED and result.reason == "taken_over"
        assert list(result.object_ids) == []
        status, result = client.result(c)
        assert status == _status().STATUS_SUCCEEDED and list(result.object_ids) == [11]
        assert fc[0].masks.objects[0].event == "reprompted"
        # Nothing leaked: the tracker holds no object once the goals are over.
        assert wait_for(lambda: _diag(client).get("tracker_objects") == "0"
                        and _diag(client).get("track_goals") == "0", 10.0), _diag(client)
    finally:
        client.stop_camera()


def test_cancel_storm_leaves_no_goal_or_object_behind(env):
    from sam2_client import point_prompt

    client = env.client
    client.start_camera(rate=8.0)
    try:
        handles = []
        for i in range(24):
            handle, _ = client.send_goal([point_prompt(20 + 4 * i, 60, object_id=0)])
            if handle.accepted:
                handles.append(handle)
                handle.cancel_goal_async()
        assert len(handles) >= 6  # max_goals 8 / max_objects 6 refuse some while others end
        for handle in handles:
            status, _ = client.result(handle, timeout=30.0)
            assert status in (_status().STATUS_CANCELED, _status().STATUS_ABORTED), status
        assert wait_for(lambda: _diag(client).get("tracker_objects") == "0"
                        and _diag(client).get("track_goals") == "0"
                        and _diag(client).get("tracked_objects") == "0", 10.0), _diag(client)
        # Id 1 is free and new again: added, not re-prompted.
        handle, feedback = client.send_goal([point_prompt(60, 60, object_id=1)], max_frames=2)
        assert handle.accepted
        status, result = client.result(handle)
        assert status == _status().STATUS_SUCCEEDED
        assert feedback[0].masks.objects[0].event == "added"
        _good_segment(client)
    finally:
        client.stop_camera()


_KILLED_CLIENT = """
import sys, time
sys.path.insert(0, {test_dir!r})
from sam2_client import Sam2Client, point_prompt
c = Sam2Client({name!r})
h, fb = c.send_goal([point_prompt(60, 60, object_id=21)])
print("ACCEPTED" if h.accepted else "REJECTED", flush=True)
time.sleep(600)
"""


def test_goal_of_a_killed_client_ends(env):
    from sam2_client import Sam2Client

    node = env.node
    env.client.close()  # our own action client would count as a client of the goal
    from sensor_msgs.msg import Image
    cam = None
    child = None
    try:
        import rclpy
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sam2_client import camera_image

        ctx = rclpy.Context()
        rclpy.init(context=ctx)
        cam = rclpy.create_node("fault_camera", context=ctx)
        qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT)
        pub = cam.create_publisher(Image, "/image", qos)
        child = subprocess.Popen([sys.executable, "-c", _KILLED_CLIENT.format(test_dir=TEST_DIR, name=NAME)],
                                 stdout=subprocess.PIPE, env=dict(os.environ, PYTHONUNBUFFERED="1"))
        t = 0
        line = b""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not line:
            line = child.stdout.readline()
        assert line.strip() == b"ACCEPTED", line
        before = node.log().count("track goal ended")
        end = time.monotonic() + 8
        while time.monotonic() < end:  # the goal runs
            pub.publish(camera_image(160, 120, t % 30))
            t += 1
            time.sleep(0.125)
        assert node.log().count("track goal ended") == before
        child.kill()
        child.wait(5)
        t0 = time.monotonic()
        # The killed client leaves the ROS graph when its DDS lease expires (20 s with Fast DDS
        # defaults), then client_lost_timeout (1 s here) runs.
        while time.monotonic() - t0 < 60 and "track goal ended: client_gone" not in node.log():
            pub.publish(camera_image(160, 120, t % 30))
            t += 1
            time.sleep(0.125)
        print(f"killed client's goal ended after {time.monotonic() - t0:.1f} s")
        assert "track goal ended: client_gone" in node.log(), node.log()[-3000:]
    finally:
        if child is not None and child.poll() is None:
            child.kill()
            child.wait(5)
        if cam is not None:
            cam.destroy_node()
            rclpy.try_shutdown(context=ctx)
        env.client = Sam2Client(NAME)
    _good_segment(env.client)


def test_deactivate_and_cleanup_during_a_goal(env):
    from sam2_client import point_prompt

    client = env.client
    client.start_camera(rate=8.0)
    try:
        handle, feedback = client.send_goal([point_prompt(60, 60)])
        assert handle.accepted
        assert wait_for(lambda: len(feedback) >= 1, 20.0)
        assert client.transition("deactivate")
        assert client.transition("cleanup")
        assert client.state() == "unconfigured"
        status, result = client.result(handle)
        assert status == _status().STATUS_ABORTED and result.reason == "deactivated"
        res = client.segment_call([point_prompt(10, 10)])
        assert not res.success and "not configured" in res.message
        assert client.transition("configure") and client.transition("activate")
        handle, feedback = client.send_goal([point_prompt(60, 60)], max_frames=2)
        assert handle.accepted
        status, result = client.result(handle)
        assert status == _status().STATUS_SUCCEEDED
        _good_segment(client)
    finally:
        client.stop_camera()


def _vm_kib(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise AssertionError(key)


def test_out_of_memory_is_an_error_not_a_crash(env):
    """A REAL allocation failure: the node runs under an address-space limit just above its use."""
    import array

    from sam2_client import point_prompt
    from sensor_msgs.msg import Image

    client, node = env.client, env.node
    pid = node.proc.pid
    _good_segment(client)
    soft, hard = resource.prlimit(pid, resource.RLIMIT_AS)
    used = max(_vm_kib(pid, "VmPeak"), _vm_kib(pid, "VmSize")) * 1024
    resource.prlimit(pid, resource.RLIMIT_AS, (used + 300 * 2**20, hard))
    try:
        # 4096 x 4096 (the max_image_side limit), 6 prompts, 3 masks each: the logits upsampled
        # to the source size alone are 6 * 3 * 4096 * 4096 * 4 bytes = 1.2 GB.
        side = 4096
        big = Image(height=side, width=side, encoding="mono8", step=side,
                    data=array.array("B", bytes(side * side)))
        prompts = [point_prompt(500 * (i + 1), 2000) for i in range(6)]
        res = client.segment_call(prompts, image=big, multimask=True, timeout=120.0)
        assert not res.success
        assert "out of memory" in res.message, res.message
        assert node.proc.poll() is None
        _good_segment(client)
        # A track goal hit by the same failure is aborted with the reason; the node keeps serving.
        client.start_camera(rate=8.0)
        handle, feedback = client.send_goal([point_prompt(20 + 20 * i, 60) for i in range(6)])
        assert handle.accepted
        assert wait_for(lambda: len(feedback) >= 1, 20.0)
        client.stop_camera()
        client.camera.publish(big)
        status, result = client.result(handle, timeout=60.0)
        assert status == _status().STATUS_ABORTED
        assert "out of memory" in result.reason or result.reason == "camera_timeout", result.reason
        print(f"track goal under the memory limit ended: {result.reason[:200]}")
        _good_segment(client)
    finally:
        client.stop_camera()
        resource.prlimit(pid, resource.RLIMIT_AS, (soft, hard))
    assert node.proc.poll() is None
    assert "out of memory" in node.log()


def test_shutdown_from_active_during_a_goal(env):
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState
    from sam2_client import point_prompt

    client, node = env.client, env.node
    client.start_camera(rate=8.0)
    try:
        handle, feedback = client.send_goal([point_prompt(60, 60)])
        assert handle.accepted
        assert wait_for(lambda: len(feedback) >= 1, 20.0)
        req = ChangeState.Request()
        req.transition.id = Transition.TRANSITION_ACTIVE_SHUTDOWN
        assert client.call(client.change_state, req).success
        status, result = client.result(handle)
        assert status == _status().STATUS_ABORTED and result.reason in ("deactivated", "shutdown")
        assert client.state() == "finalized"
        res = client.segment_call([point_prompt(10, 10)])
        assert not res.success and "not configured" in res.message
        assert node.proc.poll() is None
    finally:
        client.stop_camera()

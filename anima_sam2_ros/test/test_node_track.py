"""sam2_node's ``~/track`` action across processes: feedback, completion, cancel, limits, faults."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from ros_helpers import require_workspace, wait_for

pytestmark = pytest.mark.ros

NAME = "sam2_track_test"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    require_workspace()
    from sam2_client import running_node

    with running_node(tmp_path_factory.mktemp("track"), NAME,
                      overrides={"max_objects": 4, "camera_timeout": 2.0}, log_tail=6000) as env:
        yield env


@pytest.fixture
def camera(env):
    client, _ = env
    client.start_camera(rate=8.0)
    yield client
    client.stop_camera()


def _status():
    from action_msgs.msg import GoalStatus

    return GoalStatus


def test_goal_feedback_and_completion_on_max_frames(env, camera):
    from sam2_client import box_prompt, point_prompt

    client, _ = env
    client.clear()
    handle, feedback = client.send_goal([point_prompt(60, 60), box_prompt([20, 40, 60, 80])], max_frames=5)
    assert handle.accepted
    status, result = client.result(handle)
    assert status == _status().STATUS_SUCCEEDED
    assert result.reason == "max_frames" and result.frames_processed == 5
    assert list(result.object_ids) == [1, 2]
    assert wait_for(lambda: len(feedback) == 5, 5.0), len(feedback)
    indices = [fb.frame_index for fb in feedback]
    assert indices == sorted(indices) and len(set(indices)) == 5
    first = feedback[0].masks.objects
    assert [o.event for o in first] == ["added", "added"]
    for fb in feedback:
        assert fb.masks.header.frame_id == "test_camera" and fb.latency_ms > 0.0
        assert [o.object_id for o in fb.masks.objects] == [1, 2]
        mask = fb.masks.objects[0].mask
        assert (mask.width, mask.height, mask.encoding) == (160, 120, "mono8")
        assert mask.header.stamp == fb.masks.header.stamp
        arr = np.frombuffer(bytes(mask.data), dtype=np.uint8)
        assert set(np.unique(arr)) <= {0, 255}
    # ~/masks carries the same frames, with the source frame's header.
    stamps = {(fb.masks.header.stamp.sec, fb.masks.header.stamp.nanosec) for fb in feedback}
    assert wait_for(lambda: stamps <= {(m.header.stamp.sec, m.header.stamp.nanosec)
                                       for m in client.messages("masks")}, 5.0)
    # ~/overlay, ~/label_image and ~/markers (rendered by node.visualization) share those headers.
    for topic in ("overlay", "label_image"):
        assert wait_for(lambda t=topic: any((m.header.stamp.sec, m.header.stamp.nanosec) in stamps
                                            for m in client.messages(t)), 5.0), topic
    assert wait_for(lambda: any(m.markers and m.markers[-1].header.frame_id == "test_camera"
                                for m in client.messages("markers")), 5.0)
    overlay = client.messages("overlay")[-1]
    assert overlay.encoding == "bgr8" and (overlay.width, overlay.height) == (160, 120)


def test_cancel_ends_the_goal_promptly(env, camera):
    from sam2_client import point_prompt

    client, _ = env
    handle, feedback = client.send_goal([point_prompt(60, 60)])
    assert handle.accepted
    assert wait_for(lambda: len(feedback) >= 2, 20.0)
    t0 = time.monotonic()
    client.wait_future(handle.cancel_goal_async(), 10.0)
    status, result = client.result(handle)
    assert time.monotonic() - t0 < 3.0
    assert status == _status().STATUS_CANCELED and result.reason == "canceled"
    assert result.frames_processed >= 2


def test_concurrent_goals_share_frames_and_limits_are_enforced(env, camera):
    from sam2_client import point_prompt

    client, node = env
    a, fa = client.send_goal([point_prompt(60, 60, object_id=1)])
    b, fb = client.send_goal([point_prompt(100, 60, object_id=2), point_prompt(30, 30, object_id=3)])
    assert a.accepted and b.accepted
    assert wait_for(lambda: len(fa) >= 2 and len(fb) >= 2, 20.0)
    assert all([o.object_id for o in f.masks.objects] == [1] for f in fa)
    assert all([o.object_id for o in f.masks.objects] == [2, 3] for f in fb)
    # Objects of both goals are tracked on the same frames.
    assert {f.frame_index for f in fa} & {f.frame_index for f in fb}
    # The same id twice in one goal, and more than max_objects (4) in all: rejected with a reason.
    # (An id owned by another running goal is a re-prompt: test_reliability_faults.py.)
    dup, _ = client.send_goal([point_prompt(10, 10, object_id=5), point_prompt(12, 10, object_id=5)])
    assert not dup.accepted
    many, _ = client.send_goal([point_prompt(10, 10), point_prompt(20, 20)])
    assert not many.accepted
    bad, _ = client.send_goal([point_prompt(math.nan, 10)])
    assert not bad.accepted
    log = node.log()
    assert "more than one prompt" in log and "max_objects" in log and "NaN" in log
    # Segment calls are served while goals run.
    res = client.segment_call([point_prompt(50, 50)])
    assert res.success, res.message
    for h in (a, b):
        client.wait_future(h.cancel_goal_async(), 10.0)
        assert client.result(h)[0] == _status().STATUS_CANCELED
    # The ids are free again.
    again, fagain = client.send_goal([point_prompt(60, 60, object_id=2)], max_frames=2)
    assert again.accepted
    status, result = client.result(again)
    assert status == _status().STATUS_SUCCEEDED and list(result.object_ids) == [2]
    assert fagain[0].masks.objects[0].event == "added"


def test_prompt_outside_the_frame_aborts_only_that_goal(env, camera):
    from sam2_client import point_prompt

    client, _ = env
    good, fgood = client.send_goal([point_prompt(60, 60)], max_frames=3)
    bad, _ = client.send_goal([point_prompt(5000, 60)])
    assert good.accepted and bad.accepted  # the frame size is known only on the next frame
    status, result = client.result(bad)
    assert status == _status().STATUS_ABORTED and "outside" in result.reason
    status, result = client.result(good)
    assert status == _status().STATUS_SUCCEEDED and result.frames_processed == 3


def test_camera_timeout_aborts_the_goal(env):
    from sam2_client import point_prompt

    client, _ = env
    client.stop_camera()
    handle, _ = client.send_goal([point_prompt(60, 60)])
    assert handle.accepted
    t0 = time.monotonic()
    status, result = client.result(handle, timeout=20.0)
    assert status == _status().STATUS_ABORTED and result.reason == "camera_timeout"
    assert 1.5 < time.monotonic() - t0 < 10.0


def test_deactivate_during_a_goal_then_reactivate(env):
    from sam2_client import point_prompt

    client, node = env
    client.start_camera(rate=8.0)
    try:
        handle, feedback = client.send_goal([point_prompt(60, 60)])
        assert handle.accepted
        assert wait_for(lambda: len(feedback) >= 1, 20.0)
        assert client.transition("deactivate")
        status, result = client.result(handle)
        assert status == _status().STATUS_ABORTED and result.reason == "deactivated"
        assert client.state() == "inactive"
        res = client.segment_call([point_prompt(50, 50)])
        assert not res.success and "not active" in res.message
        refused, _ = client.send_goal([point_prompt(60, 60)])
        assert not refused.accepted
        assert client.transition("activate")
        handle, feedback = client.send_goal([point_prompt(60, 60)], max_frames=2)
        assert handle.accepted
        status, result = client.result(handle)
        assert status == _status().STATUS_SUCCEEDED and result.frames_processed == 2
        assert node.proc.poll() is None
    finally:
        client.stop_camera()

"""Bad-input matrix against a live sam2_node (issue 7), beyond test_node_segment's cases.

Every bad request is answered with a clear error (segment: ``success: false`` + message; goal:
rejected, or aborted with the reason) and a good call right after it succeeds; bad camera
frames are dropped with a throttled warning and never become "the latest frame".
"""

from __future__ import annotations

import array
import math

import numpy as np
import pytest

from ros_helpers import require_workspace, wait_for

pytestmark = pytest.mark.ros

NAME = "sam2_inputs_test"
MAX_SIDE = 256


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    require_workspace()
    from sam2_client import running_node

    overrides = {"max_image_side": MAX_SIDE, "max_objects": 4, "camera_timeout": 3.0}
    with running_node(tmp_path_factory.mktemp("inputs"), NAME, overrides=overrides) as env:
        yield env


def _img(width=64, height=48, encoding="rgb8", step=None, data_len=None):
    from sensor_msgs.msg import Image

    channels = 3 if encoding in ("rgb8", "bgr8") else 1
    step = width * channels if step is None else step
    data_len = step * height if data_len is None else data_len
    return Image(width=width, height=height, encoding=encoding, step=step,
                 data=array.array("B", bytes([90]) * data_len))


def _mask_prompt(mask_img):
    from sam2_client import point_prompt

    p = point_prompt(0, 0)
    p.points, p.labels = [], []
    p.mask = mask_img
    return p


def _segment_cases():
    from geometry_msgs.msg import Point
    from sam2_client import box_prompt, point_prompt

    img = _img()
    pt = [point_prompt(10, 10)]
    cases = [
        ("too wide for max_image_side", pt, _img(MAX_SIDE + 1, 8), "max_image_side"),
        ("too tall", pt, _img(8, MAX_SIDE + 1, "mono8"), "max_image_side"),
        ("16UC1", pt, _img(encoding="16UC1", step=128), "16-bit"),
        ("32FC1", pt, _img(encoding="32FC1", step=256), "float"),
        ("nv21", pt, _img(encoding="nv21", step=128), "not supported"),
        ("garbage encoding", pt, _img(encoding="\u00e9\u00e9 garbage"), "not supported"),
        ("empty encoding", pt, _img(encoding=""), "not supported"),
        ("step smaller than a row", pt, _img(step=100), "smaller than"),
        ("data longer than step*height", pt, _img(data_len=64 * 3 * 48 + 1), "expected step * height"),
        ("no data", pt, _img(data_len=0), "expected step * height"),
        ("inf point", [point_prompt(math.inf, 5)], img, "NaN or infinite"),
        ("-inf point", [point_prompt(5, -math.inf)], img, "NaN or infinite"),
        ("huge point", [point_prompt(1e300, 5)], img, "outside"),
        ("negative point", [point_prompt(-1, 5)], img, "outside"),
        ("labels without points", [], img, "no prompts"),
        ("degenerate box", [box_prompt([10, 10, 10, 30])], img, "x_min < x_max"),
        ("inverted box (y)", [box_prompt([10, 30, 20, 5])], img, "y_min < y_max"),
        ("box outside", [box_prompt([100, 100, 200, 200])], img, "entirely outside"),
        ("NaN box", [box_prompt([math.nan, 1, 5, 5])], img, "NaN"),
        ("mask prompt rgb8", [_mask_prompt(_img(64, 48, "rgb8"))], img, "mask prompt encoding"),
        ("mask prompt 16UC1", [_mask_prompt(_img(64, 48, "16UC1", step=128))], img, "mask prompt encoding"),
        ("mask prompt data mismatch", [_mask_prompt(_img(64, 48, "mono8", data_len=10))], img,
         "step * height"),
        ("mask prompt all zero", [_mask_prompt(_zero_mask(64, 48))], img, "empty"),
        ("mask prompt wrong size", [_mask_prompt(_img(32, 48, "mono8"))], img, "differs"),
        ("mask and points for the same object", [_with_points(_mask_prompt(_img(64, 48, "mono8")))], img,
         None),
        ("too many prompts (max_objects 4)", [point_prompt(5, 5) for _ in range(5)], img, "max_objects"),
        ("duplicate ids", [point_prompt(5, 5, 9), point_prompt(6, 6, 9)], img, "more than one"),
    ]
    p = point_prompt(5, 5)
    p.points = []
    p.labels = [1]
    cases[14] = ("labels without points", [p], img, "labels but no points")
    p = point_prompt(5, 5)
    p.points = [Point(x=5.0, y=5.0, z=0.0), Point(x=6.0, y=6.0, z=0.0)]
    p.labels = [1]
    cases.append(("1 label for 2 points", [p], img, "1 labels for 2 points"))
    return [c for c in cases if c[3] is not None]


def _zero_mask(width, height):
    from sensor_msgs.msg import Image

    return Image(width=width, height=height, encoding="mono8", step=width,
                 data=array.array("B", bytes(width * height)))


def _with_points(p):
    from geometry_msgs.msg import Point

    p.points = [Point(x=5.0, y=5.0, z=0.0)]
    return p


def _good(client):
    from sam2_client import camera_image, point_prompt

    res = client.segment_call([point_prompt(30, 30)], image=camera_image(64, 48))
    assert res.success, res.message


def test_requests_before_any_frame_and_zero_size_request_image(env):
    from sam2_client import point_prompt

    client, _ = env
    for width, height in ((0, 0), (0, 10), (10, 0)):
        res = client.segment_call([point_prompt(5, 5)], image=_img(width, height, data_len=0))
        assert not res.success and "no camera frame" in res.message, res.message
        _good(client)


def test_bad_segment_requests_each_answered_then_served(env):
    client, node = env
    for what, prompts, image, expected in _segment_cases():
        res = client.segment_call(prompts, image=image)
        assert not res.success, what
        assert expected in res.message, (what, res.message)
        _good(client)
    assert node.proc.poll() is None


def test_bad_camera_frames_are_dropped_and_never_used(env):
    from sam2_client import camera_image, point_prompt

    client, node = env
    good = camera_image(64, 48)
    good.header.frame_id = "good_frame"

    def latest_is_good():
        client.camera.publish(good)
        return client.segment_call([point_prompt(5, 5)]).success

    assert wait_for(latest_is_good, 20.0, period=0.3)
    bad_frames = [_img(0, 0, data_len=0), _img(MAX_SIDE + 1, 4), _img(encoding="16UC1", step=128),
                  _img(encoding="32FC1", step=256), _img(step=10), _img(data_len=7), _img(encoding="junk")]
    for frame in bad_frames:
        frame.header.frame_id = "bad_frame"
        client.camera.publish(frame)
    assert wait_for(lambda: "camera image dropped" in node.log(), 10.0)
    # Throttled: far fewer warnings than dropped frames.
    for _ in range(3):
        for frame in bad_frames:
            client.camera.publish(frame)
    res = client.segment_call([point_prompt(5, 5)])
    assert res.success and res.result.header.frame_id == "good_frame", res.message
    assert node.log().count("camera image dropped") < len(bad_frames)
    assert node.proc.poll() is None


def _status():
    from action_msgs.msg import GoalStatus

    return GoalStatus


def test_bad_track_goals_rejected_or_aborted_then_served(env):
    from sam2_client import box_prompt, point_prompt

    client, node = env
    client.start_camera(rate=8.0, width=64, height=48)
    try:
        rejected = [
            ("duplicate ids in one goal", [point_prompt(5, 5, 4), point_prompt(9, 9, 4)], {}),
            ("too many objects in one goal", [point_prompt(5, 5) for _ in range(5)], {}),
            ("inf point", [point_prompt(math.inf, 5)], {}),
            ("bad label", [point_prompt(5, 5, label=7)], {}),
            ("no prompts", [], {}),
            ("min_score NaN", [point_prompt(5, 5)], {"min_score": math.nan}),
            ("min_score > 1", [point_prompt(5, 5)], {"min_score": 2.0}),
        ]
        for what, prompts, kw in rejected:
            handle, _ = client.send_goal(prompts, **kw)
            assert not handle.accepted, what
        log = node.log()
        assert "more than one prompt" in log and "max_objects" in log and "min_score" in log
        assert "label 7 is not allowed" in log
        aborted = [
            ("box outside the frame", [box_prompt([100, 100, 120, 120])], "entirely outside"),
            ("degenerate box", [box_prompt([10, 10, 10, 20])], "x_min < x_max"),
            ("mask of the wrong size", [_mask_prompt(_img(32, 48, "mono8"))], "differs"),
        ]
        for what, prompts, expected in aborted:
            handle, _ = client.send_goal(prompts)
            assert handle.accepted, what
            status, result = client.result(handle, timeout=30.0)
            assert status == _status().STATUS_ABORTED and expected in result.reason, (what, result.reason)
        # A huge (unknown) id is just a new object; the node keeps tracking.
        handle, feedback = client.send_goal([point_prompt(30, 30, object_id=2**32 - 1)], max_frames=2)
        assert handle.accepted
        status, result = client.result(handle)
        assert status == _status().STATUS_SUCCEEDED and list(result.object_ids) == [2**32 - 1]
        assert feedback[0].masks.objects[0].event == "added"
        _good(client)
    finally:
        client.stop_camera()
    arr = np.frombuffer(bytes(feedback[0].masks.objects[0].mask.data), dtype=np.uint8)
    assert arr.size == 64 * 48

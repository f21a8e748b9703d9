"""sam2_node's ``~/segment`` service across processes: prompts, latest frame, errors."""

from __future__ import annotations

import array
import math
import time

import numpy as np
import pytest

from ros_helpers import require_workspace, wait_for

pytestmark = pytest.mark.ros

NAME = "sam2_seg_test"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    require_workspace()
    from sam2_client import running_node

    with running_node(tmp_path_factory.mktemp("seg"), NAME,
                      overrides={"topics.compressed_image": "image/compressed"}) as env:
        yield env


def _mask_array(obj):
    m = obj.mask
    assert m.encoding == "mono8" and m.step == m.width
    arr = np.frombuffer(bytes(m.data), dtype=np.uint8).reshape(m.height, m.width)
    assert set(np.unique(arr)) <= {0, 255}
    return arr


def test_requests_before_any_frame_fail_fast(env):
    from sam2_client import point_prompt

    client, _ = env
    t0 = time.monotonic()
    res = client.segment_call([point_prompt(10, 10)])
    assert not res.success and "no camera frame" in res.message
    assert time.monotonic() - t0 < 5.0


def test_segment_points_box_mask_on_request_image(env):
    from sam2_client import box_prompt, camera_image, point_prompt
    from sensor_msgs.msg import Image

    client, _ = env
    image = camera_image(160, 120, t=3)
    image.header.frame_id = "request_frame"
    mask_prompt = point_prompt(0, 0)
    mask_prompt.points, mask_prompt.labels = [], []
    m = np.zeros((120, 160), dtype=np.uint8)
    m[40:80, 30:70] = 1
    mask_prompt.mask = Image(height=120, width=160, encoding="mono8", step=160,
                             data=array.array("B", m.tobytes()))
    res = client.segment_call([point_prompt(50, 60), box_prompt([25, 35, 75, 85], object_id=7), mask_prompt],
                              image=image)
    assert res.success, res.message
    assert res.result.header.frame_id == "request_frame"
    assert res.result.header.stamp.sec == image.header.stamp.sec
    ids = [o.object_id for o in res.result.objects]
    assert ids == [1, 7, 2]
    for obj in res.result.objects:
        arr = _mask_array(obj)
        assert arr.shape == (120, 160)
        assert obj.mask.header.frame_id == "request_frame"
        assert 0.0 <= obj.score <= 1.0 and 0.0 <= obj.object_score <= 1.0
        assert obj.area == int((arr > 0).sum())
    assert res.inference_ms > 0.0


def test_multimask_and_mono8_bgr8_images(env):
    from sam2_client import camera_image, point_prompt

    client, _ = env
    for encoding in ("mono8", "bgr8"):
        res = client.segment_call([point_prompt(40, 50)], image=camera_image(128, 96, encoding=encoding),
                                  multimask=True)
        assert res.success, (encoding, res.message)
        assert _mask_array(res.result.objects[0]).shape == (96, 128)


def test_segment_latest_camera_frame_and_masks_topic(env):
    from sam2_client import point_prompt

    client, _ = env
    client.clear()
    client.start_camera(rate=5.0)
    try:
        def ok():
            res = client.segment_call([point_prompt(60, 60), point_prompt(100, 50)])
            return res if res.success else None

        assert wait_for(lambda: ok() is not None, 30.0, period=0.3)
        res = ok()
        header = res.result.header
        assert header.frame_id == "test_camera" and header.stamp.sec >= 1000
        assert [o.object_id for o in res.result.objects] == [1, 2]
        assert _mask_array(res.result.objects[0]).shape == (120, 160)
        # Segment results are also published on ~/masks with the same header.
        assert wait_for(lambda: any(m.header.stamp == header.stamp for m in client.messages("masks")), 10.0)
    finally:
        client.stop_camera()


def test_compressed_camera_and_camera_info_passthrough(env):
    import cv2
    from sam2_client import point_prompt
    from sensor_msgs.msg import CameraInfo, CompressedImage

    client, _ = env
    bgr = np.full((96, 128, 3), 30, dtype=np.uint8)
    bgr[30:60, 40:80] = (0, 0, 255)
    ok, jpeg = cv2.imencode(".jpg", bgr)
    assert ok
    msg = CompressedImage(format="jpeg", data=array.array("B", jpeg.tobytes()))
    msg.header.frame_id = "compressed_cam"
    msg.header.stamp.sec = 777
    info = CameraInfo(width=128, height=96)
    info.header.frame_id = "compressed_cam"

    def latest_is_compressed():
        client.compressed.publish(msg)
        client.camera_info.publish(info)
        res = client.segment_call([point_prompt(60, 45)])
        return res.success and res.result.header.frame_id == "compressed_cam"

    assert wait_for(latest_is_compressed, 20.0, period=0.3)
    res = client.segment_call([point_prompt(60, 45)])
    assert res.result.header.stamp.sec == 777
    assert _mask_array(res.result.objects[0]).shape == (96, 128)
    assert wait_for(lambda: any(m.header.frame_id == "compressed_cam" and m.width == 128
                                for m in client.messages("camera_info")), 10.0)


def _bad_requests():
    from geometry_msgs.msg import Point
    from sam2_client import box_prompt, camera_image, point_prompt
    from sensor_msgs.msg import Image

    cases = []
    img16 = camera_image(64, 48)
    img16.encoding, img16.step = "16UC1", 128
    img16.data = array.array("B", bytes(128 * 48))
    cases.append(("16-bit image", [point_prompt(5, 5)], img16, "16-bit"))
    short = camera_image(64, 48)
    short.data = array.array("B", bytes(100))
    cases.append(("data size mismatch", [point_prompt(5, 5)], short, "expected step * height"))
    odd = camera_image(64, 48)
    odd.encoding = "nv21"
    cases.append(("unknown encoding", [point_prompt(5, 5)], odd, "not supported"))
    empty = camera_image(64, 48)
    empty.width, empty.step = 0, 0
    cases.append(("zero width = latest frame absent", [point_prompt(5, 5)], None, None))
    img = camera_image(64, 48)
    cases.append(("point outside", [point_prompt(500, 5)], img, "outside"))
    cases.append(("NaN point", [point_prompt(math.nan, 5)], img, "NaN"))
    p = point_prompt(5, 5)
    p.labels = [1, 0]
    cases.append(("labels count", [p], img, "labels"))
    p = point_prompt(5, 5)
    p.points = [Point(x=5.0, y=5.0, z=0.0)]
    p.labels = [3]
    cases.append(("bad label", [p], img, "label"))
    cases.append(("inverted box", [box_prompt([40, 30, 10, 5])], img, "x_min < x_max"))
    cases.append(("box with 3 values", [box_prompt([1, 2, 3])], img, "4 values"))
    wrong = point_prompt(0, 0)
    wrong.points, wrong.labels = [], []
    wrong.mask = Image(height=10, width=10, encoding="mono8", step=10, data=array.array("B", [1] * 100))
    cases.append(("mask of the wrong size", [wrong], img, "differs"))
    cases.append(("duplicate ids", [point_prompt(5, 5, 3), point_prompt(6, 6, 3)], img, "more than one"))
    cases.append(("no prompts", [], img, "no prompts"))
    cases.append(("too many prompts", [point_prompt(5, 5) for _ in range(17)], img, "max_objects"))
    nothing = point_prompt(0, 0)
    nothing.points, nothing.labels = [], []
    cases.append(("empty prompt", [nothing], img, "no points, box or mask"))
    return [c for c in cases if c[2] is not None]


def test_bad_inputs_answered_and_node_keeps_serving(env):
    from sam2_client import camera_image, point_prompt

    client, node = env
    for what, prompts, image, expected in _bad_requests():
        res = client.segment_call(prompts, image=image)
        assert not res.success, what
        assert expected in res.message, (what, res.message)
    res = client.segment_call([point_prompt(10, 10)], image=camera_image(64, 48))
    assert res.success, res.message
    assert node.proc.poll() is None


def test_camera_frames_with_bad_encoding_are_dropped_with_a_warning(env):
    from sam2_client import camera_image

    client, node = env
    bad = camera_image(64, 48)
    bad.encoding = "32FC1"
    client.camera.publish(bad)
    assert wait_for(lambda: "camera image dropped" in node.log(), 10.0)
    assert node.proc.poll() is None

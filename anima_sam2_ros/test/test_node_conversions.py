"""In-process checks of the node's conversion layer and latest-frame slot (no DDS, no model)."""

from __future__ import annotations

import array
import math
import threading

import numpy as np
import pytest

from ros_helpers import require_workspace

pytestmark = pytest.mark.ros


@pytest.fixture(autouse=True)
def _workspace():
    require_workspace()


def _image(arr: np.ndarray, encoding: str, step: int = 0):
    from sensor_msgs.msg import Image

    h, w = arr.shape[:2]
    row = arr.reshape(h, -1)
    step = step or row.shape[1]
    padded = np.zeros((h, step), dtype=np.uint8)
    padded[:, :row.shape[1]] = row
    return Image(height=h, width=w, encoding=encoding, step=step, data=array.array("B", padded.tobytes()))


def test_image_encodings_and_row_padding():
    from anima_sam2_ros.node.conversions import image_from_msg

    rgb = np.random.default_rng(0).integers(0, 255, (6, 5, 3), dtype=np.uint8)
    for encoding, engine in (("rgb8", "rgb8"), ("bgr8", "bgr8"), ("8UC3", "bgr8")):
        out, enc = image_from_msg(_image(rgb, encoding, step=16))
        assert enc == engine and out.shape == (6, 5, 3) and np.array_equal(out, rgb)
    mono = rgb[:, :, 0].copy()
    out, enc = image_from_msg(_image(mono, "mono8", step=8))
    assert enc == "mono8" and np.array_equal(out, mono)


@pytest.mark.parametrize("encoding,step,size,expected", [
    ("16UC1", 10, 60, "16-bit"),
    ("32FC1", 20, 120, "float"),
    ("nv21", 20, 120, "not supported"),
    ("rgb8", 10, 60, "smaller than"),
    ("rgb8", 15, 50, "holds 50 bytes"),
])
def test_bad_images_raise_conversion_error(encoding, step, size, expected):
    from sensor_msgs.msg import Image

    from anima_sam2_ros.engine.errors import InvalidInputError
    from anima_sam2_ros.node.conversions import ConversionError, image_from_msg

    msg = Image(height=6, width=5, encoding=encoding, step=step, data=array.array("B", bytes(size)))
    with pytest.raises(ConversionError, match=expected):
        image_from_msg(msg)
    assert issubclass(ConversionError, InvalidInputError)


def test_empty_and_huge_images_rejected():
    from sensor_msgs.msg import Image

    from anima_sam2_ros.node.conversions import ConversionError, image_from_msg

    with pytest.raises(ConversionError, match="empty"):
        image_from_msg(Image(height=0, width=5, encoding="rgb8", step=15))
    with pytest.raises(ConversionError, match="max_image_side"):
        image_from_msg(Image(height=2, width=5000, encoding="mono8", step=5000,
                             data=array.array("B", bytes(10000))), max_side=4096)


def test_compressed_images():
    import cv2
    from sensor_msgs.msg import CompressedImage

    from anima_sam2_ros.node.conversions import ConversionError, image_from_compressed

    bgr = np.zeros((12, 16, 3), dtype=np.uint8)
    bgr[2:6, 3:9] = (10, 200, 30)
    ok, png = cv2.imencode(".png", bgr)
    assert ok
    out, enc = image_from_compressed(CompressedImage(format="png", data=array.array("B", png.tobytes())))
    assert enc == "bgr8" and np.array_equal(out, bgr)
    with pytest.raises(ConversionError, match="cannot decode"):
        image_from_compressed(CompressedImage(format="jpeg", data=array.array("B", b"not an image")))
    with pytest.raises(ConversionError, match="no data"):
        image_from_compressed(CompressedImage(format="jpeg"))


def test_prompt_conversion_and_ids():
    from geometry_msgs.msg import Point
    from sensor_msgs.msg import Image

    from anima_sam2_msgs.msg import Prompt
    from anima_sam2_ros.node.conversions import ConversionError, assign_ids, prompt_from_msg

    p = Prompt(points=[Point(x=1.0, y=2.0), Point(x=3.0, y=4.0)], labels=[1, 0], box=[0.0, 0.0, 5.0, 6.0])
    out = prompt_from_msg(p)
    assert out.points.tolist() == [[1, 2], [3, 4]] and out.labels.tolist() == [1, 0]
    assert out.box.tolist() == [0, 0, 5, 6] and out.mask is None
    assert prompt_from_msg(Prompt(points=[Point(x=1.0, y=2.0)])).labels is None  # all foreground
    mask = Image(height=2, width=3, encoding="mono8", step=3, data=array.array("B", [0, 1, 0, 0, 0, 0]))
    assert prompt_from_msg(Prompt(mask=mask)).mask.shape == (2, 3)
    for bad, expected in [
        (Prompt(points=[Point(x=math.nan, y=1.0)]), "NaN"),
        (Prompt(points=[Point(x=1.0, y=1.0)], labels=[1, 1]), "2 labels for 1 points"),
        (Prompt(labels=[1]), "no points"),
        (Prompt(box=[1.0, 2.0]), "4 values"),
        (Prompt(box=[1.0, 2.0, math.inf, 4.0]), "NaN or infinite"),
        (Prompt(mask=Image(height=2, width=3, encoding="rgb8", step=9, data=array.array("B", bytes(18)))),
         "mono8"),
        (Prompt(), "no points, box or mask"),
    ]:
        with pytest.raises(ConversionError, match=expected):
            prompt_from_msg(bad)
    prompts = [prompt_from_msg(Prompt(object_id=i, box=[0.0, 0.0, 2.0, 2.0])) for i in (0, 2, 0, 0)]
    assert [q.object_id for q in assign_ids(prompts, taken=[3])] == [1, 2, 4, 5]
    with pytest.raises(ConversionError, match="more than one"):
        assign_ids([prompts[1], prompts[1]])


def test_object_mask_message():
    from std_msgs.msg import Header

    from anima_sam2_ros.engine.types import ObjectResult
    from anima_sam2_ros.node.conversions import header_copy, mask_array_msg, object_mask_msg

    mask = np.zeros((4, 6), dtype=bool)
    mask[1:3, 2:5] = True
    res = ObjectResult(object_id=7, mask=mask, score=0.8, object_score=0.9, visible=True, bbox=(2, 1, 4, 2),
                       area=6, lost=False, event="added")
    header = Header(frame_id="cam")
    header.stamp.sec = 5
    msg = object_mask_msg(res, header)
    assert msg.object_id == 7 and msg.visible and msg.event == "added" and msg.area == 6
    assert (msg.x_min, msg.y_min, msg.x_max, msg.y_max) == (2, 1, 4, 2)
    assert msg.mask.encoding == "mono8" and (msg.mask.width, msg.mask.height, msg.mask.step) == (6, 4, 6)
    assert np.array_equal(np.frombuffer(bytes(msg.mask.data), np.uint8).reshape(4, 6), mask * 255)
    assert msg.mask.header.frame_id == "cam"
    assert not object_mask_msg(res, header, min_score=0.9).visible
    assert len(object_mask_msg(res, header, include_mask=False).mask.data) == 0
    empty = ObjectResult(object_id=1, mask=np.zeros((4, 6), bool), score=float("nan"), object_score=0.1,
                         visible=False, bbox=(0, 0, -1, -1), area=0)
    e = object_mask_msg(empty, header)
    assert (e.x_min, e.y_min, e.x_max, e.y_max) == (0, 0, 0, 0) and e.score == 0.0
    arr = mask_array_msg([msg, e], header_copy(header))
    assert arr.header.stamp.sec == 5 and [o.object_id for o in arr.objects] == [7, 1]


def test_latest_frame_slot_drops_stale_frames():
    from anima_sam2_ros.node.worker import FrameSlot

    slot = FrameSlot(threading.Condition())
    img = np.zeros((2, 2), np.uint8)
    slot.put(img, "mono8", "h1")
    slot.put(img, "mono8", "h2")  # nobody consumes: not a drop
    assert slot.dropped == 0 and slot.received == 2
    slot.consuming = True
    slot.put(img, "mono8", "h3")
    assert slot.dropped == 1
    frame = slot.take()
    assert frame.header == "h3" and slot.take() is None
    assert slot.latest().header == "h3"
    slot.put(img, "mono8", "h4")
    assert slot.dropped == 1  # the previous one was taken
    slot.clear()
    assert slot.latest() is None

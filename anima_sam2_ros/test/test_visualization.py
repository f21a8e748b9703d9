"""Overlay, label image and markers built from engine results (no ROS graph needed)."""

from __future__ import annotations

import numpy as np
import pytest

from ros_helpers import require_workspace

pytestmark = pytest.mark.ros


def _result(oid, mask, score=0.9, visible=True):
    from anima_sam2_ros.engine.types import ObjectResult

    ys, xs = np.nonzero(mask)
    bbox = (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())) if len(xs) else (0, 0, -1, -1)
    return ObjectResult(object_id=oid, mask=mask.astype(bool), score=score, object_score=1.0,
                        visible=visible and bool(len(xs)), bbox=bbox, area=int(mask.sum()))


def _masks(h=60, w=80):
    a = np.zeros((h, w), bool)
    a[10:30, 10:40] = True
    b = np.zeros((h, w), bool)
    b[20:50, 30:70] = True  # overlaps a on rows 20..29, cols 30..39
    return a, b


@pytest.fixture(scope="module")
def viz():
    require_workspace()
    from anima_sam2_ros.node import visualization

    return visualization


def test_colors_stable_and_distinct(viz):
    cols = [viz.color_for_id(i) for i in range(1, 33)]
    assert cols == [viz.color_for_id(i) for i in range(1, 33)]
    assert all(len(c) == 3 and all(0 <= v <= 255 and isinstance(v, int) for v in c) for c in cols)
    arr = np.array(cols, dtype=float)
    d = np.linalg.norm(arr[:, None] - arr[None], axis=-1)
    np.fill_diagonal(d, 1e9)
    assert len(set(cols)) == len(cols)
    # Neighbouring ids (what a tracker hands out together) are clearly different.
    assert min(np.linalg.norm(arr[i] - arr[i + 1]) for i in range(len(arr) - 1)) > 60


def test_overlay_colours_where_masks_are(viz):
    a, b = _masks()
    img = np.full(a.shape + (3,), 100, np.uint8)
    img[..., 0] = 200  # R (input is RGB)
    out = viz.overlay_image(img, [_result(1, a), _result(2, b)], alpha=1.0)
    assert out.shape == img.shape and out.dtype == np.uint8
    # Input not modified; output is BGR.
    assert (img[..., 0] == 200).all()
    bg = out[55, 2]
    assert tuple(bg) == (100, 100, 200)
    # Mask interiors (away from contours and text) take the object's colour; b covers a.
    assert tuple(out[27, 15]) == viz.color_for_id(1)
    assert tuple(out[40, 60]) == viz.color_for_id(2)
    assert tuple(out[25, 35]) == viz.color_for_id(2)
    half = viz.overlay_image(img, [_result(1, a)], alpha=0.5)
    expect = (np.array([100, 100, 200]) * 0.5 + np.array(viz.color_for_id(1)) * 0.5).round()
    assert np.abs(half[27, 15].astype(int) - expect).max() <= 1
    # Contour pixels in the object's colour along the mask edge.
    edge = out[10:30, 10].tolist()
    assert list(viz.color_for_id(1)) in edge


def test_overlay_empty_and_mono(viz):
    img = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    out = viz.overlay_image(img, [], alpha=0.5)
    assert (out == img[..., ::-1]).all()
    mono = viz.overlay_image(img[..., 0], [], alpha=0.5)
    assert mono.shape == (20, 30, 3)
    empty = _result(3, np.zeros((20, 30), bool))
    assert (viz.overlay_image(img, [empty], 0.5) == img[..., ::-1]).all()


def test_label_image_ids_and_dtype(viz):
    a, b = _masks()
    lab = viz.label_image([_result(3, a), _result(7, b)], a.shape)
    assert lab.dtype == np.uint8 and lab.shape == a.shape
    assert lab[15, 15] == 3 and lab[40, 60] == 7 and lab[25, 35] == 7 and lab[55, 2] == 0
    assert set(np.unique(lab)) == {0, 3, 7}
    big = viz.label_image([_result(3, a), _result(300, b)], a.shape)
    assert big.dtype == np.uint16 and big[40, 60] == 300 and big[15, 15] == 3
    none = viz.label_image([], (4, 5))
    assert none.shape == (4, 5) and none.dtype == np.uint8 and not none.any()
    with pytest.raises(ValueError):
        viz.label_image([_result(70000, a)], a.shape)


def test_markers(viz):
    from std_msgs.msg import Header
    from visualization_msgs.msg import Marker

    a, b = _masks()
    header = Header(frame_id="camera_optical_frame")
    header.stamp.sec = 12
    gone = _result(9, np.zeros(a.shape, bool))
    arr = viz.marker_array([_result(1, a), _result(2, b), gone], header)
    assert arr.markers[0].action == Marker.DELETEALL
    boxes = [m for m in arr.markers if m.type == Marker.LINE_STRIP]
    texts = [m for m in arr.markers if m.type == Marker.TEXT_VIEW_FACING]
    assert len(arr.markers) == 5 and len(boxes) == 2 and len(texts) == 2
    assert {m.id for m in boxes} == {1, 2} and texts[0].text.startswith("1 ")
    assert all(m.header.frame_id == "camera_optical_frame" and m.header.stamp.sec == 12 for m in arr.markers)
    box1 = boxes[0]
    assert len(box1.points) == 5 and box1.points[0] == box1.points[-1]
    xs = [p.x for p in box1.points]
    ys = [p.y for p in box1.points]
    # Inclusive box (10, 10, 39, 29) -> edges 10..40 x 10..30 px at 1 mm per pixel.
    assert min(xs) == pytest.approx(0.010) and max(xs) == pytest.approx(0.040)
    assert min(ys) == pytest.approx(0.010) and max(ys) == pytest.approx(0.030)
    assert box1.color.a == 1.0 and box1.scale.x > 0
    centred = viz.marker_array([_result(1, a)], header, frame_size=a.shape)
    assert any(m.ns == "sam2/frame" for m in centred.markers)
    b1 = [m for m in centred.markers if m.ns == "sam2" and m.type == Marker.LINE_STRIP][0]
    assert min(p.x for p in b1.points) == pytest.approx((10 - 40) * 0.001)
    empty = viz.marker_array([], header)
    assert len(empty.markers) == 1 and empty.markers[0].action == Marker.DELETEALL

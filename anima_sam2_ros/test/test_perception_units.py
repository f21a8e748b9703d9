"""The perception pipeline's ROS-free parts (issue 16): 3D geometry, association, clicks, messages.

Known geometry: ``camera_source.box_scene`` renders a box in front of a wall at 640x480; the
per-object 3D must give its visible face's centroid within 1 cm and extent within 2 cm, also when
the mask spills over the box edge onto the wall (depth discontinuities) or has flying pixels.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from anima_sam2_ros.engine.types import ObjectResult
from anima_sam2_ros.node.camera_source import SyntheticScene, box_scene
from anima_sam2_ros.node.click_input import ClickError, click_to_pixel
from anima_sam2_ros.node.depth3d import DepthFrame, DepthPairing, Intrinsics, _erode, object_geometry
from anima_sam2_ros.node.detections_input import DetBox, DetectionPrompter, DetectionsConfig, iou


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    padded = np.pad(~mask, r + 1, constant_values=True)  # outside the image: not the mask
    return ~_erode(padded, r)[r + 1:-r - 1, r + 1:-r - 1]


def _check(geom, truth, centroid_tol=0.01, extent_tol=0.02):
    assert geom is not None
    assert np.abs(geom.centroid - truth["centroid"]).max() < centroid_tol, (geom.centroid, truth["centroid"])
    assert np.abs(geom.size - truth["extent"]).max() < extent_tol, (geom.size, truth["extent"])


# ---------------------------------------------------------------------------------------- depth3d
@pytest.mark.parametrize("center,size", [((0.02, -0.01, 1.0), (0.30, 0.20, 0.15)),
                                         ((-0.05, 0.04, 2.2), (0.40, 0.30, 0.40)),
                                         ((0.0, 0.0, 0.6), (0.10, 0.08, 0.05))])
def test_box_at_known_distance_exact_mask_16uc1_and_32fc1(center, size):
    depth, mask, truth = box_scene(center=center, size=size, background_m=3.0)
    intr = Intrinsics.from_k(truth["k"], 640, 480)
    _check(object_geometry(1, depth, 1.0, mask, intr), truth)
    mm = np.round(depth * 1000).astype(np.uint16)
    _check(object_geometry(1, mm, 0.001, mask, intr), truth)


def test_mask_spilling_over_the_edge_and_flying_pixels_are_rejected():
    depth, mask, truth = box_scene()
    intr = Intrinsics.from_k(truth["k"], 640, 480)
    spilled = _dilate(mask, 25)  # 25 px of wall (2 m) all around the box (0.925 m)
    naive = object_geometry(1, depth, 1.0, spilled, intr, edge_threshold=10.0)  # no cuts
    assert naive.size[2] > 0.9  # without rejection the wall drags the extent to 1 m deep
    geom = object_geometry(1, depth, 1.0, spilled, intr)
    _check(geom, truth)
    assert geom.n_rejected > 0
    # Flying pixels: depth halfway between box and wall along the box border.
    flying = depth.copy()
    ring = _dilate(mask, 1) & ~mask
    flying[ring] = 1.45
    _check(object_geometry(1, flying, 1.0, spilled, intr), truth)
    # Sensor noise (1 mm sd) and holes (zeros) do not move it either.
    rng = np.random.default_rng(0)
    noisy = depth + rng.normal(0, 0.001, depth.shape).astype(np.float32)
    noisy[rng.random(depth.shape) < 0.05] = 0.0
    _check(object_geometry(1, noisy, 1.0, spilled, intr), truth)


def test_geometry_edge_cases_and_decimated_cloud():
    depth, mask, truth = box_scene()
    intr = Intrinsics.from_k(truth["k"], 640, 480)
    assert object_geometry(1, depth, 1.0, np.zeros_like(mask), intr) is None
    assert object_geometry(1, np.zeros_like(depth), 1.0, mask, intr) is None  # no depth at all
    assert object_geometry(1, np.full_like(depth, np.nan), 1.0, mask, intr) is None
    assert object_geometry(1, depth, 1.0, mask, intr, max_range=0.5) is None  # beyond max_range
    with pytest.raises(ValueError):
        object_geometry(1, depth[:100], 1.0, mask, intr)
    g = object_geometry(7, depth, 1.0, mask, intr, cloud_stride=4)
    assert g.object_id == 7 and g.points.dtype == np.float32
    assert abs(len(g.points) - g.n_points / 16) <= g.n_points / 16 * 0.1 + 50
    assert np.allclose(g.points[:, 2], truth["centroid"][2], atol=1e-4)
    # A thin object (no interior after erosion): the median band still works.
    thin = np.zeros_like(mask)
    thin[200:300, 318:321] = True
    thin_depth = np.where(thin, np.float32(1.0), np.float32(2.0))
    gt = object_geometry(2, thin_depth, 1.0, _dilate(thin, 1), intr)
    assert gt is not None and abs(gt.centroid[2] - 1.0) < 1e-4
    with pytest.raises(ValueError):
        Intrinsics.from_k([0.0] * 9, 640, 480)


def test_depth_pairing_by_stamp():
    pairing = DepthPairing(3)
    for i in range(5):
        pairing.put(DepthFrame(i * 100_000_000, np.zeros((2, 2), np.uint16), 0.001, f"h{i}"))
    assert len(pairing) == 3  # bounded
    frame, dt = pairing.match(390_000_000, 0.02)
    assert frame.header == "h4" and abs(dt - 0.01) < 1e-9
    frame, dt = pairing.match(150_000_000, 0.02)  # closest is h2 (0.05 s): out of tolerance
    assert frame is None and abs(dt - 0.05) < 1e-9
    assert DepthPairing().match(0, 1.0) == (None, None)


def test_synthetic_camera_depth_is_registered_to_its_masks():
    scene = SyntheticScene(160, 120)
    depth = scene.depth_mm(3)
    masks = scene.masks(3)
    assert depth.dtype == np.uint16 and depth.shape == (120, 160)
    for obj, m in enumerate(masks):
        assert (depth[m] == int(scene.DEPTHS_M[obj] * 1000)).all()
    assert (depth[~np.any(masks, axis=0)] == 2500).all()


# ------------------------------------------------------------------------------ detections_input
class _Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def _result(oid, box=None, visible=True, lost=False):
    if box is None:
        return ObjectResult(oid, np.zeros((1, 1), bool), 0.9, 0.1, False, (0, 0, -1, -1), 0, lost=lost)
    x0, y0, x1, y1 = box
    return ObjectResult(oid, np.zeros((1, 1), bool), 0.9, 0.9, visible, (x0, y0, x1 - 1, y1 - 1),
                        (x1 - x0) * (y1 - y0), lost=lost)


def _prompter(**kw):
    clock = _Clock()
    cfg = DetectionsConfig(**{"iou_threshold": 0.3, "reprompt_interval": 1.0, "forget_after": 3, **kw})
    return DetectionPrompter(cfg, clock=clock), clock


def test_iou():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    assert abs(iou((0, 0, 10, 10), (5, 0, 15, 10)) - 1 / 3) < 1e-9


def test_new_boxes_become_objects_overlapping_ones_reprompt_with_rate_limit():
    pr, clock = _prompter()
    pr.submit_detections(1, [DetBox(10, 10, 50, 50, "cup", 0.9), DetBox(100, 10, 140, 60, "bottle", 0.8)])
    prompts = pr.prompts_for(1, (120, 160))
    assert [p.object_id for p in prompts] == [1000, 1001]
    assert np.allclose(prompts[0].box, [10, 10, 50, 50])
    pr.on_results(1, [_result(1000, (12, 12, 48, 48)), _result(1001, (100, 10, 140, 60))])
    # The same boxes again, shifted a little, within reprompt_interval: matched, not re-prompted.
    clock.t += 0.2
    pr.submit_detections(2, [DetBox(12, 10, 52, 50, "cup"), DetBox(102, 10, 142, 60, "bottle")])
    assert pr.prompts_for(2, (120, 160)) == []
    pr.on_results(2, [_result(1000, (12, 12, 48, 48)), _result(1001, (100, 10, 140, 60))])
    assert pr.snapshot()["rate_limited"] == 2
    # After the interval: re-prompted under the same ids; a far box is a new object.
    clock.t += 1.0
    pr.submit_detections(3, [DetBox(14, 10, 54, 50, "cup"), DetBox(60, 70, 90, 110, "cup")])
    prompts = {p.object_id: p for p in pr.prompts_for(3, (120, 160))}
    assert sorted(prompts) == [1000, 1002]
    assert np.allclose(prompts[1000].box, [14, 10, 54, 50])
    assert pr.owned_ids() == {1000, 1001, 1002}
    assert pr.class_of(1000) == "cup" and pr.class_of(1001) == "bottle"


def test_class_mismatch_does_not_match_and_max_objects_bounds():
    pr, clock = _prompter(max_objects=2)
    pr.submit_detections(1, [DetBox(10, 10, 50, 50, "cup")])
    pr.prompts_for(1, (120, 160))
    pr.on_results(1, [_result(1000, (10, 10, 50, 50))])
    clock.t += 5
    pr.submit_detections(2, [DetBox(10, 10, 50, 50, "dog"), DetBox(60, 60, 90, 90, "cup")])
    prompts = pr.prompts_for(2, (120, 160))
    assert [p.object_id for p in prompts] == [1001]  # the dog is a new object; the third is refused
    assert pr.snapshot()["refused_full"] == 1


def test_lost_and_unsupported_objects_are_forgotten_ids_never_reused():
    pr, clock = _prompter()
    pr.submit_detections(1, [DetBox(10, 10, 50, 50)])
    pr.prompts_for(1, (120, 160))
    for stamp in range(2, 6):  # lost from frame 2 on, no detections
        pr.prompts_for(stamp, (120, 160))
        forgotten = pr.on_results(stamp, [_result(1000, lost=stamp >= 3)])
    assert forgotten == [1000] and pr.owned_ids() == set()
    # Before being forgotten, a lost object is re-prompted by a matching box (same id): see the
    # node test; after, the same box is a new object with a new id.
    clock.t += 5
    pr.submit_detections(7, [DetBox(10, 10, 50, 50)])
    assert [p.object_id for p in pr.prompts_for(7, (120, 160))] == [1001]


def test_lost_object_matched_by_last_detection_box_is_reprompted_same_id():
    pr, clock = _prompter(forget_after=0)
    pr.submit_detections(1, [DetBox(10, 10, 50, 50)])
    pr.prompts_for(1, (120, 160))
    pr.on_results(1, [_result(1000, lost=True)])  # no tracked box at all
    clock.t += 2
    pr.submit_detections(2, [DetBox(14, 12, 54, 52)])
    prompts = pr.prompts_for(2, (120, 160))
    assert [p.object_id for p in prompts] == [1000]


def test_stamp_matching_waits_for_the_frame_and_uses_history():
    pr, clock = _prompter(reprompt_interval=0.0)
    pr.submit_detections(10, [DetBox(10, 10, 50, 50)])
    assert pr.prompts_for(9, (120, 160)) == []  # stamped after frame 9: waits for frame 10
    assert pr.wants_frames()
    assert [p.object_id for p in pr.prompts_for(10, (120, 160))] == [1000]
    pr.on_results(10, [_result(1000, (10, 10, 50, 50))])
    pr.prompts_for(11, (120, 160))
    pr.on_results(11, [_result(1000, (30, 10, 70, 50))])  # the object moved 20 px right
    # A late array for frame 10: associated on frame 10's boxes, the re-prompt shifted by +20 px.
    pr.submit_detections(10, [DetBox(11, 10, 51, 50)])
    (p,) = pr.prompts_for(12, (120, 160))
    assert p.object_id == 1000 and np.allclose(p.box, [31, 10, 71, 50])
    # An array that waited longer than max_wait is applied to the latest frame.
    pr.submit_detections(99, [DetBox(100, 80, 150, 110)])
    assert pr.prompts_for(13, (120, 160)) == []
    clock.t += 1.0
    assert [p.object_id for p in pr.prompts_for(14, (120, 160))] == [1001]


def test_boxes_outside_the_frame_and_clicks():
    pr, clock = _prompter()
    pr.submit_detections(None, [DetBox(500, 500, 600, 600), DetBox(-20, -20, 30, 30)])
    prompts = pr.prompts_for(1, (120, 160))
    assert len(prompts) == 1 and np.allclose(prompts[0].box, [0, 0, 30, 30])  # clipped
    pr.submit_click(80, 60)
    pr.submit_click(500, 60)  # outside: ignored
    prompts = pr.prompts_for(2, (120, 160))
    assert len(prompts) == 1 and prompts[0].object_id == 1001
    assert np.allclose(prompts[0].points, [[80, 60]]) and list(prompts[0].labels) == [1]


# ---------------------------------------------------------------------------------- click_input
def test_click_conventions():
    k = [500.0, 0.0, 320.0, 0.0, 500.0, 240.0, 0.0, 0.0, 1.0]
    size = (640, 480)
    assert click_to_pixel(100, 50, 0, "", None, None, size) == (100, 50)  # pixels
    u, v = click_to_pixel(0.1, -0.05, 1.0, "cam", "cam", k, size)  # 3D in the optical frame
    assert math.isclose(u, 370.0) and math.isclose(v, 215.0)
    u, v = click_to_pixel(0.1, 0.05, 0.0, "/cam", "cam", k, size)  # the markers' image plane
    assert math.isclose(u, 100.0) and math.isclose(v, 50.0)
    for args, text in (((0, 0, 1, "map", "cam", k, size), "not the camera's optical frame"),
                       ((0, 0, -1, "cam", "cam", k, size), "behind"),
                       ((0, 0, 1, "cam", "cam", None, size), "camera_info"),
                       ((math.nan, 0, 1, "cam", "cam", k, size), "not finite"),
                       ((1000, 0, 0, "", "cam", k, size), "outside"),
                       ((0, 0, 1, "cam", None, k, size), "no camera frame")):
        with pytest.raises(ClickError, match=text):
            click_to_pixel(*args)

"""Overlays a person can read: per-object colour, contour, a labelled box, and the dummy-weights banner."""

from __future__ import annotations

import numpy as np
import pytest

from ros_helpers import require_workspace

pytestmark = pytest.mark.ros

BANNER_BGR = (0, 0, 200)


def _results(w: int, h: int):
    from anima_sam2_ros.engine.types import ObjectResult

    m1 = np.zeros((h, w), bool)
    m1[h // 3: h // 2, w // 4: w // 2] = True
    m2 = np.zeros((h, w), bool)
    m2[h // 2: 3 * h // 4, w // 2: 3 * w // 4] = True
    box = lambda m: (int(np.where(m)[1].min()), int(np.where(m)[0].min()),  # noqa: E731
                     int(np.where(m)[1].max()), int(np.where(m)[0].max()))
    return [ObjectResult(1, m1, 0.91, 0.9, True, box(m1), int(m1.sum())),
            ObjectResult(2, m2, 0.42, 0.8, True, box(m2), int(m2.sum()))]


def _label_height(out: np.ndarray, colour, x0: int, y0: int) -> int:
    """Rows of the filled label box (the object's colour) in the column just right of the box corner."""
    col = out[:, x0 + 1]
    rows = np.where(np.all(col == colour, axis=1))[0]
    near = rows[(rows < y0 + 60) & (rows > y0 - 80)]
    return int(near.max() - near.min() + 1) if near.size else 0


@pytest.mark.parametrize("w,h,min_label_px", [(320, 240, 14), (1920, 1080, 36)])
def test_overlay_is_legible_and_says_dummy(w, h, min_label_px):
    require_workspace()
    from anima_sam2_ros.node.visualization import DUMMY_BANNER, color_for_id, overlay_image

    image = np.full((h, w, 3), 90, np.uint8)
    results = _results(w, h)
    out = overlay_image(image, results, 0.5, banner=DUMMY_BANNER)
    assert out.shape == (h, w, 3) and out.dtype == np.uint8
    # The banner: a red strip across the full width at the top, with white text in it.
    strip = out[1:4]
    assert np.mean(np.all(strip == BANNER_BGR, axis=2)) > 0.9
    banner_rows = np.where(np.mean(np.all(out == BANNER_BGR, axis=2), axis=1) > 0.5)[0]
    assert banner_rows.min() == 0 and banner_rows.max() >= min_label_px - 1
    text_area = out[: banner_rows.max() + 1]
    assert np.sum(np.all(text_area > 200, axis=2)) > 0.02 * text_area.shape[0] * w  # white letters
    for res in results:
        colour = color_for_id(res.object_id)
        x0, y0, x1, y1 = res.bbox
        # Each object in its own colour inside, and a contour of that colour on its border.
        inside = out[(y0 + y1) // 2, (x0 + x1) // 2]
        assert np.abs(inside.astype(int) - (np.array(colour) * 0.5 + 45)).max() <= 2
        assert np.sum(np.all(out[y0 - 3:y0 + 4, x0:x1] == colour, axis=2)) > (x1 - x0)
        # A label box (filled with the object's colour) tall enough to read.
        assert _label_height(out, colour, x0, y0) >= min_label_px, (w, res.object_id)


def test_no_banner_for_real_weights_and_labels_stay_below_the_banner():
    require_workspace()
    from anima_sam2_ros.engine.types import ObjectResult
    from anima_sam2_ros.node.visualization import DUMMY_BANNER, color_for_id, overlay_image

    image = np.full((240, 320, 3), 90, np.uint8)
    plain = overlay_image(image, _results(320, 240), 0.5)
    assert not np.any(np.all(plain[:4] == BANNER_BGR, axis=2))
    # An object at the very top: its label is drawn below the banner, not under it.
    m = np.zeros((240, 320), bool)
    m[0:60, 100:200] = True
    res = [ObjectResult(5, m, 0.7, 0.7, True, (100, 0, 199, 59), int(m.sum()))]
    out = overlay_image(image, res, 0.5, banner=DUMMY_BANNER)
    banner_h = int(np.where(np.mean(np.all(out == BANNER_BGR, axis=2), axis=1) > 0.5)[0].max()) + 1
    colour = color_for_id(5)
    label_rows = np.where(np.all(out[:, 106:150] == colour, axis=2).any(axis=1))[0]
    assert label_rows.size and label_rows.min() >= banner_h
    assert np.mean(np.all(out[1:4] == BANNER_BGR, axis=2)) > 0.9  # the banner stays on top
    # Empty results with a banner: the banner alone.
    empty = overlay_image(image, [], 0.5, banner=DUMMY_BANNER)
    assert np.mean(np.all(empty[1:4] == BANNER_BGR, axis=2)) > 0.9

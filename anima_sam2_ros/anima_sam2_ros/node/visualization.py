"""Images and markers that show segmentation results in rviz (pure numpy / OpenCV, no rclpy).

The node core calls these for its ``~/overlay``, ``~/label_image`` and ``~/markers`` topics.

* ``color_for_id(object_id)``: a stable, well separated BGR colour per object id (golden-ratio
  hue steps), the same in the overlay and in the markers.
* ``overlay_image(image_rgb, results, alpha)``: a bgr8 picture for rviz's Image display: masks
  blended over the camera image, mask contours, and ``id score`` text at each box corner.
* ``label_image(results, shape_hw, allow_32bit)``: instance ids per pixel (0 = background); later
  objects cover earlier ones; uint8 (mono8) when every id is below 256, uint16 (mono16) below
  65536, else (with ``allow_32bit``) uint32, published as ``32SC1``: each pixel's 4 bytes are the
  uint32 id, so a reader taking them as int32 sees ids >= 2**31 as id - 2**32 (``LABEL_ENCODINGS``).
* ``marker_array(results, header, ...)``: ``visualization_msgs/MarkerArray`` with a DELETEALL
  first (objects that vanished disappear), then per visible object a LINE_STRIP box and a
  TEXT_VIEW_FACING id label.

Marker ids: ``Marker.id`` is int32 and object ids are uint32, so ``marker_id(object_id)`` is the
id's 32 bits read as int32 (ids >= 2**31 become id - 2**32; unique, and ``object_id(marker_id)``
undoes it). The text label always shows the object id itself.

Marker convention (rviz has no pixel frame): markers are in the source image's frame
(``header.frame_id``, the camera's optical frame: x right, y down, z forward) on the plane
z = 0, with 1 pixel = ``PIXEL_SIZE_M`` = 1 mm, so a 640x480 image spans 0.64 m x 0.48 m. Pixel
(u, v) is at x = u * 1 mm, y = v * 1 mm; with ``frame_size`` given, the image centre is put on the
optical axis instead (x = (u - W/2) mm, y = (v - H/2) mm) and the image border is drawn too. With
rviz's fixed frame set to the camera frame and the view looking along +z, boxes appear as they
do in the image.
"""

from __future__ import annotations

import colorsys
import functools
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np
from geometry_msgs.msg import Point
from std_msgs.msg import ColorRGBA
from visualization_msgs.msg import Marker, MarkerArray

from anima_sam2_ros.engine.types import ObjectResult

#: Metres per pixel of the marker plane (see the module docstring).
PIXEL_SIZE_M = 0.001
#: sensor_msgs/Image encoding of a label image by bytes per pixel (see ``label_image``).
LABEL_ENCODINGS = {1: "mono8", 2: "mono16", 4: "32SC1"}
_UINT32 = 2**32


def marker_id(object_id: int) -> int:
    """The int32 ``Marker.id`` of a uint32 object id (its bits read as int32)."""
    oid = int(object_id) % _UINT32
    return oid - _UINT32 if oid >= 2**31 else oid


def object_id(marker_id_value: int) -> int:
    """The uint32 object id of a ``Marker.id`` made by ``marker_id``."""
    return int(marker_id_value) % _UINT32
_GOLDEN = 0.6180339887498949


@functools.lru_cache(maxsize=4096)
def color_for_id(object_id: int) -> Tuple[int, int, int]:
    """Stable, distinct colour for an object id, as (b, g, r) uint8 values.

    Consecutive ids are a golden-ratio step apart in hue, so any few ids differ clearly;
    saturation and value alternate a little so ids with close hues still separate.
    """
    oid = int(object_id)
    hue = (0.08 + oid * _GOLDEN) % 1.0
    sat = 0.85 if oid % 2 == 0 else 0.65
    val = 1.0 if (oid // 2) % 2 == 0 else 0.85
    r, g, b = colorsys.hsv_to_rgb(hue, sat, val)
    return int(round(b * 255)), int(round(g * 255)), int(round(r * 255))


def _as_mask(mask: np.ndarray, shape_hw: Tuple[int, int]) -> np.ndarray:
    """A boolean (H, W) mask; resized (nearest) when it does not match ``shape_hw``."""
    m = np.asarray(mask)
    if m.ndim == 3:
        m = m[..., 0]
    if m.shape != tuple(shape_hw):
        m = cv2.resize(m.astype(np.uint8), (int(shape_hw[1]), int(shape_hw[0])),
                       interpolation=cv2.INTER_NEAREST)
    return m.astype(bool, copy=False)


def _index_image(results: Sequence[ObjectResult], shape_hw: Tuple[int, int]) -> np.ndarray:
    """Per pixel, 1 + the index of the last result covering it (0 = none), uint16."""
    idx = np.zeros(tuple(shape_hw), dtype=np.uint16)
    for i, res in enumerate(results):
        idx[_as_mask(res.mask, shape_hw)] = i + 1
    return idx


def _bbox(res: ObjectResult, shape_hw: Tuple[int, int]) -> Optional[Tuple[int, int, int, int]]:
    """The result's inclusive box clipped to the image, or None when it is empty."""
    x0, y0, x1, y1 = (int(v) for v in res.bbox)
    h, w = shape_hw
    x0, y0 = max(x0, 0), max(y0, 0)
    x1, y1 = min(x1, w - 1), min(y1, h - 1)
    if x1 < x0 or y1 < y0:
        return None
    return x0, y0, x1, y1


def label_image(results: Sequence[ObjectResult], shape_hw: Tuple[int, int],
                allow_32bit: bool = False) -> np.ndarray:
    """Instance-id image (0 = background; later results are drawn over earlier ones).

    uint8 when every object id is below 256, uint16 below 65536, else uint32 if ``allow_32bit``
    (the node publishes it as ``32SC1``, see the module docstring); without it ids above 65535
    raise ValueError (mono16 is the widest image a PNG file holds). Ids above 2**32 - 1 always
    raise ValueError.
    """
    shape_hw = (int(shape_hw[0]), int(shape_hw[1]))
    max_id = max((int(r.object_id) for r in results), default=0)
    if max_id >= _UINT32 or (max_id > 65535 and not allow_32bit):
        limit = "a uint32 label image" if allow_32bit else "a mono16 label image"
        raise ValueError(f"object id {max_id} does not fit {limit}")
    dtype = np.uint8 if max_id < 256 else np.uint16 if max_id < 65536 else np.uint32
    out = np.zeros(shape_hw, dtype=dtype)
    if not results:
        return out
    ids = np.array([0] + [int(r.object_id) for r in results], dtype=dtype)
    return ids[_index_image(results, shape_hw)]


def _to_bgr(image_rgb: np.ndarray) -> np.ndarray:
    img = np.asarray(image_rgb)
    if img.dtype != np.uint8:
        raise ValueError(f"overlay_image needs a uint8 image, got {img.dtype}")
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if img.ndim == 3 and img.shape[2] == 1:
        return cv2.cvtColor(img[..., 0], cv2.COLOR_GRAY2BGR)
    if img.ndim == 3 and img.shape[2] == 3:
        return cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    raise ValueError(f"overlay_image needs an (H, W, 3) RGB or (H, W) mono image, got {img.shape}")


#: The banner every overlay carries when the model has dummy (random) weights.
DUMMY_BANNER = "DUMMY WEIGHTS: masks are meaningless"
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _text_style(h: int, w: int) -> Tuple[float, int]:
    """Font scale and stroke of labels: about 11 px tall at 240 px, 32 px at 1080 px, smaller below."""
    size = min(h, w)
    return max(min(0.45, size / 300.0), size / 720.0), max(1, int(round(size / 400.0)))


def _label(out: np.ndarray, text: str, anchor: Tuple[int, int], colour: Tuple[int, int, int],
           top: int = 0) -> None:
    """``text`` on a filled box of ``colour`` with its top-left near ``anchor``, kept inside the image."""
    h, w = out.shape[:2]
    scale, stroke = _text_style(h, w)
    (tw, th), base = cv2.getTextSize(text, _FONT, scale, stroke)
    pad = max(2, th // 4)
    bw, bh = tw + 2 * pad, th + base + 2 * pad
    x = min(max(int(anchor[0]), 0), max(w - bw, 0))
    y = int(anchor[1]) - bh  # above the box when there is room, else just inside it
    if y < top:
        y = int(anchor[1]) + 1
    y = min(max(y, top), max(h - bh, 0))
    cv2.rectangle(out, (x, y), (x + bw - 1, y + bh - 1), colour, cv2.FILLED)
    b, g, r = colour
    ink = (0, 0, 0) if 0.114 * b + 0.587 * g + 0.299 * r > 140 else (255, 255, 255)
    cv2.putText(out, text, (x + pad, y + pad + th), _FONT, scale, ink, stroke, cv2.LINE_AA)


def _banner_layout(h: int, w: int, text: str) -> Tuple[float, int, int, int, int, int]:
    """(scale, stroke, strip height, text width, text height, padding) of a banner."""
    stroke = max(1, int(round(min(h, w) / 360.0)))
    (tw1, _), _ = cv2.getTextSize(text, _FONT, 1.0, stroke)
    scale = max(0.3, min(0.94 * w / max(tw1, 1), max(0.5, min(h, w) / 540.0)))
    (tw, th), base = cv2.getTextSize(text, _FONT, scale, stroke)
    pad = max(3, th // 3)
    return scale, stroke, min(th + base + 2 * pad, h), tw, th, pad


def draw_banner(out: np.ndarray, text: str = DUMMY_BANNER) -> int:
    """A white-on-red strip across the top of ``out`` (in place), sized to fit; returns its height."""
    h, w = out.shape[:2]
    scale, stroke, bh, tw, th, pad = _banner_layout(h, w, text)
    cv2.rectangle(out, (0, 0), (w - 1, bh - 1), (0, 0, 200), cv2.FILLED)
    cv2.putText(out, text, (max((w - tw) // 2, 2), pad + th), _FONT, scale, (255, 255, 255), stroke,
                cv2.LINE_AA)
    return bh


def overlay_image(image_rgb: np.ndarray, results: Sequence[ObjectResult], alpha: float = 0.5,
                  banner: Optional[str] = None) -> np.ndarray:
    """bgr8 overlay: masks blended in each object's colour, contours, and ``id N score`` labels.

    ``image_rgb`` is (H, W, 3) RGB uint8 (or (H, W) mono8); ``alpha`` in [0, 1] is the mask
    opacity. Objects later in ``results`` cover earlier ones. Contours and labels (a filled box
    in the object's colour) scale with the image, legible from 320x240 to 1080p. ``banner``
    (e.g. ``DUMMY_BANNER``) is drawn as a red strip across the top, labels kept below it.
    Returns a new (H, W, 3) uint8 array in BGR order (publish it as ``bgr8``).
    """
    out = _to_bgr(image_rgb)  # always a new array
    h, w = out.shape[:2]
    alpha = float(min(max(alpha, 0.0), 1.0))
    top = 0
    if results:
        idx = _index_image(results, (h, w))
        covered = idx > 0
        if alpha > 0.0 and covered.any():
            lut = np.array([(0, 0, 0)] + [color_for_id(r.object_id) for r in results], dtype=np.float32)
            colours = lut[idx[covered]]
            blended = out[covered].astype(np.float32) * (1.0 - alpha) + colours * alpha
            out[covered] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
    if banner:  # drawn last, over everything; labels are kept below it
        top = _banner_layout(h, w, banner)[2]
    if not results:
        if banner:
            draw_banner(out, banner)
        return out
    thickness = max(1, int(round(min(h, w) / 200.0)))
    outline = min(h, w) >= 200  # thumbnails: the coloured contour only
    for i, res in enumerate(results):
        box = _bbox(res, (h, w))
        if box is None:
            continue
        x0, y0, x1, y1 = box
        colour = color_for_id(res.object_id)
        crop = (idx[y0:y1 + 1, x0:x1 + 1] == i + 1).astype(np.uint8)
        if not crop.any():
            continue
        contours, _ = cv2.findContours(crop, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE, offset=(x0, y0))
        # A dark outline under the coloured one keeps the contour visible on any background.
        if outline:
            cv2.drawContours(out, contours, -1, (0, 0, 0), thickness + 2, cv2.LINE_AA)
        cv2.drawContours(out, contours, -1, colour, thickness, cv2.LINE_AA)
        _label(out, f"id {int(res.object_id)}  {float(res.score):.2f}", (x0, y0), colour, top)
    if banner:
        draw_banner(out, banner)
    return out


def _rgba(object_id: int, a: float = 1.0) -> ColorRGBA:
    b, g, r = color_for_id(object_id)
    return ColorRGBA(r=r / 255.0, g=g / 255.0, b=b / 255.0, a=float(a))


def marker_array(results: Sequence[ObjectResult], header, ns: str = "sam2",
                 frame_size: Optional[Sequence[int]] = None,
                 pixel_size: float = PIXEL_SIZE_M) -> MarkerArray:
    """Box (LINE_STRIP) and id (TEXT_VIEW_FACING) markers for the visible objects.

    The first marker is a DELETEALL, so objects that vanished since the last array disappear.
    Box markers use namespace ``ns`` and id = object id; labels use ``ns + "/ids"``; the image
    border (only with ``frame_size``) uses ``ns + "/frame"``. ``header`` is the source image's
    ``std_msgs/Header`` (copied into every marker). ``frame_size`` is the source image's shape
    ``(height, width[, channels])``: when given, the image centre is placed on the optical axis
    and the border is drawn. Coordinates: see the module docstring (1 px = ``pixel_size`` m).
    """
    arr = MarkerArray()
    clear = Marker()
    clear.header = header
    clear.ns = ns
    clear.action = Marker.DELETEALL
    arr.markers.append(clear)

    ps = float(pixel_size)
    if frame_size is not None:
        fh, fw = float(frame_size[0]), float(frame_size[1])
        cx, cy = fw / 2.0, fh / 2.0
    else:
        fh = fw = 0.0
        cx = cy = 0.0

    def pt(u: float, v: float) -> Point:
        return Point(x=(u - cx) * ps, y=(v - cy) * ps, z=0.0)

    def base(marker_ns: str, mid: int, kind: int) -> Marker:
        m = Marker()
        m.header = header
        m.ns = marker_ns
        m.id = int(mid)  # int32: callers pass marker_id(object id)
        m.type = kind
        m.action = Marker.ADD
        m.pose.orientation.w = 1.0
        m.frame_locked = False
        return m

    ref = max(fw, fh, 480.0) if frame_size is not None else 480.0
    line_w = ps * max(1.0, ref / 320.0)
    text_h = ps * max(12.0, ref / 24.0)
    if frame_size is not None:
        border = base(ns + "/frame", 0, Marker.LINE_STRIP)
        border.scale.x = line_w
        border.color = ColorRGBA(r=0.6, g=0.6, b=0.6, a=0.8)
        border.points = [pt(0, 0), pt(fw, 0), pt(fw, fh), pt(0, fh), pt(0, 0)]
        arr.markers.append(border)

    for res in results:
        x0, y0, x1, y1 = (int(v) for v in res.bbox)
        if not res.visible or x1 < x0 or y1 < y0:
            continue
        oid = int(res.object_id)
        # Inclusive pixel box -> its outer edges.
        u0, v0, u1, v1 = float(x0), float(y0), float(x1 + 1), float(y1 + 1)
        box = base(ns, marker_id(oid), Marker.LINE_STRIP)
        box.scale.x = line_w
        box.color = _rgba(oid)
        box.points = [pt(u0, v0), pt(u1, v0), pt(u1, v1), pt(u0, v1), pt(u0, v0)]
        arr.markers.append(box)

        label = base(ns + "/ids", marker_id(oid), Marker.TEXT_VIEW_FACING)
        anchor = pt(u0, v0 - text_h / ps * 0.7)
        label.pose.position.x, label.pose.position.y, label.pose.position.z = anchor.x, anchor.y, 0.0
        label.scale.z = text_h
        label.color = _rgba(oid)
        label.text = f"{oid} {float(res.score):.2f}"
        arr.markers.append(label)
    return arr


__all__ = ["DUMMY_BANNER", "LABEL_ENCODINGS", "PIXEL_SIZE_M", "color_for_id", "draw_banner", "label_image",
           "marker_array", "marker_id", "object_id", "overlay_image"]

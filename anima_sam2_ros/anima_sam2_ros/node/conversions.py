"""Messages <-> numpy / engine types: the one place where the node converts data.

* ``image_from_msg`` (``sensor_msgs/Image``: the encodings of ``ENCODINGS``, converted as
  cv_bridge's ``imgmsg_to_cv2`` converts them, see below) and ``image_from_compressed``
  (``sensor_msgs/CompressedImage``, decoded with OpenCV) return an ``(array, encoding)`` pair
  (rgb8, bgr8 or mono8) the engine takes as it is.
* ``prompt_from_msg``: ``anima_sam2_msgs/Prompt`` -> engine ``Prompt`` (structure only; the engine's
  ``validate_prompt`` checks coordinates against the image).
* ``object_mask_msg`` / ``mask_array_msg``: engine ``ObjectResult`` -> ``ObjectMask`` (mono8 0/255
  mask at source resolution, built with ``array.array('B', ...)``: field checks on
  ``bytes`` are ~100x slower) / ``ObjectMaskArray`` with the source frame's header.
* ``image_msg``: numpy image -> ``sensor_msgs/Image`` (label image, overlay).

Every rejection raises ``ConversionError`` (an engine ``InvalidInputError``) with a message that
says what was wrong and what is accepted.
"""

from __future__ import annotations

import array
import dataclasses
import math
from typing import Any, Sequence, Tuple

import numpy as np

from anima_sam2_ros.engine.errors import InvalidInputError
from anima_sam2_ros.engine.types import ObjectResult, Prompt

# ROS image encoding -> (bytes per pixel, engine encoding). rgb8 / bgr8 / mono8 (and OpenCV's 8UC3
# = bgr8 / 8UC1 = mono8) go to the engine as they are; the others are converted as cv_bridge does:
# alpha dropped (rgba8 -> rgb8, bgra8 -> bgr8), YUV 4:2:2 and 8-bit Bayer to rgb8 with OpenCV's
# cvtColor codes cv_bridge uses, mono16 scaled to mono8 by 255/65535 (cv_bridge's 16 -> 8 bit
# convertTo; big-endian data honoured).
ENCODINGS = {
    "rgb8": (3, "rgb8"),
    "bgr8": (3, "bgr8"),
    "mono8": (1, "mono8"),
    "8UC3": (3, "bgr8"),
    "8UC1": (1, "mono8"),
    "rgba8": (4, "rgb8"),
    "bgra8": (4, "bgr8"),
    "yuv422": (2, "rgb8"),        # UYVY byte order (ROS' yuv422)
    "uyvy": (2, "rgb8"),
    "yuv422_yuy2": (2, "rgb8"),   # YUYV byte order
    "yuyv": (2, "rgb8"),
    "bayer_rggb8": (1, "rgb8"),
    "bayer_bggr8": (1, "rgb8"),
    "bayer_gbrg8": (1, "rgb8"),
    "bayer_grbg8": (1, "rgb8"),
    "mono16": (2, "mono8"),
}
#: The cv2.cvtColor code per converted encoding, by OpenCV constant name (cv2 imported lazily).
#: cv_bridge's Bayer codes are OpenCV's legacy names: bayer_rggb8 -> COLOR_BayerBG2RGB, which is
#: OpenCV's COLOR_BayerRGGB2RGB.
_CVT_CODES = {
    "yuv422": "COLOR_YUV2RGB_UYVY",
    "uyvy": "COLOR_YUV2RGB_UYVY",
    "yuv422_yuy2": "COLOR_YUV2RGB_YUY2",
    "yuyv": "COLOR_YUV2RGB_YUYV",
    "bayer_rggb8": "COLOR_BayerBG2RGB",
    "bayer_bggr8": "COLOR_BayerRG2RGB",
    "bayer_gbrg8": "COLOR_BayerGR2RGB",
    "bayer_grbg8": "COLOR_BayerGB2RGB",
}
# Encodings recognised only to explain why they are refused (README "Interfaces": what stays
# unsupported): 16-bit colour / Bayer, depth and float images, and every other name.
_DEEP = ("16UC", "16SC", "32FC", "32SC", "64FC", "rgb16", "bgr16", "rgba16", "bgra16", "bayer_")
SUPPORTED = ", ".join(ENCODINGS)
DEFAULT_MAX_SIDE = 8192


class ConversionError(InvalidInputError):
    """A message the node cannot use (encoding, sizes, values)."""


def _check_size(width: int, height: int, max_side: int, what: str) -> None:
    if width <= 0 or height <= 0:
        raise ConversionError(f"{what} is empty ({width}x{height})")
    if width > max_side or height > max_side:
        raise ConversionError(f"{what} {width}x{height} exceeds the limit of {max_side} pixels per side "
                              f"(parameter max_image_side)")


def image_from_msg(msg: Any, max_side: int = DEFAULT_MAX_SIDE) -> Tuple[np.ndarray, str]:
    """``sensor_msgs/Image`` -> ``(HxW or HxWx3 uint8 array, engine encoding)``.

    rgb8 / bgr8 / mono8 are returned as they are (a view of the message's data); rgba8 / bgra8
    without alpha; yuv422 (UYVY) / uyvy / yuv422_yuy2 / yuyv and bayer_rggb8 / bggr8 / gbrg8 /
    grbg8 as rgb8, converted with the OpenCV codes cv_bridge uses; mono16 as mono8 scaled by
    255/65535 (as cv_bridge's ``imgmsg_to_cv2(msg, "mono8")``).

    Raises:
        ConversionError: unsupported encoding (16-bit colour, depth, float, ...: the message names
            it), empty or oversized image, an odd width for YUV 4:2:2, ``step`` smaller than a
            row or ``data`` size != ``step * height``.
    """
    encoding = str(msg.encoding)
    width, height, step = int(msg.width), int(msg.height), int(msg.step)
    if encoding not in ENCODINGS:
        if encoding.startswith(_DEEP):
            raise ConversionError(
                f"image encoding {encoding!r} is not supported: 16-bit colour, depth and float images "
                f"cannot be segmented; publish one of {SUPPORTED}")
        raise ConversionError(f"image encoding {encoding!r} is not supported; use one of {SUPPORTED}")
    bpp, engine_encoding = ENCODINGS[encoding]
    _check_size(width, height, max_side, "image")
    row = width * bpp
    if step < row:
        raise ConversionError(f"image step {step} is smaller than a {encoding} row of {width} pixels "
                              f"({row} bytes)")
    size = len(msg.data)
    if size != step * height:
        raise ConversionError(f"image data holds {size} bytes, expected step * height = {step} * {height} "
                              f"= {step * height}")
    code = _CVT_CODES.get(encoding)
    if code is not None and code.startswith("COLOR_YUV") and width % 2:
        raise ConversionError(f"image encoding {encoding!r} (YUV 4:2:2) needs an even width, got {width}")
    flat = np.frombuffer(msg.data, dtype=np.uint8)
    rows = flat.reshape(height, step)
    if step != row:
        rows = rows[:, :row]
    if encoding == "mono16":
        import cv2

        dtype = ">u2" if int(msg.is_bigendian) else "<u2"
        deep = np.ascontiguousarray(rows).view(dtype).reshape(height, width).astype(np.uint16)
        return cv2.convertScaleAbs(deep, alpha=255.0 / 65535.0), engine_encoding
    if code is not None:
        import cv2

        shape = (height, width, 2) if bpp == 2 else (height, width)
        return cv2.cvtColor(np.ascontiguousarray(rows).reshape(shape), getattr(cv2, code)), engine_encoding
    image = rows.reshape(height, width, bpp) if bpp > 1 else rows.reshape(height, width)
    if bpp == 4:
        image = image[:, :, :3]
    return image, engine_encoding


_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (SOF0..SOF15 without DHT C4, JPG C8 and DAC CC): they hold the size.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def compressed_size(data: Any) -> Tuple[str, int, int]:
    """``(format, width, height)`` read from a PNG or JPEG header, without decoding any pixel.

    Raises:
        ConversionError: neither PNG nor JPEG, or a truncated / malformed header.
    """
    data = memoryview(data).cast("B") if not isinstance(data, (bytes, bytearray)) else data
    if bytes(data[:8]) == _PNG_MAGIC:
        # Signature, then the IHDR chunk: length (4), "IHDR", width (4), height (4), big-endian.
        if len(data) < 24 or bytes(data[12:16]) != b"IHDR":
            raise ConversionError("compressed image: PNG without a valid IHDR header")
        return "png", int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if bytes(data[:2]) == b"\xff\xd8":
        i, n = 2, len(data)
        while i + 4 <= n:
            if data[i] != 0xFF:
                raise ConversionError(f"compressed image: malformed JPEG marker at byte {i}")
            marker = data[i + 1]
            if marker == 0xFF:  # fill byte
                i += 1
                continue
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
                i += 2
                continue
            length = int.from_bytes(data[i + 2:i + 4], "big")
            if length < 2:
                raise ConversionError(f"compressed image: malformed JPEG segment at byte {i}")
            if marker in _JPEG_SOF:
                if i + 9 > n:
                    break
                height = int.from_bytes(data[i + 5:i + 7], "big")
                width = int.from_bytes(data[i + 7:i + 9], "big")
                return "jpeg", width, height
            if marker in (0xD9, 0xDA):  # end of image / start of scan before any frame header
                break
            i += 2 + length
        raise ConversionError("compressed image: JPEG without a frame (SOF) header")
    raise ConversionError("cannot decode compressed image: the data is neither PNG nor JPEG (only png and "
                          "jpeg are accepted)")


def image_from_compressed(msg: Any, max_side: int = DEFAULT_MAX_SIDE) -> Tuple[np.ndarray, str]:
    """``sensor_msgs/CompressedImage`` (jpeg, png) -> ``(HxWx3 uint8 BGR, "bgr8")``.

    The width and height are read from the PNG / JPEG header first (``compressed_size``): an image
    over ``max_side`` is refused before a single pixel is decoded (a decompression bomb costs
    nothing), and OpenCV's own errors become ``ConversionError``.

    Raises:
        ConversionError: empty data, not PNG/JPEG, malformed header, 16-bit content, oversized
            image, undecodable data.
    """
    import cv2

    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size == 0:
        raise ConversionError("compressed image has no data")
    fmt = str(msg.format)
    if "16UC" in fmt or "32FC" in fmt or "compressedDepth" in fmt:
        raise ConversionError(f"compressed image format {fmt!r} (depth) is not supported")
    kind, width, height = compressed_size(memoryview(data))
    _check_size(width, height, max_side, f"compressed {kind} image")
    try:
        image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    except cv2.error as exc:
        raise ConversionError(f"cannot decode compressed {kind} image ({width}x{height}, {data.size} "
                              f"bytes): {str(exc).strip().splitlines()[-1][:200]}") from None
    if image is None:
        raise ConversionError(f"cannot decode compressed image (format {fmt!r}, {data.size} bytes)")
    if image.dtype != np.uint8:  # pragma: no cover - IMREAD_COLOR always yields 8 bits
        raise ConversionError(f"compressed image decodes to {image.dtype}, expected 8 bits")
    _check_size(int(image.shape[1]), int(image.shape[0]), max_side, "compressed image")
    return image, "bgr8"


def is_empty_image(msg: Any) -> bool:
    """True for an unset image field (width or height 0): "use the latest camera frame" / "no mask"."""
    return int(msg.width) == 0 or int(msg.height) == 0


def mask_from_msg(msg: Any, max_side: int = DEFAULT_MAX_SIDE) -> np.ndarray:
    """A mono8 (or 8UC1) mask prompt -> ``(H, W)`` uint8 array (non-zero = object).

    Raises:
        ConversionError: other encodings, step / data size mismatch.
    """
    encoding = str(msg.encoding)
    if encoding not in ("mono8", "8UC1"):
        raise ConversionError(f"mask prompt encoding {encoding!r} is not supported; use mono8 "
                              f"(non-zero = object)")
    image, _ = image_from_msg(msg, max_side)
    return image


def prompt_from_msg(msg: Any, max_side: int = DEFAULT_MAX_SIDE) -> Prompt:
    """``anima_sam2_msgs/Prompt`` -> engine ``Prompt`` (same pixel coordinates).

    Empty labels with points mean "all foreground"; an empty box or mask means none. Coordinates
    are checked for finiteness here; ranges against the image by the engine.

    Raises:
        ConversionError: labels count != points count, a label other than 0/1, a box without 4
            values, NaN/inf values, a bad mask image, mask logits that are not a square, or
            nothing given.
    """
    oid = int(msg.object_id)
    points = labels = box = mask = mask_logits = None
    if len(msg.points):
        points = np.array([[p.x, p.y] for p in msg.points], dtype=np.float64)
        if not np.isfinite(points).all():
            raise ConversionError(f"prompt (object {oid}): points contain NaN or infinite values")
        if len(msg.labels):
            if len(msg.labels) != len(msg.points):
                raise ConversionError(f"prompt (object {oid}): {len(msg.labels)} labels for "
                                      f"{len(msg.points)} points")
            labels = np.array(list(msg.labels), dtype=np.int64)
            bad = labels[(labels != 0) & (labels != 1)]
            if bad.size:
                raise ConversionError(f"prompt (object {oid}): label {int(bad[0])} is not allowed: use 1 "
                                      f"(foreground) or 0 (background)")
    elif len(msg.labels):
        raise ConversionError(f"prompt (object {oid}): {len(msg.labels)} labels but no points")
    if len(msg.box):
        if len(msg.box) != 4:
            raise ConversionError(f"prompt (object {oid}): box must hold 4 values (x_min, y_min, x_max, "
                                  f"y_max), got {len(msg.box)}")
        box = np.array(list(msg.box), dtype=np.float64)
        if not np.isfinite(box).all():
            raise ConversionError(f"prompt (object {oid}): box contains NaN or infinite values")
    if not is_empty_image(msg.mask):
        try:
            mask = mask_from_msg(msg.mask, max_side)
        except ConversionError as exc:
            raise ConversionError(f"prompt (object {oid}): {exc}") from None
    if len(getattr(msg, "mask_logits", ())):
        mask_logits = mask_logits_from_msg(msg.mask_logits, oid)
    if points is None and box is None and mask is None and mask_logits is None:
        raise ConversionError(f"prompt (object {oid}) has no points, box or mask")
    return Prompt(object_id=oid, points=points, labels=labels, box=box, mask=mask,
                  mask_logits=mask_logits)


#: Longest side of mask logits a prompt may carry (SAM 2.1's are 256; the engine allows 1024).
MAX_MASK_LOGITS_SIDE = 1024


def mask_logits_from_msg(values: Any, oid: int = 0) -> np.ndarray:
    """``Prompt.mask_logits`` (row-major ``n * n`` floats) -> ``(n, n)`` float32 array.

    Raises:
        ConversionError: the length is not a square, too large, or values are NaN/inf.
    """
    count = len(values)
    side = math.isqrt(count)
    if side * side != count or side == 0:
        raise ConversionError(f"prompt (object {oid}): mask_logits must hold n x n values (256 x 256 "
                              f"for SAM 2.1, as returned by Segment), got {count}")
    if side > MAX_MASK_LOGITS_SIDE:
        raise ConversionError(f"prompt (object {oid}): mask_logits {side} x {side} exceed "
                              f"{MAX_MASK_LOGITS_SIDE} x {MAX_MASK_LOGITS_SIDE}")
    arr = np.asarray(values, dtype=np.float32).reshape(side, side)
    if not np.isfinite(arr).all():
        raise ConversionError(f"prompt (object {oid}): mask_logits contain NaN or infinite values")
    return arr


def mask_logits_fields(results: Sequence[ObjectResult]) -> Tuple[int, array.array]:
    """Segment response ``(mask_logits_size, mask_logits)``: every result's low-res logits, in order.

    Results without logits give ``(0, empty)``; all results of one call share one size.
    """
    lows = [r.low_res_logits for r in results]
    if not lows or any(low is None for low in lows):
        return 0, array.array("f")
    side = int(lows[0].shape[-1])
    flat = np.concatenate([np.ascontiguousarray(low, dtype=np.float32).reshape(-1) for low in lows])
    return side, array.array("f", flat.tobytes())


def assign_ids(prompts: Sequence[Prompt], taken: Sequence[int] = ()) -> list:
    """Give every ``object_id`` 0 the smallest free id (> 0, not in ``taken`` nor the prompts).

    Raises:
        ConversionError: the same non-zero id twice.
    """
    seen = set()
    for p in prompts:
        if p.object_id:
            if p.object_id in seen:
                raise ConversionError(f"object_id {p.object_id} appears in more than one prompt")
            seen.add(p.object_id)
    used = seen | set(int(t) for t in taken)
    out = []
    next_id = 1
    for p in prompts:
        if not p.object_id:
            while next_id in used:
                next_id += 1
            used.add(next_id)
            p = dataclasses.replace(p, object_id=next_id)
        out.append(p)
    return out


def image_msg(image: np.ndarray, encoding: str, header: Any = None) -> Any:
    """A numpy image as a ``sensor_msgs/Image`` (uint8, little-endian uint16 or uint32; C-contiguous copy)."""
    from sensor_msgs.msg import Image

    image = np.ascontiguousarray(image)
    if image.dtype == np.uint16:
        image = image.astype("<u2", copy=False)
    elif image.dtype == np.uint32:
        image = image.astype("<u4", copy=False)
    elif image.dtype != np.uint8:
        raise ConversionError(f"cannot publish an image of dtype {image.dtype}")
    height, width = int(image.shape[0]), int(image.shape[1])
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = height, width
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = int(image.strides[0]) if height else 0
    msg.data = array.array("B", image.tobytes())
    return msg


def _finite(value: float, default: float = 0.0) -> float:
    value = float(value)
    return value if math.isfinite(value) else default


def object_mask_msg(result: ObjectResult, header: Any = None, include_mask: bool = True,
                    min_score: float = 0.0) -> Any:
    """Engine ``ObjectResult`` -> ``ObjectMask`` (mask mono8 0/255 at source size, or empty)."""
    from anima_sam2_msgs.msg import ObjectMask

    msg = ObjectMask()
    msg.object_id = int(result.object_id)
    if include_mask:
        mask = np.asarray(result.mask)
        msg.mask = image_msg(mask.astype(np.uint8) * np.uint8(255), "mono8", header)
    score = min(max(_finite(result.score), 0.0), 1.0)
    msg.score = score
    msg.object_score = min(max(_finite(result.object_score), 0.0), 1.0)
    msg.visible = bool(result.visible) and score >= float(min_score)
    msg.lost = bool(result.lost)
    msg.event = str(result.event or "")
    x0, y0, x1, y1 = (int(v) for v in result.bbox)
    if int(result.area) > 0 and x1 >= x0 and y1 >= y0:
        msg.x_min, msg.y_min, msg.x_max, msg.y_max = x0, y0, x1, y1
    msg.area = max(int(result.area), 0)
    return msg


def mask_array_msg(objects: Sequence[Any], header: Any) -> Any:
    """``ObjectMaskArray`` from ``ObjectMask`` messages and the source frame's header."""
    from anima_sam2_msgs.msg import ObjectMaskArray

    msg = ObjectMaskArray()
    msg.header = header
    msg.objects = list(objects)
    return msg


def stamp(seconds: float) -> Any:
    """A ``builtin_interfaces/Time`` of ``seconds`` since the epoch (0 -> zero time)."""
    from builtin_interfaces.msg import Time

    ns = max(int(round(float(seconds) * 1e9)), 0)
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def stamp_seconds(t: Any) -> float:
    """Seconds since the epoch of a ``builtin_interfaces/Time``."""
    return int(t.sec) + int(t.nanosec) * 1e-9


def header_copy(header: Any) -> Any:
    """An independent copy of a ``std_msgs/Header``."""
    from std_msgs.msg import Header

    out = Header()
    out.stamp.sec = int(header.stamp.sec)
    out.stamp.nanosec = int(header.stamp.nanosec)
    out.frame_id = str(header.frame_id)
    return out


def describe_image(msg: Any) -> str:
    """Short description of an image message for log lines."""
    return f"{msg.width}x{msg.height} {msg.encoding!r} step {msg.step}, {len(msg.data)} bytes"



# ---------------------------------------------------------------------------------------------
# Perception pipeline (issue 16): vision_msgs detections in and out, depth, clicks, 3D outputs.
# vision_msgs is imported inside the functions: a robot without it still runs the 2D node.

def stamp_ns(stamp: Any) -> int:
    """A ``builtin_interfaces/Time`` as integer nanoseconds (0 = unset)."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def boxes_from_detection2d_array(msg: Any) -> Tuple[list, list]:
    """``vision_msgs/Detection2DArray`` -> ``(DetBox list, reasons for the rejected detections)``.

    A box is ``bbox.center`` +- ``size / 2`` in pixels (a rotated box: its axis-aligned hull); its
    class and score are the highest-scoring ``results[].hypothesis`` (class '' and score 1.0
    without results). Non-finite, zero or negative sizes are rejected one by one, never the
    whole array.
    """
    from .detections_input import DetBox

    boxes, rejected = [], []
    for k, det in enumerate(msg.detections):
        b = det.bbox
        cx, cy = float(b.center.position.x), float(b.center.position.y)
        sx, sy, theta = float(b.size_x), float(b.size_y), float(b.center.theta)
        if not all(math.isfinite(v) for v in (cx, cy, sx, sy, theta)):
            rejected.append(f"detection {k}: bbox has NaN or infinite values")
            continue
        if sx <= 0.0 or sy <= 0.0:
            rejected.append(f"detection {k}: bbox size {sx:g}x{sy:g} is not positive")
            continue
        if theta:
            c, s = abs(math.cos(theta)), abs(math.sin(theta))
            sx, sy = sx * c + sy * s, sx * s + sy * c
        class_id, score = "", 1.0
        best = None
        for r in det.results:
            sc = float(r.hypothesis.score)
            if math.isfinite(sc) and (best is None or sc > best):
                best, class_id, score = sc, str(r.hypothesis.class_id), sc
        boxes.append(DetBox(cx - sx / 2, cy - sy / 2, cx + sx / 2, cy + sy / 2, class_id, score))
    return boxes, rejected


def detection2d_array_msg(results: Sequence[ObjectResult], header: Any, class_of: Any = None) -> Any:
    """``vision_msgs/Detection2DArray``: one ``Detection2D`` per visible object of a frame.

    ``id`` = the tracking id (``str(object_id)``), ``results[0].hypothesis`` = class id (the
    detector's class for objects a detection created, else ``class_of``'s '' -> "object") and
    score (the mask's predicted IoU), ``bbox`` = the mask's box (pixel edges: centre
    ``(x_min + x_max + 1) / 2``, size ``x_max - x_min + 1``).
    """
    from vision_msgs.msg import Detection2D, Detection2DArray, ObjectHypothesisWithPose

    out = Detection2DArray()
    out.header = header
    for r in results:
        x0, y0, x1, y1 = (int(v) for v in r.bbox)
        if not r.visible or int(r.area) <= 0 or x1 < x0 or y1 < y0:
            continue
        det = Detection2D()
        det.header = header
        det.id = str(int(r.object_id))
        det.bbox.center.position.x = (x0 + x1 + 1) / 2.0
        det.bbox.center.position.y = (y0 + y1 + 1) / 2.0
        det.bbox.size_x = float(x1 - x0 + 1)
        det.bbox.size_y = float(y1 - y0 + 1)
        hyp = ObjectHypothesisWithPose()
        hyp.hypothesis.class_id = (class_of(int(r.object_id)) if class_of is not None else "") or "object"
        hyp.hypothesis.score = min(max(_finite(r.score), 0.0), 1.0)
        det.results = [hyp]
        out.detections.append(det)
    return out


def depth_from_msg(msg: Any, max_side: int = DEFAULT_MAX_SIDE) -> Tuple[np.ndarray, float]:
    """A registered depth ``sensor_msgs/Image`` -> ``(HxW uint16 or float32 array, metres per unit)``.

    Raises:
        ConversionError: encodings other than 16UC1 / mono16 (millimetres) and 32FC1 (metres),
            empty or oversized images, ``step`` / data size mismatches.
    """
    from .depth3d import DEPTH_SCALES

    encoding = str(msg.encoding)
    if encoding not in DEPTH_SCALES:
        raise ConversionError(f"depth encoding {encoding!r} is not supported; use 16UC1 (millimetres) "
                              f"or 32FC1 (metres)")
    width, height, step = int(msg.width), int(msg.height), int(msg.step)
    _check_size(width, height, max_side, "depth image")
    itemsize = 2 if encoding != "32FC1" else 4
    row = width * itemsize
    if step < row or step % itemsize:
        raise ConversionError(f"depth image step {step} does not fit a {encoding} row of {width} pixels "
                              f"({row} bytes)")
    if len(msg.data) != step * height:
        raise ConversionError(f"depth image data holds {len(msg.data)} bytes, expected step * height = "
                              f"{step * height}")
    order = ">" if int(msg.is_bigendian) else "<"
    dtype = np.dtype(f"{order}u2" if itemsize == 2 else f"{order}f4")
    flat = np.frombuffer(msg.data, dtype=np.uint8).reshape(height, step)[:, :row]
    depth = np.ascontiguousarray(flat).view(dtype).reshape(height, width)
    return depth.astype(dtype.newbyteorder("=")), DEPTH_SCALES[encoding]


def detection3d_array_msg(geometries: Sequence[Any], header: Any, class_of: Any = None,
                          scores: Any = None, with_cloud: bool = False) -> Any:
    """``vision_msgs/Detection3DArray`` of per-object geometries, in the depth frame.

    Per object: ``bbox`` (axis-aligned box of the inlier points: centre + size),
    ``results[0].pose`` at the centroid (mean of the points), ``id`` the tracking id, optionally
    ``source_cloud`` (the object's decimated points).
    """
    from vision_msgs.msg import Detection3D, Detection3DArray, ObjectHypothesisWithPose

    out = Detection3DArray()
    out.header = header
    for g in geometries:
        det = Detection3D()
        det.header = header
        det.id = str(int(g.object_id))
        cx, cy, cz = (float(v) for v in g.center)
        det.bbox.center.position.x, det.bbox.center.position.y, det.bbox.center.position.z = cx, cy, cz
        sx, sy, sz = (float(v) for v in g.size)
        det.bbox.size.x, det.bbox.size.y, det.bbox.size.z = sx, sy, sz
        hyp = ObjectHypothesisWithPose()
        hyp.hypothesis.class_id = (class_of(int(g.object_id)) if class_of is not None else "") or "object"
        hyp.hypothesis.score = float((scores or {}).get(int(g.object_id), 1.0))
        px, py, pz = (float(v) for v in g.centroid)
        hyp.pose.pose.position.x, hyp.pose.pose.position.y, hyp.pose.pose.position.z = px, py, pz
        det.results = [hyp]
        if with_cloud and g.points is not None:
            det.source_cloud = pointcloud2_msg(g.points, header)
        out.detections.append(det)
    return out


def pointcloud2_msg(points: np.ndarray, header: Any, object_ids: Any = None) -> Any:
    """``sensor_msgs/PointCloud2`` (unorganised) with float32 ``x, y, z``.

    With ``object_ids`` (one per point) it also has a uint32 ``object_id`` field (rviz: colour by
    the ``object_id`` channel).
    """
    from sensor_msgs.msg import PointCloud2, PointField

    pts = np.asarray(points, dtype=np.float32).reshape(-1, 3)
    fields = [PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1)
              for i, n in enumerate("xyz")]
    if object_ids is not None:
        rec = np.empty(len(pts), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("object_id", "<u4")])
        rec["x"], rec["y"], rec["z"] = pts[:, 0], pts[:, 1], pts[:, 2]
        rec["object_id"] = np.asarray(object_ids, dtype=np.uint32)
        fields.append(PointField(name="object_id", offset=12, datatype=PointField.UINT32, count=1))
        data, point_step = rec.tobytes(), 16
    else:
        data, point_step = pts.astype("<f4").tobytes(), 12
    msg = PointCloud2()
    msg.header = header
    msg.height, msg.width = 1, int(len(pts))
    msg.fields = fields
    msg.is_bigendian = False
    msg.point_step = point_step
    msg.row_step = point_step * int(len(pts))
    msg.is_dense = True
    msg.data = array.array("B", data)
    return msg

"""Checks of images and prompts; every failure is an ``InvalidInputError`` with a specific message.

``validate_prompt`` returns a normalised copy of the prompt (float32 points / box, int64 labels,
bool mask) so that the networks never see user dtypes. Coordinates are source-image pixels:
points may lie anywhere in ``0 <= x <= W``, ``0 <= y <= H`` (the border included). A box that
partly leaves the image is clipped to it; a box entirely outside is rejected.
"""

from __future__ import annotations

import numbers

import numpy as np

from .errors import InvalidInputError
from .types import Prompt

MAX_IMAGE_SIDE = 8192
MAX_POINTS = 256
MAX_MASK_LOGITS_SIDE = 1024  # SAM 2.1's own are 256 x 256
# 1 foreground, 0 background; SAM's internal -1 (padding) and 2/3 (box corners) are not for users.
VALID_LABELS = (0, 1)


def validate_image(image: np.ndarray) -> np.ndarray:
    """Check a camera/image array: uint8, ``HxW`` or ``HxWxC`` (C in 1, 3, 4), non-empty, sides <= 8192.

    Returns the image, made C-contiguous if it was not (a copy only in that case).
    """
    if not isinstance(image, np.ndarray):
        raise InvalidInputError(f"image must be a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise InvalidInputError(f"image must be uint8, got {image.dtype}")
    if image.ndim not in (2, 3):
        raise InvalidInputError(f"image must be HxW or HxWxC, got {image.ndim} dimensions")
    if image.ndim == 3 and image.shape[2] not in (1, 3, 4):
        raise InvalidInputError(f"image must have 1, 3 or 4 channels, got {image.shape[2]}")
    height, width = image.shape[:2]
    if height == 0 or width == 0:
        raise InvalidInputError(f"image is empty (shape {image.shape})")
    if height > MAX_IMAGE_SIDE or width > MAX_IMAGE_SIDE:
        raise InvalidInputError(
            f"image {width}x{height} exceeds the limit of {MAX_IMAGE_SIDE} pixels per side")
    if not image.flags.c_contiguous:
        image = np.ascontiguousarray(image)
    return image


def _float_array(value, what: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{what} must be numeric") from None
    return arr


def validate_prompt(prompt: Prompt, image_hw: tuple) -> Prompt:
    """Check one prompt against an image of size ``image_hw = (H, W)``; return a normalised copy.

    Rules: at least one of points / box / mask; points ``(N, 2)`` finite, inside the image
    (border included), at most 256; labels ``(N,)`` with values 0 or 1 (default: all 1 when
    omitted), given only with points; box 4 finite values with ``x_min < x_max`` and
    ``y_min < y_max``, clipped to the image if it overlaps it partly, rejected if it lies entirely
    outside; mask ``HxW`` like the image, bool or numeric (non-zero = object), not empty.
    """
    if not isinstance(prompt, Prompt):
        raise InvalidInputError(f"prompt must be a Prompt, got {type(prompt).__name__}")
    height, width = int(image_hw[0]), int(image_hw[1])
    oid = prompt.object_id
    if isinstance(oid, bool) or not isinstance(oid, numbers.Integral) or oid < 0:
        raise InvalidInputError(f"object_id must be a non-negative integer, got {oid!r}")
    mask_logits = getattr(prompt, "mask_logits", None)
    if prompt.points is None and prompt.box is None and prompt.mask is None and mask_logits is None:
        raise InvalidInputError(f"prompt (object {oid}) has no points, box or mask")
    if prompt.mask is not None and mask_logits is not None:
        raise InvalidInputError(f"prompt (object {oid}): give mask or mask_logits, not both")

    points = labels = box = mask = None
    if prompt.points is not None:
        points = _float_array(prompt.points, "points")
        if points.ndim != 2 or points.shape[1] != 2 or points.shape[0] == 0:
            raise InvalidInputError(f"points must have shape (N, 2) with N >= 1, got {points.shape}")
        if points.shape[0] > MAX_POINTS:
            raise InvalidInputError(f"{points.shape[0]} points: at most {MAX_POINTS} per prompt")
        if not np.isfinite(points).all():
            raise InvalidInputError("points contain NaN or infinite values")
        x, y = points[:, 0], points[:, 1]
        outside = (x < 0) | (x > width) | (y < 0) | (y > height)
        if outside.any():
            i = int(np.flatnonzero(outside)[0])
            raise InvalidInputError(
                f"point {i} ({x[i]:g}, {y[i]:g}) lies outside the {width}x{height} image")
        if prompt.labels is None:
            labels = np.ones(points.shape[0], dtype=np.int64)
        else:
            raw = _float_array(prompt.labels, "labels")
            if raw.ndim != 1:
                raise InvalidInputError(f"labels must have shape (N,), got {raw.shape}")
            if raw.shape[0] != points.shape[0]:
                raise InvalidInputError(f"{raw.shape[0]} labels for {points.shape[0]} points")
            if not np.isin(raw, VALID_LABELS).all():
                bad = raw[~np.isin(raw, VALID_LABELS)][0]
                raise InvalidInputError(
                    f"label {bad:g} is not allowed: use 1 (foreground) or 0 (background)")
            labels = raw.astype(np.int64)
        points = points.astype(np.float32)
    elif prompt.labels is not None:
        raise InvalidInputError("labels given without points")

    if prompt.box is not None:
        raw = _float_array(prompt.box, "box")
        if raw.size != 4 or raw.ndim > 2 or (raw.ndim == 2 and raw.shape[0] != 1):
            raise InvalidInputError(
                f"box must hold 4 values (x_min, y_min, x_max, y_max), got shape {raw.shape}")
        raw = raw.reshape(4)
        if not np.isfinite(raw).all():
            raise InvalidInputError("box contains NaN or infinite values")
        x0, y0, x1, y1 = (float(v) for v in raw)
        if not (x0 < x1 and y0 < y1):
            raise InvalidInputError(
                f"box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) needs x_min < x_max and y_min < y_max")
        if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
            raise InvalidInputError(
                f"box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) lies entirely outside the {width}x{height} image")
        box = np.clip(raw, [0, 0, 0, 0], [width, height, width, height]).astype(np.float32)

    if prompt.mask is not None:
        try:
            m = np.asarray(prompt.mask)
        except (TypeError, ValueError):  # ragged nested sequences
            raise InvalidInputError("mask must be a 2-D array of the image's size") from None
        if m.shape != (height, width):
            raise InvalidInputError(f"mask shape {m.shape} differs from the image size ({height}, {width})")
        if m.dtype != np.bool_:
            if not (np.issubdtype(m.dtype, np.number)):
                raise InvalidInputError(f"mask must be bool or numeric, got {m.dtype}")
            if np.issubdtype(m.dtype, np.floating) and not np.isfinite(m).all():
                raise InvalidInputError("mask contains NaN or infinite values")
            m = m != 0
        if not m.any():
            raise InvalidInputError("mask is empty (no non-zero pixel)")
        mask = m

    if mask_logits is not None:
        mask_logits = _mask_logits(mask_logits)
    return Prompt(object_id=int(oid), points=points, labels=labels, box=box, mask=mask,
                  mask_logits=mask_logits)


def _mask_logits(value) -> np.ndarray:
    """``(h, w)`` or ``(1, h, w)`` finite floats -> ``(h, w)`` float32."""
    arr = _float_array(value, "mask_logits")
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2 or arr.size == 0:
        raise InvalidInputError(f"mask_logits must be a non-empty (h, w) array, got shape {arr.shape}")
    if max(arr.shape) > MAX_MASK_LOGITS_SIDE:
        raise InvalidInputError(f"mask_logits {arr.shape} exceeds {MAX_MASK_LOGITS_SIDE} per side "
                                f"(SAM 2.1's low-res logits are 256 x 256)")
    if not np.isfinite(arr).all():
        raise InvalidInputError("mask_logits contain NaN or infinite values")
    return np.ascontiguousarray(arr, dtype=np.float32)

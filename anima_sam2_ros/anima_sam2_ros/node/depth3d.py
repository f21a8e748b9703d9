"""Per-object 3D from a registered depth image (pure numpy: no ROS, no model).

Masked points, outlier rejection at mask edges, centroid and extent, and depth/colour pairing by
stamp.

Conventions: depth is *registered* to the colour camera (same size and intrinsics as the colour
image the masks come from, e.g. ``/camera/aligned_depth_to_color/image_raw``); ``16UC1`` /
``mono16`` are millimetres, ``32FC1`` metres; 0, NaN and inf are "no depth". Pixel ``(u, v)``
(column, row index) back-projects as ``X = (u - cx) * Z / fx``, ``Y = (v - cy) * Z / fy`` (OpenCV
pixel-centre convention, as camera_info's K), in the depth image's optical frame.

Outlier rejection at mask edges: a mask's boundary is where it is least reliable and where
registered depth jumps from the object to what lies behind it (and "flying pixels" between the
two). The masked depth is cut at every depth discontinuity (two 4-neighbours whose depths differ
by more than ``edge_threshold`` x depth: the farther pixel goes), then split into connected
pieces; the largest piece is the object, and other pieces are kept only when their median depth
lies within its depth range (e.g. a part cut off by a hole). So background the mask spills onto,
however wide the spill, and flying pixels are dropped, while a slanted or curved surface (small
steps between neighbours) stays whole.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Any, Deque, Optional, Sequence, Tuple

import numpy as np

# encoding -> metres per unit
DEPTH_SCALES = {"16UC1": 0.001, "mono16": 0.001, "32FC1": 1.0}
# Percentiles of the inlier coordinates that bound the reported extent (robust to stray pixels).
_EXTENT_PERCENTILES = (0.5, 99.5)
_EXTENT_SAMPLE = 20000


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics of the (registered) depth image."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    @classmethod
    def from_k(cls, k: Sequence[float], width: int, height: int) -> Intrinsics:
        """From camera_info's row-major 3x3 ``K`` and image size; ValueError if unusable."""
        if len(k) != 9:
            raise ValueError(f"K must hold 9 values, got {len(k)}")
        fx, cx, fy, cy = float(k[0]), float(k[2]), float(k[4]), float(k[5])
        if not (np.isfinite([fx, fy, cx, cy]).all() and fx > 0 and fy > 0):
            raise ValueError(f"camera_info K has no usable focal length (fx {fx}, fy {fy})")
        if int(width) <= 0 or int(height) <= 0:
            raise ValueError(f"camera_info size {width}x{height} is empty")
        return cls(fx, fy, cx, cy, int(width), int(height))


@dataclass
class ObjectGeometry:
    """One object's 3D summary in the depth frame (metres)."""

    object_id: int
    centroid: np.ndarray  # (3,) mean of the inlier points
    bbox_min: np.ndarray  # (3,) axis-aligned extent of the inliers (robust percentiles)
    bbox_max: np.ndarray  # (3,)
    n_points: int  # inlier points (full resolution)
    n_rejected: int  # masked pixels with depth that were rejected at the edges
    points: Optional[np.ndarray] = None  # (M, 3) float32 inliers on the decimated grid, if asked

    @property
    def center(self) -> np.ndarray:
        """Centre of the axis-aligned box."""
        return 0.5 * (self.bbox_min + self.bbox_max)

    @property
    def size(self) -> np.ndarray:
        """Size of the axis-aligned box (x, y, z)."""
        return self.bbox_max - self.bbox_min


def _erode(mask: np.ndarray, r: int) -> np.ndarray:
    """Binary erosion by a (2r+1)^2 square (outside the array counts as background)."""
    if r <= 0:
        return mask.copy()
    h, w = mask.shape
    pad = np.zeros((h + 2 * r + 1, w + 2 * r + 1), np.int32)
    pad[r + 1:r + 1 + h, r + 1:r + 1 + w] = mask
    ii = pad.cumsum(0).cumsum(1)
    k = 2 * r + 1
    window = ii[k:, k:] - ii[:-k, k:] - ii[k:, :-k] + ii[:-k, :-k]
    return window[:h, :w] == k * k


def _split_at_discontinuities(z: np.ndarray, valid: np.ndarray, thr: float) -> np.ndarray:
    """``valid`` without the far pixel of every 4-neighbour pair whose depths jump by > ``thr`` x depth."""
    keep = valid.copy()
    for a, b in (((slice(None), slice(1, None)), (slice(None), slice(None, -1))),
                 ((slice(1, None), slice(None)), (slice(None, -1), slice(None)))):
        za, zb = z[a], z[b]
        both = valid[a] & valid[b]
        with np.errstate(invalid="ignore"):
            jump = both & (np.abs(za - zb) > thr * np.minimum(za, zb))
            keep[a] &= ~(jump & (za > zb))
            keep[b] &= ~(jump & (zb > za))
    return keep


def object_geometry(object_id: int, depth: np.ndarray, scale: float, mask: np.ndarray,
                    intr: Intrinsics, *, edge_threshold: float = 0.05, max_range: float = 10.0,
                    min_points: int = 10, cloud_stride: int = 0) -> Optional[ObjectGeometry]:
    """3D centroid / extent (and optionally a decimated cloud) of one mask; None without enough depth.

    ``depth`` is the raw registered depth (uint16 with ``scale`` 0.001, or float32 metres with
    ``scale`` 1.0), ``mask`` a bool array of the same size. ``cloud_stride`` > 0 also returns the
    inliers on every ``cloud_stride``-th row and column (absolute pixel grid).
    """
    import cv2

    if depth.shape[:2] != mask.shape[:2]:
        raise ValueError(f"depth {depth.shape[1]}x{depth.shape[0]} and mask {mask.shape[1]}x{mask.shape[0]} "
                         f"differ in size")
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    m = mask[y0:y1, x0:x1].astype(bool, copy=False)
    z = depth[y0:y1, x0:x1].astype(np.float32) * np.float32(scale)
    with np.errstate(invalid="ignore"):
        valid = m & np.isfinite(z) & (z > 0.0) & (z <= max_range)
    n_valid = int(valid.sum())
    if n_valid < min_points:
        return None
    thr = float(edge_threshold)
    smooth = _split_at_discontinuities(z, valid, thr)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(smooth.astype(np.uint8), connectivity=4)
    if count <= 1:
        return None
    areas = stats[1:, cv2.CC_STAT_AREA]
    main = 1 + int(np.argmax(areas))
    keep = labels == main
    if count > 2:  # other pieces of the object (split by a hole or a thin part) at its depths
        lo, hi = np.percentile(z[keep], (2.0, 98.0))
        for lab in range(1, count):
            if lab == main or areas[lab - 1] < min_points:
                continue
            piece = labels == lab
            med = float(np.median(z[piece]))
            if lo * (1.0 - thr) <= med <= hi * (1.0 + thr):
                keep |= piece
    vv, uu = np.nonzero(keep)
    n = int(vv.size)
    if n < min_points:
        return None
    zk = z[vv, uu]
    xs = (uu + np.float32(x0 - intr.cx)) * zk * np.float32(1.0 / intr.fx)
    ys = (vv + np.float32(y0 - intr.cy)) * zk * np.float32(1.0 / intr.fy)
    centroid = np.array([xs.mean(dtype=np.float64), ys.mean(dtype=np.float64), zk.mean(dtype=np.float64)])
    # Robust extent: percentiles on at most _EXTENT_SAMPLE evenly strided points (cost bounded).
    step = max(1, n // _EXTENT_SAMPLE)
    sample = np.stack([xs[::step], ys[::step], zk[::step]], axis=1)
    lo_p, hi_p = np.percentile(sample, _EXTENT_PERCENTILES, axis=0).astype(np.float64)
    cloud = None
    if cloud_stride and cloud_stride > 0:
        s = int(cloud_stride)
        sel = ((vv + y0) % s == 0) & ((uu + x0) % s == 0)
        cloud = np.stack([xs[sel], ys[sel], zk[sel]], axis=1).astype(np.float32, copy=False)
    return ObjectGeometry(int(object_id), centroid, lo_p, hi_p, n, n_valid - n, cloud)


@dataclass
class DepthFrame:
    """One received depth image (raw units) with its stamp and message header."""

    stamp_ns: int
    depth: np.ndarray
    scale: float
    header: Any


class DepthPairing:
    """The last few depth frames; ``match(stamp)`` pairs a colour frame with the closest one."""

    def __init__(self, depth: int = 8) -> None:
        self._frames: Deque[DepthFrame] = collections.deque(maxlen=max(int(depth), 1))

    def put(self, frame: DepthFrame) -> None:
        """Add a depth frame (the oldest one goes when full)."""
        self._frames.append(frame)

    def clear(self) -> None:
        """Forget every depth frame."""
        self._frames.clear()

    def __len__(self) -> int:
        return len(self._frames)

    def match(self, stamp_ns: int, tolerance_s: float) -> Tuple[Optional[DepthFrame], Optional[float]]:
        """``(closest depth frame within tolerance or None, |dt| in seconds of the closest or None)``."""
        best, best_dt = None, None
        for f in list(self._frames):
            dt = abs(int(f.stamp_ns) - int(stamp_ns)) * 1e-9
            if best_dt is None or dt < best_dt:
                best, best_dt = f, dt
        if best is None or best_dt is None or best_dt > tolerance_s:
            return None, best_dt
        return best, best_dt

"""Clicked points (``geometry_msgs/PointStamped``, rviz's "Publish Point") -> image pixels (no ROS).

Conventions, by the point's ``header.frame_id``:

* ``""`` (empty): **pixel coordinates**: ``x`` = column, ``y`` = row, in source-image pixels with
  the origin at the top-left corner of the image, as the ``segment`` service's points; ``z`` is
  ignored. For ``ros2 topic pub`` and tools that click on the image itself.
* the camera's optical frame (the colour images' ``header.frame_id``), ``z > 0``: a **3D point**
  (metres, REP 103 optical frame: x right, y down, z forward) projected with the camera_info
  intrinsics: ``u = fx * x / z + cx``, ``v = fy * y / z + cy``. This is what rviz sends when its
  fixed frame is the camera's optical frame and the click lands on a point cloud.
* the camera's optical frame, ``z == 0``: a point on the **image plane of ``~/markers``** (1 px =
  1 mm at z = 0, see ``visualization.py``): ``u = x / 0.001``, ``v = y / 0.001``. This is what rviz
  sends for a click on the markers / the plane z = 0.
* any other frame, ``z < 0``, non-finite values, or a pixel outside the image: refused with a
  reason (there is no TF lookup: set rviz's fixed frame to the camera's optical frame).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

# ``~/markers`` draw the image on the plane z = 0 of its frame at this many metres per pixel.
MARKER_PIXEL_M = 0.001


class ClickError(ValueError):
    """A click that cannot be turned into a pixel (the message says why)."""


def click_to_pixel(x: float, y: float, z: float, frame_id: str, camera_frame: Optional[str],
                   k: Optional[Sequence[float]], size: Optional[Tuple[int, int]]) -> Tuple[float, float]:
    """The pixel ``(u, v)`` a clicked point designates (see the module docstring).

    ``camera_frame`` is the colour images' frame id (None before the first frame), ``k`` the
    row-major 3x3 camera matrix of the latest camera_info (None without one), ``size`` the
    latest frame's ``(width, height)`` (None before the first frame).

    Raises:
        ClickError: the reason the click is refused.
    """
    x, y, z = float(x), float(y), float(z)
    if not (math.isfinite(x) and math.isfinite(y) and math.isfinite(z)):
        raise ClickError(f"clicked point ({x}, {y}, {z}) is not finite")
    frame_id = str(frame_id).lstrip("/")
    if frame_id == "":
        u, v = x, y
    else:
        camera = (camera_frame or "").lstrip("/")
        if not camera:
            raise ClickError(f"clicked point in frame '{frame_id}' but no camera frame received yet")
        if frame_id != camera:
            raise ClickError(
                f"clicked point is in frame '{frame_id}', not the camera's optical frame '{camera}' "
                f"(no TF lookup): set rviz's fixed frame to '{camera}', or publish pixel coordinates "
                f"with an empty frame_id")
        if z < 0.0:
            raise ClickError(f"clicked point ({x:.3f}, {y:.3f}, {z:.3f}) is behind the camera (z < 0)")
        if z == 0.0:
            u, v = x / MARKER_PIXEL_M, y / MARKER_PIXEL_M
        else:
            if k is None or len(k) < 6 or not float(k[0]) > 0.0 or not float(k[4]) > 0.0:
                raise ClickError("a 3D clicked point needs the camera's intrinsics: no valid camera_info "
                                 "received yet (topics.camera_info)")
            fx, cx, fy, cy = float(k[0]), float(k[2]), float(k[4]), float(k[5])
            u, v = fx * x / z + cx, fy * y / z + cy
    if size is not None:
        width, height = int(size[0]), int(size[1])
        if not (0.0 <= u < width and 0.0 <= v < height):
            raise ClickError(f"clicked point maps to pixel ({u:.1f}, {v:.1f}), outside the {width}x{height} "
                             f"image")
    return u, v

"""A built-in synthetic camera: a deterministic moving-object sequence as ``sensor_msgs/Image``.

``ros2 run anima_sam2_ros camera_source`` publishes
``image_raw`` (``sensor_msgs/Image``) and ``camera_info`` (``sensor_msgs/CameraInfo``), both
relative names (use a namespace such as ``camera`` or remap them), stamped with the node's clock
(``use_sim_time`` works) and ``frame_id``.

Parameters (all read at start-up):

==================  ======================  ================================================
``width``           640                     image width in pixels
``height``          480                     image height in pixels
``rate``            15.0                    frames per second
``frame_id``        ``camera_optical_frame``  header frame id (REP 103 optical frame)
``encoding``        ``rgb8``                ``rgb8`` | ``bgr8`` | ``mono8``
``reliable``        false                   RELIABLE QoS instead of sensor-data (best effort)
``depth``           5                       QoS history depth
``frames``          0                       stop (exit 0) after this many frames; 0 = never
``start_index``     0                       index of the first frame of the sequence
``wait_for_subscriber`` false               hold frame 0 until a subscriber is matched
``hfov_deg``        60.0                    horizontal field of view of the pinhole camera_info
``publish_depth``   false                   also publish ``depth/image_raw`` (16UC1 mm, registered)
==================  ======================  ================================================

With ``publish_depth`` the node also publishes a depth image registered to the colour image (same
size, intrinsics, stamp and frame): ``SyntheticScene.depth_mm(i)``, each object a fronto-parallel
surface at its own distance (disc 1.0 m, square 1.5 m, triangle 1.2 m) in front of a background
plane at 2.5 m. ``box_scene()`` renders a box of known size and position (ground truth for the
per-object 3D tests and bench).

The scene (``SyntheticScene``, usable without ROS: ``SyntheticScene(w, h).render(i)``): a
static textured background (smooth colour gradient, a soft checkerboard and fine deterministic
noise) with three objects:

0. a red disc that sways left and right around the image centre. Its sway amplitude is smaller
   than its radius and it is drawn on top, so ``anchor_point()`` (the image centre) lies on it in
   every frame: a point prompt that is valid whatever frame a node sees.
1. a green square that bounces around the frame (it passes behind the disc).
2. a blue triangle that circles around the frame centre and turns.

Everything is a pure function of the frame index (no randomness at render time), so
``render(i)`` is identical across processes and runs.
"""

from __future__ import annotations

import array
import math
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

ENCODINGS = ("rgb8", "bgr8", "mono8")
OBJECT_NAMES = ("disc", "square", "triangle")
_COLOURS_RGB = ((220, 40, 40), (40, 200, 60), (50, 90, 230))


class SyntheticScene:
    """Deterministic moving-object sequence: ``render(i)`` -> (H, W, 3) uint8 RGB.

    ``period`` is the number of frames after which the motion repeats (default 300, 20 s at 15 Hz).
    """

    def __init__(self, width: int = 640, height: int = 480, period: int = 300, seed: int = 7):
        if width < 16 or height < 16:
            raise ValueError(f"image too small: {width}x{height} (at least 16x16)")
        self.width = int(width)
        self.height = int(height)
        self.period = max(int(period), 2)
        self._background = self._make_background(seed)
        s = min(self.width, self.height)
        self.disc_radius = max(4, int(round(0.17 * s)))
        self.sway = 0.6 * self.disc_radius  # < radius: the centre stays on the disc
        self.square_half = max(3, int(round(0.09 * s)))
        self.triangle_size = max(4, int(round(0.12 * s)))

    # -- scene ----------------------------------------------------------------------------------
    def _make_background(self, seed: int) -> np.ndarray:
        h, w = self.height, self.width
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        u, v = xx / max(w - 1, 1), yy / max(h - 1, 1)
        bg = np.empty((h, w, 3), np.float32)
        bg[..., 0] = 90 + 50 * u
        bg[..., 1] = 110 + 40 * v
        bg[..., 2] = 120 + 30 * (1 - u)
        cell = max(8, min(h, w) // 12)
        checker = (((xx // cell) + (yy // cell)) % 2).astype(np.float32)
        bg += (checker * 24.0 - 12.0)[..., None]
        noise = np.random.default_rng(seed).normal(0.0, 6.0, (h, w, 1)).astype(np.float32)
        bg += noise
        return np.clip(bg, 0, 255).astype(np.uint8)

    def anchor_point(self) -> Tuple[float, float]:
        """A pixel (x, y) inside object 0 (the disc) in every frame: the image centre."""
        return (self.width / 2.0, self.height / 2.0)

    def _phase(self, index: int) -> float:
        return 2.0 * math.pi * (int(index) % self.period) / self.period

    def _disc(self, index: int) -> Tuple[float, float]:
        cx, cy = self.anchor_point()
        return cx + self.sway * math.sin(3.0 * self._phase(index)), cy

    def _square(self, index: int) -> Tuple[float, float]:
        w, h, a = self.width, self.height, self.square_half
        # Bounce: a triangle wave over the free range on each axis (7 and 5 bounces per period).
        def tri(t: float, n: int) -> float:
            x = (t * n) % 2.0
            return x if x <= 1.0 else 2.0 - x
        t = (int(index) % self.period) / self.period
        return a + tri(t, 7) * (w - 1 - 2 * a), a + tri(t, 5) * (h - 1 - 2 * a)

    def _triangle(self, index: int) -> Tuple[np.ndarray, Tuple[float, float]]:
        ph = self._phase(index)
        cx0, cy0 = self.anchor_point()
        rx, ry = 0.34 * self.width, 0.30 * self.height
        cx, cy = cx0 + rx * math.cos(2 * ph), cy0 + ry * math.sin(2 * ph)
        rot = 4 * ph
        s = self.triangle_size
        pts = np.array([[cx + s * math.cos(rot + k * 2 * math.pi / 3),
                         cy + s * math.sin(rot + k * 2 * math.pi / 3)] for k in range(3)])
        return pts, (cx, cy)

    def _draw(self, index: int, img: np.ndarray, only: Optional[int] = None, value=None) -> None:
        """Draw objects back to front (square, triangle, disc); ``only`` one of them."""
        shift = 4  # sub-pixel precision for smooth motion
        k = 1 << shift

        def col(obj: int):
            return value if value is not None else _COLOURS_RGB[obj]

        if only in (None, 1):
            sx, sy = self._square(index)
            a = self.square_half
            p0 = (int(round((sx - a) * k)), int(round((sy - a) * k)))
            p1 = (int(round((sx + a) * k)), int(round((sy + a) * k)))
            cv2.rectangle(img, p0, p1, col(1), -1, cv2.LINE_AA, shift)
        if only in (None, 2):
            pts, _ = self._triangle(index)
            cv2.fillPoly(img, [np.round(pts * k).astype(np.int32)], col(2), cv2.LINE_AA, shift)
        if only in (None, 0):
            dx, dy = self._disc(index)
            cv2.circle(img, (int(round(dx * k)), int(round(dy * k))), int(self.disc_radius * k), col(0),
                       -1, cv2.LINE_AA, shift)
            if value is None:  # a highlight so the disc is not flat
                hx = int(round((dx - 0.35 * self.disc_radius) * k))
                hy = int(round((dy - 0.35 * self.disc_radius) * k))
                cv2.circle(img, (hx, hy), int(0.25 * self.disc_radius * k), (250, 150, 140), -1,
                           cv2.LINE_AA, shift)

    def render(self, index: int) -> np.ndarray:
        """Frame ``index`` as a new (H, W, 3) uint8 RGB array."""
        img = self._background.copy()
        self._draw(index, img)
        return img

    def masks(self, index: int) -> List[np.ndarray]:
        """Visible ground-truth masks (bool (H, W)) of the objects on frame ``index``, in object order.

        Occlusion is applied (the disc covers the others).
        """
        labels = np.zeros((self.height, self.width), np.uint8)
        for obj in (1, 2, 0):  # back to front
            layer = np.zeros_like(labels)
            self._draw(index, layer, only=obj, value=255)
            labels[layer >= 128] = obj + 1
        return [labels == obj + 1 for obj in range(len(OBJECT_NAMES))]

    #: Distances (m) of the depth image: disc, square, triangle, background.
    DEPTHS_M = (1.0, 1.5, 1.2)
    BACKGROUND_M = 2.5

    def depth_mm(self, index: int) -> np.ndarray:
        """Registered depth of frame ``index``: (H, W) uint16 millimetres (16UC1), same occlusion."""
        depth = np.full((self.height, self.width), int(self.BACKGROUND_M * 1000), np.uint16)
        for obj, mask in enumerate(self.masks(index)):
            depth[mask] = int(self.DEPTHS_M[obj] * 1000)
        return depth

    def centers(self, index: int) -> Dict[str, Tuple[float, float]]:
        """Object centres (x, y) in pixels on frame ``index``."""
        return {"disc": self._disc(index), "square": self._square(index),
                "triangle": self._triangle(index)[1]}


def intrinsics(width: int, height: int, hfov_deg: float = 60.0) -> Tuple[float, float, float]:
    """``(f, cx, cy)`` of the synthetic pinhole camera (square pixels, centred principal point)."""
    f = (width / 2.0) / math.tan(math.radians(hfov_deg) / 2.0)
    return f, width / 2.0, height / 2.0


def box_scene(width: int = 640, height: int = 480, hfov_deg: float = 60.0,
              center: Tuple[float, float, float] = (0.02, -0.01, 1.0),
              size: Tuple[float, float, float] = (0.30, 0.20, 0.15),
              background_m: float = 2.0) -> Tuple[np.ndarray, np.ndarray, Dict[str, np.ndarray]]:
    """A box in front of a wall, as a registered depth image with ground truth.

    The box is axis-aligned in the optical frame with its ``center`` and ``size`` (metres) and
    straddles the optical axis, so only its front face (at ``z = center.z - size.z / 2``) is
    visible. Returns ``(depth_m float32 (H, W), box_mask bool (H, W), truth)`` where ``truth`` has
    ``centroid`` (the front face's centre) and ``extent`` (``size.x, size.y, 0``) of the visible
    surface, and ``k`` (row-major 3x3 camera matrix).
    """
    cx_b, cy_b, cz_b = center
    sx, sy, sz = size
    if abs(cx_b) >= sx / 2 or abs(cy_b) >= sy / 2:
        raise ValueError("the box must straddle the optical axis (only its front face visible)")
    f, cx, cy = intrinsics(width, height, hfov_deg)
    z0 = cz_b - sz / 2.0
    u = np.arange(width, dtype=np.float64)
    v = np.arange(height, dtype=np.float64)
    x = (u - cx) * z0 / f
    y = (v - cy) * z0 / f
    in_x = (x >= cx_b - sx / 2) & (x <= cx_b + sx / 2)
    in_y = (y >= cy_b - sy / 2) & (y <= cy_b + sy / 2)
    mask = in_y[:, None] & in_x[None, :]
    depth = np.full((height, width), background_m, np.float32)
    depth[mask] = z0
    truth = {"centroid": np.array([cx_b, cy_b, z0]), "extent": np.array([sx, sy, 0.0]),
             "k": np.array([f, 0.0, cx, 0.0, f, cy, 0.0, 0.0, 1.0])}
    return depth, mask, truth


def convert(image_rgb: np.ndarray, encoding: str) -> np.ndarray:
    """RGB frame -> the array for ``encoding`` (rgb8, bgr8 or mono8)."""
    if encoding == "rgb8":
        return image_rgb
    if encoding == "bgr8":
        return cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR)
    if encoding == "mono8":
        return cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY)
    raise ValueError(f"unsupported encoding {encoding!r}: use one of {', '.join(ENCODINGS)}")


def image_msg(frame: np.ndarray, encoding: str, header):
    """``sensor_msgs/Image`` for a uint8 frame already in ``encoding``."""
    from sensor_msgs.msg import Image

    msg = Image()
    msg.header = header
    msg.height, msg.width = int(frame.shape[0]), int(frame.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    channels = 1 if frame.ndim == 2 else int(frame.shape[2])
    msg.step = msg.width * channels
    # array.array is fast to assign with field checks on (bytes is ~100x slower there).
    msg.data = array.array("B", np.ascontiguousarray(frame).tobytes())
    return msg


def depth_msg(depth_mm: np.ndarray, header):
    """``sensor_msgs/Image`` 16UC1 (millimetres, little-endian) for a uint16 depth array."""
    from sensor_msgs.msg import Image

    msg = Image()
    msg.header = header
    msg.height, msg.width = int(depth_mm.shape[0]), int(depth_mm.shape[1])
    msg.encoding = "16UC1"
    msg.is_bigendian = 0
    msg.step = msg.width * 2
    msg.data = array.array("B", np.ascontiguousarray(depth_mm, dtype="<u2").tobytes())
    return msg


def camera_info_msg(width: int, height: int, hfov_deg: float, header):
    """Pinhole ``sensor_msgs/CameraInfo`` without distortion for the synthetic camera."""
    from sensor_msgs.msg import CameraInfo

    f = (width / 2.0) / math.tan(math.radians(hfov_deg) / 2.0)
    cx, cy = width / 2.0, height / 2.0
    info = CameraInfo()
    info.header = header
    info.width, info.height = int(width), int(height)
    info.distortion_model = "plumb_bob"
    info.d = [0.0] * 5
    info.k = [f, 0.0, cx, 0.0, f, cy, 0.0, 0.0, 1.0]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.p = [f, 0.0, cx, 0.0, 0.0, f, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    return info


def _make_node_class():
    """The rclpy node class (defined lazily so this module imports without rclpy)."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
    from rclpy.node import Node
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image

    class CameraSource(Node):
        """Publishes ``SyntheticScene`` frames and a matching ``camera_info`` at a fixed rate."""

        def __init__(self, node_name: str = "camera_source", **kwargs):
            super().__init__(node_name, **kwargs)

            def desc(text, **extra):
                return ParameterDescriptor(description=text, read_only=True, **extra)

            def irange(lo, hi):
                return [IntegerRange(from_value=lo, to_value=hi, step=1)]

            p = self.declare_parameter
            self.width = p("width", 640, desc("image width [px]", integer_range=irange(16, 8192))).value
            self.height = p("height", 480, desc("image height [px]", integer_range=irange(16, 8192))).value
            self.rate = p("rate", 15.0, desc("frames per second", floating_point_range=[
                FloatingPointRange(from_value=0.1, to_value=1000.0, step=0.0)])).value
            self.frame_id = p("frame_id", "camera_optical_frame", desc("header frame_id")).value
            self.encoding = p("encoding", "rgb8", desc("rgb8 | bgr8 | mono8")).value
            reliable = p("reliable", False, desc("RELIABLE QoS instead of sensor-data best effort")).value
            depth = p("depth", 5, desc("QoS history depth", integer_range=irange(1, 1000))).value
            self.frames = p("frames", 0, desc("stop after this many frames (0 = never)",
                                              integer_range=irange(0, 2**31 - 1))).value
            self.index = p("start_index", 0, desc("first frame index",
                                                  integer_range=irange(0, 2**31 - 1))).value
            self.wait_for_subscriber = p("wait_for_subscriber", False,
                                         desc("hold frame 0 until an image subscriber is matched")).value
            self.hfov = p("hfov_deg", 60.0, desc("horizontal field of view for camera_info [deg]",
                                                 floating_point_range=[FloatingPointRange(
                                                     from_value=1.0, to_value=179.0, step=0.0)])).value
            self.publish_depth = p("publish_depth", False, desc(
                "also publish depth/image_raw (16UC1 mm, registered to the colour image)")).value
            if self.encoding not in ENCODINGS:
                raise ValueError(f"parameter encoding={self.encoding!r}: use one of {', '.join(ENCODINGS)}")
            reliability = ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT
            qos = QoSProfile(depth=int(depth), history=HistoryPolicy.KEEP_LAST,
                             durability=DurabilityPolicy.VOLATILE, reliability=reliability)
            self.scene = SyntheticScene(self.width, self.height)
            self.image_pub = self.create_publisher(Image, "image_raw", qos)
            self.info_pub = self.create_publisher(CameraInfo, "camera_info", qos)
            self.depth_pub = (self.create_publisher(Image, "depth/image_raw", qos) if self.publish_depth
                              else None)
            self.published = 0
            self.done = False
            self.timer = self.create_timer(1.0 / float(self.rate), self._tick)
            self.get_logger().info(
                f"publishing {self.width}x{self.height} {self.encoding} at {self.rate:g} Hz on "
                f"{self.image_pub.topic_name} and {self.info_pub.topic_name} "
                f"({'reliable' if reliable else 'best effort'}, frame_id {self.frame_id}"
                f"{f', {self.frames} frames' if self.frames else ''})")

        def _tick(self) -> None:
            if self.done:
                return
            if (self.wait_for_subscriber and self.published == 0
                    and self.image_pub.get_subscription_count() == 0):
                return
            header = self._header()
            frame = convert(self.scene.render(self.index), self.encoding)
            self.image_pub.publish(image_msg(frame, self.encoding, header))
            self.info_pub.publish(camera_info_msg(self.width, self.height, self.hfov, header))
            if self.depth_pub is not None:
                self.depth_pub.publish(depth_msg(self.scene.depth_mm(self.index), header))
            self.index += 1
            self.published += 1
            if self.frames and self.published >= self.frames:
                self.done = True
                self.get_logger().info(f"published {self.published} frames; stopping")

        def _header(self):
            from std_msgs.msg import Header

            return Header(stamp=self.get_clock().now().to_msg(), frame_id=self.frame_id)

    return CameraSource


def spin_once_until_shutdown(context_ok: Any, executor: Any, timeout: float) -> None:
    """``spin_once``; an error raised because Ctrl-C shut the context down mid-publish is the shutdown.

    The SIGINT handler shuts the context down while the frame timer may be publishing: rclpy then
    raises ``RCLError: publisher's context is invalid`` from the callback (seen in CI, Jazzy).
    """
    try:
        executor.spin_once(timeout_sec=timeout)
    except (KeyboardInterrupt, ValueError):
        raise
    except Exception:  # noqa: BLE001 - RCLError is not importable portably
        if context_ok():
            raise


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the camera node until Ctrl-C, shutdown, or ``frames`` frames are published."""
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    rclpy.init(args=list(argv) if argv is not None else sys.argv)
    node = None
    executor = SingleThreadedExecutor()
    try:
        node = _make_node_class()()
        executor.add_node(node)
        while rclpy.ok() and not node.done:
            spin_once_until_shutdown(rclpy.ok, executor, 0.1)
        if node.done:
            # Let reliable subscribers pick up the last frame before the publisher goes away.
            for _ in range(5):
                spin_once_until_shutdown(rclpy.ok, executor, 0.05)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except ValueError as exc:  # bad parameter values
        print(f"camera_source: {exc}", file=sys.stderr)
        return 2
    finally:
        from .shutdown import ignore_further_sigint

        ignore_further_sigint()
        executor.shutdown(timeout_sec=2.0)
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())

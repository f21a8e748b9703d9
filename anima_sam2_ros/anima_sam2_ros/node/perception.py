"""The node's perception-pipeline side (issue 16): detector / click prompts in, vision_msgs and 3D out.

``Perception`` is created by ``sam2_node`` at configure time next to the worker and owns:

* inputs (subscribed on activate, in their own mutually exclusive callback group; every callback
  only converts and queues, never runs the model): ``topics.detections``
  (``vision_msgs/Detection2DArray`` -> ``DetectionPrompter``, the worker's ``pipeline``),
  ``topics.clicked_point`` (``geometry_msgs/PointStamped`` -> pixel, ``click_input``) and
  ``topics.depth`` (registered depth image -> a bounded ring, ``depth3d.DepthPairing``); the
  node's camera_info callback hands it the intrinsics.
* outputs (published from the worker thread after every segment answer and tracked frame, only
  when subscribed): ``~/detections`` (``Detection2DArray``), ``~/detections_3d``
  (``Detection3DArray``, depth frame) and ``~/object_points`` (``PointCloud2``).

Bad input (NaN boxes, wrong depth encoding or size, clicks in another frame...) is dropped with a
throttled warning that says why; missing depth or camera_info only means no 3D output.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Dict, List, Optional

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from . import conversions
from .click_input import ClickError, click_to_pixel
from .depth3d import DepthFrame, DepthPairing, Intrinsics, object_geometry
from .detections_input import DetectionPrompter, DetectionsConfig
from .safety import RefusalLog

# Depth images kept for pairing with colour frames by stamp.
DEPTH_QUEUE = 8
# While a depth stream is live (an image within the last DEPTH_LIVE s), a colour frame newer than
# the newest depth image waits at most DEPTH_WAIT s for its depth (DDS delivers topics in any order).
DEPTH_WAIT = 0.15
DEPTH_LIVE = 1.0
# Best effort matches reliable and best-effort publishers (yolo_ros, rviz's Publish Point).
_INPUT_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT,
                        history=HistoryPolicy.KEEP_LAST, durability=DurabilityPolicy.VOLATILE)
_WARN_PERIOD = 5.0


def input_topics(p: Any, camera: str, first: bool) -> Dict[str, str]:
    """A stream's perception inputs: the ``topics.*`` names, below ``camera`` with ``cameras``.

    With the ``cameras`` parameter a relative name (``depth``) is each camera's own
    (``front/depth``), an absolute one (``/clicked_point``) is the first camera's only.
    """
    out = {}
    for key in ("detections", "clicked_point", "depth"):
        topic = str(getattr(p, f"topics_{key}") or "")
        if topic and camera:
            topic = (topic if first else "") if topic.startswith("/") else f"{camera}/{topic}"
        out[key] = topic
    out["camera_info"] = f"{camera}/camera_info" if camera else p.topics_camera_info
    return out


class Perception:
    """Detections / clicks / depth in, ``~/detections``, ``~/detections_3d``, ``~/object_points`` out."""

    def __init__(self, node: Any, p: Any, worker: Any, output_qos: Any, camera: str = "",
                 first: bool = True) -> None:
        """``camera``: the stream's name with the ``cameras`` parameter ('' = the one camera)."""
        self._node = node
        self._p = p
        self._worker = worker
        self._log = node.get_logger()
        self.topics = input_topics(p, camera, first)
        # Throttled per kind of reason: a new reason (wrong size after wrong encoding) still shows.
        self._depth_refusals = RefusalLog(self._log, f"depth images on '{self.topics['depth']}' dropped",
                                          _WARN_PERIOD)
        self._cb = MutuallyExclusiveCallbackGroup()
        self._lock = threading.Lock()
        self._info: Optional[Any] = None  # (K, width, height, frame_id) of the latest camera_info
        self._depth = DepthPairing(DEPTH_QUEUE)
        self._depth_cond = threading.Condition()
        self._depth_latest = (0, 0.0)  # (stamp ns, monotonic arrival) of the newest depth image
        self._subs: List[Any] = []
        self._pubs: Dict[str, Any] = {}
        self.last_3d_ms = 0.0
        self.counters = {"detection_arrays": 0, "detections_rejected": 0, "clicks": 0, "clicks_rejected": 0,
                         "depth_frames": 0, "depth_rejected": 0, "frames_3d": 0, "frames_without_depth": 0}
        try:
            from vision_msgs.msg import Detection2DArray, Detection3DArray
        except ImportError as exc:
            Detection2DArray = Detection3DArray = None  # noqa: N806
            self._log.warning(f"vision_msgs is not installed ({exc}): no ~/detections, ~/detections_3d or "
                              f"detections input (install ros-<distro>-vision-msgs)")
        from sensor_msgs.msg import PointCloud2

        make = node.create_lifecycle_publisher
        prefix = f"~/{camera}/" if camera else "~/"
        if Detection2DArray is not None:
            self._pubs["detections"] = make(Detection2DArray, prefix + "detections", output_qos)
            self._pubs["detections_3d"] = make(Detection3DArray, prefix + "detections_3d", output_qos)
        self._pubs["object_points"] = make(PointCloud2, prefix + "object_points", output_qos)
        self.prompter: Optional[DetectionPrompter] = None
        if (self.topics["detections"] and Detection2DArray is not None) or self.topics["clicked_point"]:
            cfg = DetectionsConfig(iou_threshold=p.detections_iou_threshold,
                                   reprompt_interval=p.detections_reprompt_interval,
                                   min_score=p.detections_min_score, forget_after=p.detections_forget_after,
                                   max_wait=p.detections_max_wait, max_objects=p.max_objects)
            self.prompter = DetectionPrompter(cfg, wake=worker.notify, other_objects=worker.tracked_objects,
                                              log=self._log.info)
            worker.pipeline = self.prompter

    # ------------------------------------------------------------------ lifecycle
    def activate(self, camera_qos: Any) -> List[str]:
        """Subscribe to the enabled inputs; returns their topic names."""
        topics, guard = self.topics, self._node._guard
        from geometry_msgs.msg import PointStamped
        from sensor_msgs.msg import Image

        wanted = []
        if topics["detections"] and "detections" in self._pubs:
            from vision_msgs.msg import Detection2DArray

            wanted.append((topics["detections"], Detection2DArray, self._on_detections, _INPUT_QOS))
        if topics["clicked_point"]:
            wanted.append((topics["clicked_point"], PointStamped, self._on_click, _INPUT_QOS))
        if topics["depth"]:
            wanted.append((topics["depth"], Image, self._on_depth, camera_qos))
        for topic, msg_type, callback, qos in wanted:
            self._subs.append(self._node.create_subscription(
                msg_type, topic, guard(f"perception callback ({topic})", callback), qos,
                callback_group=self._cb))
        return [s.topic_name for s in self._subs]

    def deactivate(self) -> None:
        """Drop the subscriptions and queued input."""
        for sub in self._subs:
            self._node.destroy_subscription(sub)
        self._subs = []
        if self.prompter is not None:
            self.prompter.clear_pending()
        self._depth.clear()

    def destroy(self) -> None:
        """Undo the constructor (publishers, the worker's pipeline)."""
        self.deactivate()
        if self._worker is not None and self._worker.pipeline is self.prompter:
            self._worker.pipeline = None
        destroy_pub = getattr(self._node, "destroy_lifecycle_publisher", self._node.destroy_publisher)
        for pub in self._pubs.values():
            destroy_pub(pub)
        self._pubs = {}

    # ------------------------------------------------------------------ inputs (executor threads)
    def _active(self) -> bool:
        return bool(getattr(self._node, "_active", False))

    def on_camera_info(self, msg: Any) -> None:
        """Keep the latest intrinsics (clicks in 3D, depth back-projection)."""
        with self._lock:
            self._info = (tuple(float(v) for v in msg.k), int(msg.width), int(msg.height),
                          str(msg.header.frame_id))

    def _on_detections(self, msg: Any) -> None:
        if not self._active() or self.prompter is None:
            return
        self.counters["detection_arrays"] += 1
        n = len(msg.detections)
        if n == 0:
            return  # the detector saw nothing: nothing to prompt; tracking goes on
        boxes, rejected = conversions.boxes_from_detection2d_array(msg)
        if rejected:
            self.counters["detections_rejected"] += len(rejected)
            self._log.warning(f"detections on '{self.topics['detections']}': {len(rejected)} of {n} "
                              f"rejected ({'; '.join(rejected[:3])})", throttle_duration_sec=_WARN_PERIOD)
        if boxes:
            self.prompter.submit_detections(conversions.stamp_ns(msg.header.stamp), boxes)

    def _on_click(self, msg: Any) -> None:
        if not self._active() or self.prompter is None:
            return
        frame = self._worker.slot.latest()
        with self._lock:
            info = self._info
        camera_frame = str(frame.header.frame_id) if frame is not None else (info[3] if info else None)
        size = (int(frame.image.shape[1]), int(frame.image.shape[0])) if frame is not None else None
        p = msg.point
        try:
            u, v = click_to_pixel(p.x, p.y, p.z, msg.header.frame_id, camera_frame,
                                  info[0] if info else None, size)
        except ClickError as exc:
            self.counters["clicks_rejected"] += 1
            self._log.warning(f"clicked point ignored: {exc}", throttle_duration_sec=1.0)
            return
        self.counters["clicks"] += 1
        self._log.info(f"clicked point ({p.x:.3f}, {p.y:.3f}, {p.z:.3f}) in frame '{msg.header.frame_id}' "
                       f"-> pixel ({u:.1f}, {v:.1f})")
        self.prompter.submit_click(u, v)

    def _on_depth(self, msg: Any) -> None:
        if not self._active():
            return
        try:
            depth, scale = conversions.depth_from_msg(msg, self._p.max_image_side)
        except conversions.ConversionError as exc:
            self.counters["depth_rejected"] += 1
            self._depth_refusals.refused(str(exc))
            return
        self.counters["depth_frames"] += 1
        stamp = conversions.stamp_ns(msg.header.stamp)
        self._depth.put(DepthFrame(stamp, depth, scale, conversions.header_copy(msg.header)))
        with self._depth_cond:
            self._depth_latest = (max(stamp, self._depth_latest[0]), time.monotonic())
            self._depth_cond.notify_all()

    def _wait_for_depth(self, stamp: int) -> None:
        """Wait (bounded) for a live depth stream to deliver the image of a newer colour frame."""
        deadline = time.monotonic() + DEPTH_WAIT
        with self._depth_cond:
            while True:
                newest, arrived = self._depth_latest
                now = time.monotonic()
                if newest >= stamp or now - arrived > DEPTH_LIVE or now >= deadline:
                    return
                self._depth_cond.wait(deadline - now)

    # ------------------------------------------------------------------ outputs (worker thread)
    def _wanted(self, key: str, enabled: bool) -> Any:
        pub = self._pubs.get(key)
        return pub if enabled and pub is not None and pub.get_subscription_count() > 0 else None

    def class_of(self, object_id: int) -> str:
        """The detector class of an object ('' if none)."""
        return self.prompter.class_of(object_id) if self.prompter is not None else ""

    def publish(self, frame: Any, results: List[Any], source: str) -> None:
        """Publish ``~/detections`` and the 3D outputs for one inference's results."""
        p = self._p
        header = conversions.header_copy(frame.header)
        pub = self._wanted("detections", p.output_detections)
        if pub is not None:
            pub.publish(conversions.detection2d_array_msg(results, header, self.class_of))
        if not self.topics["depth"]:
            return
        pub3d = self._wanted("detections_3d", p.output_detections_3d)
        cloud_pub = self._wanted("object_points", p.output_object_points)
        if pub3d is None and cloud_pub is None:
            return
        self.publish_3d(frame, results, pub3d, cloud_pub)

    def publish_3d(self, frame: Any, results: List[Any], pub3d: Any, cloud_pub: Any) -> None:
        """Pair ``frame`` with a depth image and publish the objects' 3D (nothing without depth)."""
        import numpy as np

        p, warn = self._p, self._log.warning
        stamp = conversions.stamp_ns(frame.header.stamp)
        self._wait_for_depth(stamp)
        depth, dt = self._depth.match(stamp, p.depth_tolerance)
        if depth is None:
            self.counters["frames_without_depth"] += 1
            if dt is not None:
                self._log.info(f"no depth image within depth.tolerance {p.depth_tolerance:g} s of the colour "
                               f"frame (closest {dt:.3f} s): 2D outputs only", throttle_duration_sec=10.0)
            return
        h, w = frame.image.shape[:2]
        if depth.depth.shape[:2] != (h, w):
            warn(f"depth image {depth.depth.shape[1]}x{depth.depth.shape[0]} does not match the colour image "
                 f"{w}x{h}: no 3D output (topics.depth must be registered to the colour camera, e.g. "
                 f"aligned_depth_to_color)", throttle_duration_sec=_WARN_PERIOD)
            return
        with self._lock:
            info = self._info
        if info is None:
            warn(f"no camera_info on '{self.topics['camera_info']}' yet: no 3D output",
                 throttle_duration_sec=_WARN_PERIOD)
            return
        k, iw, ih, _ = info
        if (iw, ih) != (w, h):
            warn(f"camera_info is {iw}x{ih} but the images are {w}x{h}: no 3D output",
                 throttle_duration_sec=_WARN_PERIOD)
            return
        try:
            intr = Intrinsics.from_k(k, iw, ih)
        except ValueError as exc:
            warn(f"camera_info unusable: {exc}: no 3D output", throttle_duration_sec=_WARN_PERIOD)
            return
        t0 = time.monotonic()
        stride = int(p.depth_cloud_decimation) if (cloud_pub is not None or p.output_detection_clouds) else 0
        geometries, scores = [], {}
        for r in results:
            if not r.visible or int(r.area) <= 0:
                continue
            g = object_geometry(int(r.object_id), depth.depth, depth.scale, np.asarray(r.mask), intr,
                                edge_threshold=p.depth_edge_threshold,
                                max_range=p.depth_max_range, cloud_stride=stride)
            if g is not None:
                geometries.append(g)
                scores[int(r.object_id)] = float(r.score)
        header = depth.header
        if pub3d is not None:
            pub3d.publish(conversions.detection3d_array_msg(geometries, header, self.class_of, scores,
                                                            with_cloud=bool(p.output_detection_clouds)))
        if cloud_pub is not None:
            clouds = [g.points for g in geometries if g.points is not None and len(g.points)]
            ids = [np.full(len(g.points), g.object_id, np.uint32) for g in geometries
                   if g.points is not None and len(g.points)]
            pts = np.concatenate(clouds) if clouds else np.zeros((0, 3), np.float32)
            oid = np.concatenate(ids) if ids else np.zeros(0, np.uint32)
            cloud_pub.publish(conversions.pointcloud2_msg(pts, header, oid))
        self.counters["frames_3d"] += 1
        self.last_3d_ms = (time.monotonic() - t0) * 1000.0

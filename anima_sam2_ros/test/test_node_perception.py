"""Issue 16 across processes over DDS: detector prompts, clicks, ~/detections, per-object 3D.

Two sam2_node child processes (test-micro, dummy weights); this test process is the camera, the
detector, rviz's Publish Point and the depth camera. Dummy weights make masks meaningless, so:

* the detections node uses seed 1, whose network never sees an object (presence logit < 0): every
  object is reported ``lost`` after ``lost_after`` frames, deterministically. That exercises the
  tracker's lost logic against the detector's support (re-prompt under the same id; forgotten
  once lost and unsupported for ``forget_after`` frames).
* the depth node uses seed 0 and a *mask* prompt: on its first frame the tracker outputs the
  prompt mask itself (SAM 2's mask-as-output), so that frame's 3D must match the synthetic
  scene's known box (centroid within 1 cm, extent within 2 cm) although the mask spills over the
  box edge onto the wall behind it.
"""

from __future__ import annotations

import array
import math
import threading
import time

import numpy as np
import pytest

from ros_helpers import require_workspace, wait_for

pytestmark = pytest.mark.ros

W, H = 160, 120


def _stamp_key(stamp):
    return (int(stamp.sec), int(stamp.nanosec))


class Feeder:
    """Publishes camera frames (unique stamps), camera_info and optional depth from a thread.

    Every fixture's client publishes on the same ``/image``, and pytest keeps the module's first
    fixture (and its feeder) alive while the second one's tests run: a feeder that starts stops
    every other, or a node would track the other feeder's frames (with stamps that no depth
    image of its own matches: the cause of "no depth image within depth.tolerance ... closest
    13.7 s" in full runs).
    """

    _running: list[Feeder] = []

    def __init__(self, client, rate: float = 6.0) -> None:
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image

        self.client = client
        self.rate = rate
        self.depth_pub = client.node.create_publisher(
            Image, "/depth", QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT))
        self.depth = None  # callable(i) -> Image or None
        self.stamps = []
        self._stop = threading.Event()
        self._thread = None
        self.k = [100.0, 0.0, 80.0, 0.0, 100.0, 60.0, 0.0, 0.0, 1.0]
        self.listeners = []  # callables(stamp) run after each frame (the detector)

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return  # one publishing thread: two would interleave two stamp sequences
        for other in list(Feeder._running):
            other.stop()
        Feeder._running.append(self)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self in Feeder._running:
            Feeder._running.remove(self)

    def _run(self) -> None:
        from sam2_client import camera_image
        from sensor_msgs.msg import CameraInfo

        i = len(self.stamps)
        while not self._stop.is_set():
            img = camera_image(W, H, i % 30)
            img.header.stamp.sec, img.header.stamp.nanosec = 5000 + i // 10, (i % 10) * 100_000_000
            info = CameraInfo(header=img.header, width=W, height=H, k=self.k, distortion_model="plumb_bob",
                              d=[0.0] * 5)
            self.client.camera_info.publish(info)
            if self.depth is not None:
                d = self.depth(i)
                if d is not None:
                    d.header = img.header
                    self.depth_pub.publish(d)
            self.client.camera.publish(img)
            self.stamps.append(img.header.stamp)
            for fn in list(self.listeners):
                fn(img.header.stamp)
            i += 1
            self._stop.wait(1.0 / self.rate)


def _record(client, key, msg_type, topic):
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    client.received[key] = []
    client.node.create_subscription(msg_type, topic, client._recorder(key),
                                    QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))


def _stamps(client, key):
    return {_stamp_key(m.header.stamp) for m in client.messages(key)}


def _events(client):
    """{(object_id, event)} seen on ~/masks, and the ids of the latest message."""
    msgs = client.messages("masks")
    seen = [(o.object_id, o.event, _stamp_key(m.header.stamp)) for m in msgs for o in m.objects]
    return seen, ([o.object_id for o in msgs[-1].objects] if msgs else [])


def _detection_array(stamp, boxes):
    from vision_msgs.msg import Detection2D, Detection2DArray, ObjectHypothesisWithPose

    msg = Detection2DArray()
    msg.header.stamp = stamp
    msg.header.frame_id = "test_camera"
    for x0, y0, x1, y1, cls in boxes:
        d = Detection2D()
        d.bbox.center.position.x, d.bbox.center.position.y = (x0 + x1) / 2, (y0 + y1) / 2
        d.bbox.size_x, d.bbox.size_y = float(x1 - x0), float(y1 - y0)
        h = ObjectHypothesisWithPose()
        h.hypothesis.class_id, h.hypothesis.score = cls, 0.9
        d.results = [h]
        msg.detections.append(d)
    return msg


# ============================================================================ detections + clicks
@pytest.fixture(scope="module")
def det_env(tmp_path_factory):
    require_workspace()
    from geometry_msgs.msg import PointStamped
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sam2_client import running_node
    from vision_msgs.msg import Detection2DArray

    overrides = {"seed": 1, "lost_after": 2, "max_objects": 6, "topics.detections": "/detections",
                 "topics.clicked_point": "/clicked_point", "detections.reprompt_interval": 1.0,
                 "detections.forget_after": 12, "detections.iou_threshold": 0.3}
    with running_node(tmp_path_factory.mktemp("perception_det"), "sam2_det_test", overrides=overrides,
                      log_tail=5000) as (client, node):
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        client.det_pub = client.node.create_publisher(Detection2DArray, "/detections", qos)
        client.click_pub = client.node.create_publisher(PointStamped, "/clicked_point", qos)
        _record(client, "detections", Detection2DArray, "/sam2_det_test/detections")
        feeder = Feeder(client, rate=5.0)
        feeder.start()
        try:
            yield client, node, feeder
        finally:
            feeder.stop()


def test_detector_boxes_become_objects_reprompt_rate_limited_lost_and_forgotten(det_env):
    client, node, feeder = det_env
    assert wait_for(lambda: len(feeder.stamps) >= 2, 10.0)
    cup, bottle = (20, 30, 60, 70, "cup"), (100, 40, 140, 90, "bottle")
    sent = {}

    def detect_once(stamp):
        if not sent:
            sent["stamp"] = _stamp_key(stamp)
            client.det_pub.publish(_detection_array(stamp, [cup, bottle]))
    feeder.listeners.append(detect_once)
    # New boxes -> new objects 1000, 1001 ("added") on exactly the frame the array is stamped with.
    assert wait_for(lambda: {(1000, "added"), (1001, "added")} <= {(i, e) for i, e, _ in _events(client)[0]},
                    60.0), _events(client)[0][-6:]
    feeder.listeners.remove(detect_once)
    added = [s for i, e, s in _events(client)[0] if e == "added"]
    assert added == [sent["stamp"], sent["stamp"]]
    # Seed 1 never sees an object: the tracker reports both lost after lost_after (2) frames.
    assert wait_for(lambda: {(1000, "lost"), (1001, "lost")} <= {(i, e) for i, e, _ in _events(client)[0]},
                    60.0)
    # The detector keeps seeing the cup (shifted 3 px) on every frame for ~2.4 s: the lost object is
    # re-prompted under the same id, at most once per reprompt_interval (1 s), no new object.
    arrays = []

    def detect_cup(stamp):
        arrays.append(stamp)
        client.det_pub.publish(_detection_array(stamp, [(23, 30, 63, 70, "cup")]))
    feeder.listeners.append(detect_cup)
    assert wait_for(lambda: len(arrays) >= 12, 30.0)
    feeder.listeners.remove(detect_cup)
    assert wait_for(lambda: any(i == 1000 and e == "reprompted" for i, e, _ in _events(client)[0]), 30.0)
    time.sleep(1.0)
    seen, _ = _events(client)
    reprompts = [s for i, e, s in seen if i == 1000 and e == "reprompted"]
    assert 1 <= len(reprompts) <= 4 < len(arrays), (len(reprompts), len(arrays))
    assert {i for i, _, _ in seen} == {1000, 1001}  # ids stable: no new object for the cup
    # The bottle, lost and unsupported for forget_after (12) frames, is dropped; the cup is kept
    # while supported. A bottle box now is a new object with a new id (ids are never reused).
    assert wait_for(lambda: 1001 not in _events(client)[1] and _events(client)[1], 60.0), _events(client)[1]

    def detect_bottle(stamp):
        feeder.listeners.remove(detect_bottle)
        client.det_pub.publish(_detection_array(stamp, [bottle]))
    feeder.listeners.append(detect_bottle)
    assert wait_for(lambda: (1002, "added") in {(i, e) for i, e, _ in _events(client)[0]}, 60.0)


def test_bad_detection_arrays_are_refused_with_warnings(det_env):
    client, node, feeder = det_env
    from vision_msgs.msg import Detection2DArray

    before = {i for i, _, _ in _events(client)[0]}
    stamp = feeder.stamps[-1]
    client.det_pub.publish(Detection2DArray())  # empty: nothing to prompt
    bad = _detection_array(stamp, [(10, 10, 50, 50, "cup"), (30, 30, 60, 60, "cup")])
    bad.detections[0].bbox.center.position.x = math.nan
    bad.detections[1].bbox.size_x = 0.0
    client.det_pub.publish(bad)
    outside = _detection_array(stamp, [(500, 500, 600, 560, "cup")])
    client.det_pub.publish(outside)
    assert wait_for(lambda: "2 of 2 rejected" in node.log(), 20.0), node.log()[-3000:]
    log = node.log()
    assert "NaN" in log and "not positive" in log
    assert wait_for(lambda: "outside the 160x120 frame" in node.log(), 20.0)
    n = len(client.messages("masks"))
    assert wait_for(lambda: len(client.messages("masks")) >= n + 3, 30.0)  # still tracking
    assert {i for i, _, _ in _events(client)[0]} == before  # no object from bad boxes
    from sam2_client import point_prompt

    assert client.segment_call([point_prompt(50, 50)]).success  # and serving
    assert node.proc.poll() is None


def test_clicks_add_objects_in_pixel_and_optical_frame_conventions(det_env):
    client, node, feeder = det_env
    from geometry_msgs.msg import PointStamped

    known = {i for i, _, _ in _events(client)[0]}
    click = PointStamped()
    click.header.frame_id = ""  # pixel coordinates
    click.point.x, click.point.y = 80.0, 60.0
    client.click_pub.publish(click)
    assert wait_for(lambda: "click at pixel (80.0, 60.0): new object" in node.log(), 30.0), node.log()[-2000:]
    assert wait_for(lambda: {i for i, e, _ in _events(client)[0] if e == "added"} - known, 30.0)
    new = {i for i, e, _ in _events(client)[0] if e == "added"} - known
    assert len(new) == 1 and min(new) >= 1000
    # A 3D point in the camera's optical frame, projected with camera_info (f 100, c (80, 60)).
    click.header.frame_id = "test_camera"
    click.point.x, click.point.y, click.point.z = 0.2, 0.1, 1.0
    client.click_pub.publish(click)
    assert wait_for(lambda: "-> pixel (100.0, 70.0)" in node.log(), 30.0)
    assert wait_for(lambda: "click at pixel (100.0, 70.0): new object" in node.log(), 30.0)
    # Another frame (no TF lookup), behind the camera, NaN: refused with the reason.
    for frame, (x, y, z), text in (("map", (0.0, 0.0, 1.0), "not the camera's optical frame"),
                                   ("test_camera", (0.0, 0.0, -1.0), "behind the camera"),
                                   ("", (math.nan, 1.0, 0.0), "not finite")):
        time.sleep(1.1)  # the warning is throttled to one a second
        click.header.frame_id = frame
        click.point.x, click.point.y, click.point.z = x, y, z
        client.click_pub.publish(click)
        assert wait_for(lambda t=text: t in node.log(), 20.0), text
    assert node.proc.poll() is None


# ================================================================================ ~/detections + 3D
@pytest.fixture(scope="module")
def depth_env(tmp_path_factory):
    require_workspace()
    from sam2_client import running_node
    from sensor_msgs.msg import PointCloud2
    from vision_msgs.msg import Detection2DArray, Detection3DArray

    overrides = {"seed": 0, "max_objects": 4, "topics.depth": "/depth", "depth.tolerance": 0.01,
                 "depth.cloud_decimation": 2}
    with running_node(tmp_path_factory.mktemp("perception_depth"), "sam2_depth_test", overrides=overrides,
                      log_tail=5000) as (client, node):
        _record(client, "detections", Detection2DArray, "/sam2_depth_test/detections")
        _record(client, "detections_3d", Detection3DArray, "/sam2_depth_test/detections_3d")
        _record(client, "object_points", PointCloud2, "/sam2_depth_test/object_points")
        feeder = Feeder(client, rate=5.0)
        yield client, node, feeder
        feeder.stop()


def _depth_image(depth_m, encoding="32FC1"):
    from sensor_msgs.msg import Image

    arr = np.ascontiguousarray(depth_m, dtype="<f4") if encoding == "32FC1" else depth_m
    msg = Image(height=int(arr.shape[0]), width=int(arr.shape[1]), encoding=encoding, is_bigendian=0)
    msg.step = int(arr.strides[0])
    msg.data = array.array("B", arr.tobytes())
    return msg


def test_detections_output_for_segment_answers_and_tracked_frames(depth_env):
    client, node, feeder = depth_env
    from sam2_client import box_prompt, camera_image

    image = camera_image(W, H, 0)
    image.header.frame_id = "request_frame"
    image.header.stamp.sec, image.header.stamp.nanosec = 77, 5
    res = client.segment_call([box_prompt([20, 30, 60, 70], object_id=4)], image=image)
    assert res.success, res.message
    (obj,) = res.result.objects
    assert wait_for(lambda: any(_stamp_key(m.header.stamp) == (77, 5) for m in client.messages("detections")),
                    20.0)
    msg = next(m for m in client.messages("detections") if _stamp_key(m.header.stamp) == (77, 5))
    assert msg.header.frame_id == "request_frame"
    (det,) = msg.detections
    assert det.id == "4" and det.results[0].hypothesis.class_id == "object"
    assert math.isclose(det.results[0].hypothesis.score, obj.score, rel_tol=1e-6)
    assert det.bbox.size_x == obj.x_max - obj.x_min + 1 and det.bbox.size_y == obj.y_max - obj.y_min + 1
    assert det.bbox.center.position.x == (obj.x_min + obj.x_max + 1) / 2


def test_per_object_3d_from_depth_matches_the_known_box(depth_env):
    client, node, feeder = depth_env
    from sensor_msgs.msg import Image

    from anima_sam2_msgs.msg import Prompt
    from anima_sam2_ros.node.camera_source import box_scene

    depth_m, box_mask, truth = box_scene(W, H, hfov_deg=2 * math.degrees(math.atan(80 / 100.0)),
                                         center=(0.02, -0.01, 0.6), size=(0.30, 0.20, 0.10), background_m=1.5)
    assert np.allclose(truth["k"], feeder.k)
    feeder.depth = lambda i: _depth_image(depth_m)
    feeder.start()
    assert wait_for(lambda: len(feeder.stamps) >= 2, 10.0)
    # The mask prompt spills 3 px over the box edge onto the wall (1.5 m behind it at 0.55 m).
    ys, xs = np.nonzero(box_mask)
    spill = np.zeros((H, W), np.uint8)
    spill[max(ys.min() - 3, 0):ys.max() + 4, max(xs.min() - 3, 0):xs.max() + 4] = 255
    prompt = Prompt(object_id=3)
    prompt.mask = Image(height=H, width=W, encoding="mono8", step=W, data=array.array("B", spill.tobytes()))
    handle, feedback = client.send_goal([prompt], max_frames=3)
    assert handle.accepted
    assert wait_for(lambda: len(feedback) >= 1, 60.0)
    first = _stamp_key(feedback[0].masks.header.stamp)
    def on_first(key):
        return next((m for m in client.messages(key) if _stamp_key(m.header.stamp) == first), None)
    assert wait_for(lambda: on_first("detections_3d") is not None, 30.0), "no ~/detections_3d for frame 1"
    msg = on_first("detections_3d")
    assert msg.header.frame_id == "test_camera"
    (det,) = msg.detections
    assert det.id == "3"
    c = det.results[0].pose.pose.position
    assert np.abs(np.array([c.x, c.y, c.z]) - truth["centroid"]).max() < 0.01, (c, truth["centroid"])
    size = np.array([det.bbox.size.x, det.bbox.size.y, det.bbox.size.z])
    assert np.abs(size - truth["extent"]).max() < 0.02, (size, truth["extent"])
    # ~/object_points: the same object's points (decimated), x y z + object_id, all on the box face.
    assert wait_for(lambda: on_first("object_points") is not None, 20.0)
    cloud = on_first("object_points")
    assert [f.name for f in cloud.fields] == ["x", "y", "z", "object_id"] and cloud.point_step == 16
    rec = np.frombuffer(bytes(cloud.data), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("id", "<u4")])
    assert len(rec) > 100 and set(rec["id"]) == {3}
    assert np.allclose(rec["z"], truth["centroid"][2], atol=1e-3)
    # ~/detections for every tracked frame of the goal, stamped with the frame.
    status, result = client.result(handle)
    stamps = {_stamp_key(f.masks.header.stamp) for f in feedback}
    assert wait_for(lambda: stamps <= _stamps(client, "detections"), 20.0)


def test_bad_or_missing_depth_leaves_2d_outputs_running(depth_env):
    client, node, feeder = depth_env
    from sam2_client import point_prompt

    bad = {"kind": "encoding"}

    def depth(i):
        if bad["kind"] == "encoding":
            return _depth_image(np.zeros((H, W, 3), np.uint8).reshape(H, W * 3), "rgb8")
        if bad["kind"] == "size":
            return _depth_image(np.ones((H // 2, W // 2), np.float32))
        return None  # no depth at all

    feeder.depth = depth
    for kind, text in (("encoding", "depth encoding 'rgb8' is not supported"),
                       ("size", "does not match the colour image 160x120"), ("none", None)):
        bad["kind"] = kind
        time.sleep(0.5)
        n3d = len(client.messages("detections_3d"))
        handle, feedback = client.send_goal([point_prompt(60, 60)], max_frames=3)
        assert handle.accepted
        status, result = client.result(handle)
        assert result.reason == "max_frames", (kind, result.reason)
        if text:
            assert wait_for(lambda t=text: t in node.log(), 10.0), (kind, node.log()[-2000:])
        # 2D outputs went on; no 3D without usable depth.
        stamps = {_stamp_key(f.masks.header.stamp) for f in feedback}
        assert wait_for(lambda s=stamps: s <= _stamps(client, "detections"), 20.0), kind
        assert len(client.messages("detections_3d")) == n3d, kind
    assert node.proc.poll() is None and "Traceback" not in node.log()

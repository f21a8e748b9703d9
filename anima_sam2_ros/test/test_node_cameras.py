"""Several cameras on one model (issue 16, part 4), across processes over DDS.

One ``sam2_node`` with ``cameras: front,wrist``; this process publishes both cameras'
frames on ``/front/image_raw`` and ``/wrist/image_raw`` (each with its own optical frame id) and
checks that Segment and Track pick the camera they name, that each camera has its own outputs
and its own object ids, and that unknown camera names are refused while the node keeps serving.
"""

from __future__ import annotations

import threading

import pytest

from ros_helpers import require_workspace, wait_for

pytestmark = pytest.mark.ros

NAME = "sam2_cameras_test"
CAMERAS = ("front", "wrist")


class _TwoCameras:
    """Publishes both cameras' frames (and camera_info) from a thread."""

    def __init__(self, client) -> None:
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, Image

        qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT)
        n = client.node
        self.images = {c: n.create_publisher(Image, f"/{c}/image_raw", qos) for c in CAMERAS}
        self.infos = {c: n.create_publisher(CameraInfo, f"/{c}/camera_info", qos) for c in CAMERAS}
        # Registered depth per camera (topics.depth 'depth' -> NAME/depth): a flat wall at 1 m / 2 m.
        self.depths = {c: n.create_publisher(Image, f"/{c}/depth", qos) for c in CAMERAS}
        self.sent = {c: 0 for c in CAMERAS}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import array

        import numpy as np
        from sam2_client import camera_image
        from sensor_msgs.msg import CameraInfo, Image

        walls = {c: np.full((120, 160), 1.0 + k, dtype="<f4") for k, c in enumerate(CAMERAS)}
        t = 0
        while not self._stop.is_set():
            for k, cam in enumerate(CAMERAS):
                img = camera_image(160, 120, (t + 7 * k) % 30)
                img.header.frame_id = f"{cam}_optical"
                img.header.stamp.sec = 2000 + t
                self.infos[cam].publish(CameraInfo(header=img.header, width=160, height=120,
                                                   k=[100.0, 0.0, 80.0, 0.0, 100.0, 60.0, 0.0, 0.0, 1.0]))
                depth = Image(header=img.header, height=120, width=160, encoding="32FC1", step=160 * 4)
                depth.data = array.array("B", walls[cam].tobytes())
                self.depths[cam].publish(depth)
                self.images[cam].publish(img)
                self.sent[cam] += 1
            t += 1
            self._stop.wait(0.2)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.fixture(scope="module")
def cams(tmp_path_factory):
    require_workspace()
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sam2_client import running_node
    from sensor_msgs.msg import CameraInfo
    from vision_msgs.msg import Detection3DArray

    from anima_sam2_msgs.msg import ObjectMaskArray

    overrides = {"cameras": "front,wrist", "topics.depth": "depth"}
    with running_node(tmp_path_factory.mktemp("cameras"), NAME, overrides=overrides,
                      log_tail=5000) as (client, node):
        qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        for cam in CAMERAS:
            for key, msg_type in ((f"{cam}/masks", ObjectMaskArray), (f"{cam}/camera_info", CameraInfo),
                                  (f"{cam}/detections_3d", Detection3DArray)):
                client.received[key] = []
                client.node.create_subscription(msg_type, f"/{NAME}/{key}", client._recorder(key), qos)
        feeder = _TwoCameras(client)
        try:
            assert wait_for(lambda: all(client.messages(f"{c}/camera_info") for c in CAMERAS), 30.0), \
                "the node did not republish both cameras' camera_info"
            yield client, node
        finally:
            feeder.stop()


def test_segment_uses_the_named_cameras_latest_frame(cams):
    from sam2_client import point_prompt

    client, node = cams
    for camera, frame_id in (("wrist", "wrist_optical"), ("front", "front_optical"), ("", "front_optical")):
        res = client.segment_call([point_prompt(40, 60)], camera=camera)
        assert res.success, res.message
        assert res.result.header.frame_id == frame_id, camera
    res = client.segment_call([point_prompt(40, 60)], camera="nope")
    assert not res.success and res.message == "unknown camera 'nope'; cameras: front, wrist"
    assert all(m.header.frame_id == "front_optical" for m in client.messages("front/camera_info"))
    assert all(m.header.frame_id == "wrist_optical" for m in client.messages("wrist/camera_info"))
    assert "cameras: front, wrist (one model, one encoder pass per camera frame on the CPU)" in node.log()


def test_each_camera_tracks_its_own_objects_with_its_own_outputs(cams):
    from sam2_client import box_prompt

    client, node = cams
    # The same object id on both cameras: two trackers, so neither goal takes the other's over.
    handles = {c: client.send_goal([box_prompt((30, 30, 90, 90), object_id=1)], max_frames=3, camera=c)
               for c in CAMERAS}
    for cam, (handle, _) in handles.items():
        assert handle.accepted, cam
    for cam, (handle, feedback) in handles.items():
        status, result = client.result(handle, timeout=90.0)
        assert result.reason == "max_frames" and result.frames_processed == 3, (cam, result.reason)
        assert list(result.object_ids) == [1]
        assert {f.masks.header.frame_id for f in feedback} == {f"{cam}_optical"}, cam
    for cam in CAMERAS:
        assert wait_for(lambda cam=cam: len(client.messages(f"{cam}/masks")) >= 3, 20.0), cam
        msgs = client.messages(f"{cam}/masks")
        assert {m.header.frame_id for m in msgs} == {f"{cam}_optical"}, cam
        assert any(o.object_id == 1 for m in msgs for o in m.objects)
    handle, _ = client.send_goal([box_prompt((30, 30, 90, 90))], max_frames=1, camera="nope")
    assert not handle.accepted
    assert wait_for(lambda: "unknown camera 'nope'" in node.log(), 10.0)
    res = client.segment_call([box_prompt((30, 30, 90, 90))], camera="wrist")  # still serving
    assert res.success, res.message


def test_each_camera_pairs_its_own_depth(cams):
    from sam2_client import box_prompt

    client, _ = cams
    for k, cam in enumerate(CAMERAS):
        res = client.segment_call([box_prompt((30, 30, 90, 90), object_id=5)], camera=cam)
        assert res.success, res.message
        stamp = res.result.header.stamp

        def on_frame(cam=cam, stamp=stamp):
            return [m for m in client.messages(f"{cam}/detections_3d") if m.header.stamp == stamp]

        assert wait_for(lambda: on_frame(), 20.0), f"no ~/{cam}/detections_3d for the answer"
        msg = on_frame()[-1]  # (a tracked frame may have the same stamp)
        assert msg.header.frame_id == f"{cam}_optical"
        z = msg.detections[0].results[0].pose.pose.position.z
        assert abs(z - (1.0 + k)) < 1e-3, (cam, z)  # front's wall at 1 m, wrist's at 2 m


def test_camera_names_are_checked():
    from anima_sam2_ros.node.params import camera_names

    assert camera_names("") == ([], None)
    assert camera_names(" front, wrist ,") == (["front", "wrist"], None)
    for bad, why in (("front,front", "twice"), ("9lives", "not a valid camera name"),
                     ("a/b", "not a valid camera name"), (",".join(f"c{i}" for i in range(9)), "at most 8")):
        names, reason = camera_names(bad)
        assert names == [] and why in reason, (bad, reason)

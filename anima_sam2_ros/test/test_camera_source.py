"""The synthetic camera: a deterministic moving-object sequence, published across processes."""

from __future__ import annotations

import numpy as np
import pytest

from ros_helpers import require_workspace, spawn, stop, wait_for

pytestmark = pytest.mark.ros


@pytest.fixture(scope="module")
def cam():
    require_workspace()
    from anima_sam2_ros.node import camera_source

    return camera_source


def test_render_is_deterministic(cam):
    a = cam.SyntheticScene(96, 64)
    b = cam.SyntheticScene(96, 64)
    for i in (0, 1, 17, 299, 300):
        fa, fb = a.render(i), b.render(i)
        assert fa.shape == (64, 96, 3) and fa.dtype == np.uint8
        assert np.array_equal(fa, fb)
    assert np.array_equal(a.render(3), a.render(3 + a.period))  # periodic
    with pytest.raises(ValueError):
        cam.SyntheticScene(8, 8)


def test_objects_move_and_anchor_stays_on_disc(cam):
    scene = cam.SyntheticScene(160, 120)
    assert not np.array_equal(scene.render(0), scene.render(5))
    m0, m5 = scene.masks(0), scene.masks(5)
    assert len(m0) == 3 and all(m.any() for m in m0)
    for obj in range(3):
        assert not np.array_equal(m0[obj], m5[obj]), f"object {obj} does not move"
    c0, c5 = scene.centers(0), scene.centers(5)
    assert all(np.hypot(c5[k][0] - c0[k][0], c5[k][1] - c0[k][1]) > 1.0 for k in c0)
    x, y = scene.anchor_point()
    assert all(scene.masks(i)[0][int(y), int(x)] for i in range(0, scene.period, 3))
    # The rendered disc is where its mask says (red in RGB).
    img = scene.render(0)
    ys, xs = np.nonzero(m0[0])
    assert img[ys, xs, 0].mean() > 150 and img[ys, xs, 2].mean() < 120


def test_encodings(cam):
    rgb = cam.SyntheticScene(32, 24).render(4)
    assert np.array_equal(cam.convert(rgb, "bgr8"), rgb[..., ::-1])
    assert cam.convert(rgb, "mono8").shape == (24, 32)
    with pytest.raises(ValueError):
        cam.convert(rgb, "16UC1")


@pytest.mark.parametrize("encoding,reliable", [("bgr8", True), ("rgb8", False)])
def test_frames_received_across_processes(cam, encoding, reliable):
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, Image

    w, h, n = 48, 32, 4
    child = spawn(["-m", "anima_sam2_ros.node.camera_source", "--ros-args",
                   "-r", "__ns:=/anima_cam_test", "-p", f"width:={w}", "-p", f"height:={h}",
                   "-p", "rate:=20.0", "-p", f"encoding:={encoding}",
                   "-p", f"reliable:={str(reliable).lower()}",
                   "-p", f"frames:={n}", "-p", "wait_for_subscriber:=true", "-p", "frame_id:=test_cam"])
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node("anima_cam_listener", context=ctx)
    images, infos = [], []
    try:
        qos = qos_profile_sensor_data
        if reliable:
            qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        node.create_subscription(Image, "/anima_cam_test/image_raw", images.append, qos)
        node.create_subscription(CameraInfo, "/anima_cam_test/camera_info", infos.append, qos)
        executor = rclpy.executors.SingleThreadedExecutor(context=ctx)
        executor.add_node(node)
        got_all = wait_for(lambda: (executor.spin_once(timeout_sec=0.05), len(images) >= n)[1], 30.0)
        assert child.wait(20) == 0, "camera_source did not exit 0 after `frames`"
        if reliable:
            assert got_all, f"reliable: received {len(images)} of {n} frames"
        assert images, "no frames received"
        scene = cam.SyntheticScene(w, h)
        expected = [cam.convert(scene.render(i), encoding) for i in range(n)]
        for msg in images:
            assert msg.header.frame_id == "test_cam" and msg.encoding == encoding
            assert (msg.width, msg.height, msg.step) == (w, h, w * 3)
            frame = np.frombuffer(bytes(msg.data), np.uint8).reshape(h, w, 3)
            assert any(np.array_equal(frame, e) for e in expected)
        if reliable:
            got = [np.frombuffer(bytes(m.data), np.uint8).reshape(h, w, 3) for m in images[:n]]
            assert all(np.array_equal(g, e) for g, e in zip(got, expected, strict=True)), "out of order"
            stamps = [(m.header.stamp.sec, m.header.stamp.nanosec) for m in images]
            assert stamps == sorted(stamps) and stamps[0] != (0, 0)
            assert wait_for(lambda: (executor.spin_once(timeout_sec=0.05), len(infos) >= n)[1], 5.0)
            assert [i.header for i in infos[:n]] == [m.header for m in images[:n]]
            assert infos[0].width == w and infos[0].k[0] > 0
    finally:
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)
        stop(child)

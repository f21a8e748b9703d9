"""Camera encodings as cv_bridge converts them: each against OpenCV's own conversion, then a node fed them.

cv_bridge's ``imgmsg_to_cv2(msg, "rgb8")`` runs ``cv2.cvtColor`` with one code per encoding
(yuv422 = UYVY, yuv422_yuy2 = YUYV, bayer_rggb8 = OpenCV's BayerBG, ...) and scales 16-bit mono
to 8 bit by 255/65535; rgba8 / bgra8 lose their alpha. ``image_from_msg`` must give the engine
exactly those pixels, with row padding and big-endian data handled.
"""

from __future__ import annotations

import array
import threading
import time

import cv2
import numpy as np
import pytest

from ros_helpers import require_workspace, wait_for

pytestmark = pytest.mark.ros

RNG = np.random.default_rng(7)


def _msg(raw: np.ndarray, encoding: str, width: int, pad: int = 0, bigendian: int = 0, t: int = 0):
    """``sensor_msgs/Image`` holding ``raw`` (its bytes row by row) with ``pad`` bytes per row."""
    from sensor_msgs.msg import Image

    h = raw.shape[0]
    rows = np.ascontiguousarray(raw).view(np.uint8).reshape(h, -1)
    padded = np.zeros((h, rows.shape[1] + pad), np.uint8)
    padded[:, : rows.shape[1]] = rows
    msg = Image(height=h, width=width, encoding=encoding, step=padded.shape[1], is_bigendian=bigendian,
                data=array.array("B", padded.tobytes()))
    msg.header.frame_id = "enc_camera"
    msg.header.stamp.sec, msg.header.stamp.nanosec = 2000 + t, 0
    return msg


# encoding, raw shape, the cv2 code cv_bridge uses for "rgb8" (None: channel slicing), engine encoding
CASES = [
    ("yuv422", (6, 8, 2), cv2.COLOR_YUV2RGB_UYVY, "rgb8"),
    ("uyvy", (6, 8, 2), cv2.COLOR_YUV2RGB_UYVY, "rgb8"),
    ("yuv422_yuy2", (6, 8, 2), cv2.COLOR_YUV2RGB_YUY2, "rgb8"),
    ("yuyv", (6, 8, 2), cv2.COLOR_YUV2RGB_YUYV, "rgb8"),
    ("bayer_rggb8", (6, 8), cv2.COLOR_BayerBG2RGB, "rgb8"),
    ("bayer_bggr8", (6, 8), cv2.COLOR_BayerRG2RGB, "rgb8"),
    ("bayer_gbrg8", (6, 8), cv2.COLOR_BayerGR2RGB, "rgb8"),
    ("bayer_grbg8", (6, 8), cv2.COLOR_BayerGB2RGB, "rgb8"),
    ("rgba8", (6, 7, 4), cv2.COLOR_RGBA2RGB, "rgb8"),
    ("bgra8", (6, 7, 4), cv2.COLOR_BGRA2BGR, "bgr8"),
]


@pytest.mark.parametrize("encoding,shape,code,engine", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("pad", [0, 5])
def test_colour_encodings_match_opencv(encoding, shape, code, engine, pad):
    require_workspace()
    from anima_sam2_ros.node.conversions import image_from_msg

    raw = RNG.integers(0, 256, shape, dtype=np.uint8)
    out, enc = image_from_msg(_msg(raw, encoding, shape[1], pad=pad))
    expected = cv2.cvtColor(raw, code)
    assert enc == engine and out.dtype == np.uint8 and out.shape == (shape[0], shape[1], 3)
    assert np.array_equal(out, expected)
    # The engine sees the same RGB as cv_bridge's rgb8 (bgra8 goes as bgr8, which the engine flips).
    from anima_sam2_ros.engine.preprocess import to_rgb

    rgb = to_rgb(out, enc)
    want = expected if engine == "rgb8" else cv2.cvtColor(expected, cv2.COLOR_BGR2RGB)
    assert np.array_equal(rgb, want)


def test_bayer_pattern_names_match_opencvs_unambiguous_ones():
    # cv_bridge uses OpenCV's legacy Bayer names, shifted by one pixel: bayer_rggb8 is BayerBG,
    # which OpenCV also calls BayerRGGB.
    assert cv2.COLOR_BayerBG2RGB == cv2.COLOR_BayerRGGB2RGB
    assert cv2.COLOR_BayerRG2RGB == cv2.COLOR_BayerBGGR2RGB
    assert cv2.COLOR_BayerGR2RGB == cv2.COLOR_BayerGBRG2RGB
    assert cv2.COLOR_BayerGB2RGB == cv2.COLOR_BayerGRBG2RGB


@pytest.mark.parametrize("bigendian", [0, 1])
def test_mono16_scaled_to_mono8_like_cv_bridge(bigendian):
    require_workspace()
    from anima_sam2_ros.node.conversions import image_from_msg

    deep = RNG.integers(0, 65536, (5, 9), dtype=np.uint16)
    deep[0, :4] = (0, 128, 65535, 257)
    raw = deep.astype(">u2" if bigendian else "<u2")
    out, enc = image_from_msg(_msg(raw, "mono16", 9, pad=3, bigendian=bigendian))
    # cv_bridge: image.convertTo(CV_8U, 255.0 / 65535.0), i.e. saturate(round(v / 257)).
    assert enc == "mono8" and out.dtype == np.uint8 and out.shape == (5, 9)
    assert np.array_equal(out, cv2.convertScaleAbs(deep, alpha=255.0 / 65535.0))
    assert np.array_equal(out, np.rint(deep / 257.0).astype(np.uint8))
    assert list(out[0, :4]) == [0, 0, 255, 1]


@pytest.mark.parametrize("encoding,expected", [
    ("16UC1", "'16UC1' is not supported: 16-bit"),
    ("32FC1", "'32FC1' is not supported: 16-bit colour, depth and float"),
    ("rgb16", "'rgb16' is not supported"),
    ("bayer_rggb16", "'bayer_rggb16' is not supported"),
    ("nv21", "'nv21' is not supported; use one of rgb8, bgr8, mono8"),
    ("8UC4", "'8UC4' is not supported"),
])
def test_unsupported_encodings_are_refused_by_name(encoding, expected):
    require_workspace()
    from anima_sam2_ros.node.conversions import ConversionError, image_from_msg

    with pytest.raises(ConversionError, match=expected):
        image_from_msg(_msg(np.zeros((4, 16), np.uint8), encoding, 4))


def test_yuv422_needs_an_even_width():
    require_workspace()
    from anima_sam2_ros.node.conversions import ConversionError, image_from_msg

    with pytest.raises(ConversionError, match="even width"):
        image_from_msg(_msg(np.zeros((4, 7, 2), np.uint8), "yuv422_yuy2", 7))


# ------------------------------------------------------------------------------------------------
# A node fed yuv422_yuy2 camera frames (and bayer / mono16 request images), across processes
# ------------------------------------------------------------------------------------------------
W, H = 160, 120


def _scene_rgb(t: int) -> np.ndarray:
    arr = np.full((H, W, 3), 40, np.uint8)
    x0 = 20 + 3 * t
    arr[40:80, x0:x0 + 40] = (220, 60, 60)
    return arr


def _yuyv(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_YUY2)  # (H, W, 2): what a USB camera sends


@pytest.fixture(scope="module")
def yuv_node(tmp_path_factory):
    require_workspace()
    from sam2_client import running_node

    with running_node(tmp_path_factory.mktemp("enc"), "sam2_enc_test") as env:
        client, node = env
        stop = threading.Event()

        def camera() -> None:
            t = 0
            while not stop.is_set():
                client.camera.publish(_msg(_yuyv(_scene_rgb(t % 20)), "yuv422_yuy2", W, t=t))
                t += 1
                stop.wait(0.2)

        thread = threading.Thread(target=camera, daemon=True)
        thread.start()
        try:
            yield client, node
        finally:
            stop.set()
            thread.join(5)


def _mask(obj) -> np.ndarray:
    return np.frombuffer(bytes(obj.mask.data), np.uint8).reshape(obj.mask.height, obj.mask.width)


def test_node_segments_and_tracks_yuv422_yuy2_camera_frames(yuv_node):
    from sam2_client import point_prompt

    client, node = yuv_node
    res = None

    def answered() -> bool:
        nonlocal res
        res = client.segment_call([point_prompt(40, 60)])
        return res.success

    assert wait_for(answered, 30.0, period=0.5), res.message if res else "no answer"
    assert res.result.header.frame_id == "enc_camera"
    (obj,) = res.result.objects
    assert (obj.mask.width, obj.mask.height) == (W, H) and obj.area > 0

    handle, feedback = client.send_goal([point_prompt(40, 60, object_id=3)], max_frames=3)
    assert handle.accepted
    status, result = client.result(handle, timeout=60.0)
    assert result.reason == "max_frames" and result.frames_processed == 3, result.reason
    assert len(feedback) == 3 and all([o.object_id for o in f.masks.objects] == [3] for f in feedback)
    assert "not supported" not in node.log()
    # Dummy weights: the node's ~/overlay carries the red "DUMMY WEIGHTS" strip on every frame.
    assert wait_for(lambda: len(client.messages("overlay")) >= 3, 10.0)
    for ov in client.messages("overlay")[-3:]:
        arr = np.frombuffer(bytes(ov.data), np.uint8).reshape(ov.height, ov.width, 3)
        assert ov.encoding == "bgr8" and np.mean(np.all(arr[1:4] == (0, 0, 200), axis=2)) > 0.9


def test_node_request_images_in_new_encodings_equal_their_rgb8(yuv_node):
    """The same scene sent as bayer_rggb8 / yuv422 / mono16 and as the rgb8 cv_bridge makes of it."""
    from sam2_client import point_prompt

    client, _ = yuv_node
    rgb = _scene_rgb(5)
    bayer = np.zeros((H, W), np.uint8)  # RGGB mosaic of the scene
    bayer[0::2, 0::2], bayer[0::2, 1::2] = rgb[0::2, 0::2, 0], rgb[0::2, 1::2, 1]
    bayer[1::2, 0::2], bayer[1::2, 1::2] = rgb[1::2, 0::2, 1], rgb[1::2, 1::2, 2]
    deep = (rgb[:, :, 0].astype(np.uint16) * 257 + 100).astype("<u2")
    cases = [
        (_msg(bayer, "bayer_rggb8", W), cv2.cvtColor(bayer, cv2.COLOR_BayerBG2RGB)),
        (_msg(cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_UYVY), "yuv422", W, pad=8),
         cv2.cvtColor(cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_UYVY), cv2.COLOR_YUV2RGB_UYVY)),
        (_msg(deep, "mono16", W), cv2.cvtColor(cv2.convertScaleAbs(deep, alpha=255.0 / 65535.0),
                                                cv2.COLOR_GRAY2RGB)),
    ]
    for msg, as_rgb in cases:
        res = client.segment_call([point_prompt(50, 60)], image=msg)
        assert res.success, (msg.encoding, res.message)
        ref = client.segment_call([point_prompt(50, 60)], image=_msg(as_rgb, "rgb8", W))
        assert ref.success, ref.message
        assert np.array_equal(_mask(res.result.objects[0]), _mask(ref.result.objects[0])), msg.encoding
        assert res.result.objects[0].score == pytest.approx(ref.result.objects[0].score, abs=1e-6)


def test_node_warns_naming_an_unsupported_camera_encoding(yuv_node):
    client, node = yuv_node
    for t in range(3):
        client.camera.publish(_msg(np.zeros((H, W * 2), np.uint8), "nv21", W, t=100 + t))
        time.sleep(0.1)
    assert wait_for(lambda: "'nv21' is not supported" in node.log(), 10.0), node.log()[-2000:]

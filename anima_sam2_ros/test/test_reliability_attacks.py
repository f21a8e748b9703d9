"""sam2_node under attack, across real processes (issue 13).

One node process (test-micro, compressed camera input on): the killers (a 65-byte PNG claiming
50000x50000, a JPEG claiming 60000x60000, a ParameterValue of unknown type 99 through
SetParameters and SetParametersAtomically) each followed by a good request; a decompression bomb
refused before decoding (the node's peak RSS stays flat); take-over with several goals in one
frame (the latest prompt wins, every ended goal logs why); object ids at 255/256, 65535/65536,
2**31 and 2**32 - 1 on the results, ~/label_image, ~/markers and track feedback; refusals logged
throttled; the mask-size error quoting the node's real max_image_side.
"""

from __future__ import annotations

import array
import struct
import time
import zlib

import numpy as np
import pytest

from ros_helpers import require_workspace, wait_for

pytestmark = pytest.mark.ros

NAME = "sam2_attacks_test"
MAX_SIDE = 2048
MAX_RESULT_MB = 16.0


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    require_workspace()
    from sam2_client import running_node

    overrides = {"topics.compressed_image": "image/compressed", "max_image_side": MAX_SIDE,
                 "camera_timeout": 5.0, "max_result_mb": MAX_RESULT_MB}
    with running_node(tmp_path_factory.mktemp("attacks"), NAME, overrides=overrides,
                      log_tail=12000) as env:
        yield env


def _status():
    from action_msgs.msg import GoalStatus

    return GoalStatus


def _diag(client):
    status = [s for m in client.messages("diagnostics") for s in m.status if NAME in s.name]
    return {kv.key: kv.value for kv in status[-1].values} if status else {}


def _alive_and_serving(client, node):
    """The node process runs, its lifecycle answers and a good segment call succeeds."""
    from sam2_client import camera_image, point_prompt

    assert node.proc.poll() is None, f"the node died (exit {node.proc.returncode})"
    assert client.state() == "active"
    res = client.segment_call([point_prompt(30, 30)], image=camera_image(64, 48), timeout=30.0)
    assert res.success, res.message


def _peak_rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    raise AssertionError("no VmHWM in /proc/PID/status")


def _png_chunk(kind, data):
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def _png_claiming(width, height, color_type=2, idat=b""):
    """A PNG whose IHDR claims ``width`` x ``height`` (8 bits), with ``idat`` as its pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat)
            + _png_chunk(b"IEND", b""))


def _bomb_png(side):
    """A valid grey PNG of side x side zeros: a few hundred KB that decode to side**2 * 3 bytes."""
    comp = zlib.compressobj(9)
    row = bytes(side + 1)  # filter byte 0 + a row of zeros
    parts = [comp.compress(row) for _ in range(side)]
    parts.append(comp.flush())
    return _png_claiming(side, side, color_type=0, idat=b"".join(parts))


def _jpeg_claiming(width, height):
    """A real JPEG whose SOF header was patched to claim ``width`` x ``height``."""
    import cv2

    ok, buf = cv2.imencode(".jpg", np.full((16, 16, 3), 128, np.uint8))
    assert ok
    data = bytearray(buf.tobytes())
    i = data.index(b"\xff\xc0")
    data[i + 5:i + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _compressed(data, fmt):
    from sensor_msgs.msg import CompressedImage

    msg = CompressedImage(format=fmt, data=array.array("B", data))
    msg.header.frame_id = "attack"
    return msg


def _rejected(client):
    return int(_diag(client).get("frames_rejected", "0"))


def test_png_and_jpeg_headers_claiming_huge_sizes_are_dropped(env):
    client, node = env
    png = _png_claiming(50000, 50000, idat=zlib.compress(bytes(10))[:8])
    assert len(png) == 65
    jpeg = _jpeg_claiming(60000, 60000)
    assert wait_for(lambda: _diag(client) != {}, 10.0)
    for data, fmt, what in ((png, "png", "compressed png image 50000x50000"),
                            (jpeg, "jpeg", "compressed jpeg image 60000x60000")):
        before = _rejected(client)
        client.compressed.publish(_compressed(data, fmt))
        assert wait_for(lambda n=before: _rejected(client) > n or node.proc.poll() is not None, 15.0,
                        period=0.2), _diag(client)
        _alive_and_serving(client, node)
        reason = _diag(client).get("last_frame_rejection", "")
        assert what in reason and f"limit of {MAX_SIDE} pixels" in reason, reason
    # Not an image at all, and a PNG with a broken header: dropped too.
    for data in (b"GIF89a" + bytes(40), b"\x89PNG\r\n\x1a\n" + bytes(8)):
        before = _rejected(client)
        client.compressed.publish(_compressed(data, "png"))
        assert wait_for(lambda n=before: _rejected(client) > n, 15.0, period=0.2)
    _alive_and_serving(client, node)


def test_decompression_bomb_is_refused_before_decoding(env):
    client, node = env
    side = 12000  # 144 MB of grey, 432 MB as BGR once decoded; the message is ~150 KB
    bomb = _bomb_png(side)
    assert len(bomb) < 300_000
    assert wait_for(lambda: _diag(client) != {}, 10.0)
    peak = _peak_rss_mb(node.proc.pid)
    before = _rejected(client)
    for _ in range(3):
        client.compressed.publish(_compressed(bomb, "png"))
    assert wait_for(lambda: _rejected(client) >= before + 3 or node.proc.poll() is not None, 30.0,
                    period=0.2), _diag(client)
    _alive_and_serving(client, node)
    grown = _peak_rss_mb(node.proc.pid) - peak
    assert grown < 100.0, f"peak RSS grew by {grown:.0f} MiB: the bomb was decoded"
    reason = _diag(client).get("last_frame_rejection", "")
    assert f"compressed png image {side}x{side} exceeds the limit of {MAX_SIDE}" in reason, reason


def _param_request(kind):
    from rcl_interfaces.msg import Parameter, ParameterValue

    p = Parameter(name="min_score", value=ParameterValue(type=99))
    req = kind.Request()
    req.parameters = [p]
    return req


def test_unknown_parameter_type_does_not_kill_the_node(env):
    from rcl_interfaces.srv import SetParameters, SetParametersAtomically

    client, node = env
    atomic = client.node.create_client(SetParametersAtomically, f"{client.base}/set_parameters_atomically")
    try:
        for srv, kind in ((client.set_params, SetParameters), (atomic, SetParametersAtomically)):
            assert srv.wait_for_service(timeout_sec=10.0)
            srv.call_async(_param_request(kind))  # rclpy raises inside its own service: no answer
            time.sleep(1.0)
            _alive_and_serving(client, node)
        assert client.set_param("min_score", 0.0)  # the parameter services still work
        log = node.log()
        assert "exception in a callback (executor)" in log and "Traceback" in log
    finally:
        client.node.destroy_client(atomic)


def test_several_goals_in_one_frame_latest_prompt_wins(env):
    from sam2_client import point_prompt

    client, node = env
    client.start_camera(rate=5.0)
    try:
        a, fa = client.send_goal([point_prompt(60, 60, object_id=1), point_prompt(100, 60, object_id=2)])
        assert a.accepted
        assert wait_for(lambda: len(fa) >= 2, 20.0)
        client.stop_camera()
        time.sleep(0.5)  # the last frame is processed; B and C then start on the same next frame
        b, fb = client.send_goal([point_prompt(61, 60, object_id=1)], max_frames=3)
        c, fc = client.send_goal([point_prompt(62, 61, object_id=1)], max_frames=3)
        assert b.accepted and c.accepted
        time.sleep(0.5)
        client.start_camera(rate=5.0)
        status, result = client.result(b)
        assert status == _status().STATUS_ABORTED and result.reason == "taken_over", result
        assert result.frames_processed == 0 and list(result.object_ids) == []
        status, result = client.result(c)
        assert status == _status().STATUS_SUCCEEDED and list(result.object_ids) == [1], result
        assert fc[0].masks.objects[0].object_id == 1 and fc[0].masks.objects[0].event == "reprompted"
        assert not fb
        # A kept object 2; a later goal taking it ends A with taken_over.
        d, _ = client.send_goal([point_prompt(100, 61, object_id=2)], max_frames=2)
        assert d.accepted
        status, result = client.result(a)
        assert status == _status().STATUS_ABORTED and result.reason == "taken_over"
        assert client.result(d)[0] == _status().STATUS_SUCCEEDED
        # Every ended goal said why in the log.
        assert wait_for(lambda: node.log().count("track goal ended: taken_over") >= 2, 5.0)
        assert node.log().count("track goal ended: max_frames") >= 2
    finally:
        client.stop_camera()


def _expected_labels(objects, shape):
    out = np.zeros(shape, np.uint64)
    for o in objects:
        m = np.frombuffer(bytes(o.mask.data), np.uint8).reshape(o.mask.height, o.mask.width)
        out[m > 0] = o.object_id
    return out


def _decode_label(msg):
    dtype = {"mono8": "u1", "mono16": "<u2", "32SC1": "<u4"}[msg.encoding]
    return np.frombuffer(bytes(msg.data), dtype).reshape(msg.height, msg.width).astype(np.uint64)


@pytest.mark.parametrize("ids,encoding", [((255, 7), "mono8"), ((255, 256), "mono16"),
                                          ((65535, 3), "mono16"), ((65535, 65536), "32SC1"),
                                          ((2**31, 2**32 - 1), "32SC1")])
def test_large_object_ids_reach_every_output(env, ids, encoding):
    from sam2_client import camera_image, point_prompt

    from anima_sam2_ros.node.visualization import marker_id

    client, node = env
    client.clear()
    image = camera_image(96, 64)
    image.header.frame_id = f"ids_{ids[0]}_{ids[1]}"
    prompts = [point_prompt(30, 30, object_id=ids[0]), point_prompt(60, 40, object_id=ids[1])]
    res = client.segment_call(prompts, image=image)
    assert res.success, res.message
    assert [o.object_id for o in res.result.objects] == list(ids)

    def got(key):
        def frame_id(m):
            return m.markers[0].header.frame_id if key == "markers" else m.header.frame_id

        return [m for m in client.messages(key) if frame_id(m) == image.header.frame_id]

    assert wait_for(lambda: got("label_image") and got("overlay") and got("markers"), 10.0), \
        node.log()[-3000:]
    label = got("label_image")[-1]
    assert label.encoding == encoding
    assert np.array_equal(_decode_label(label), _expected_labels(res.result.objects, (64, 96)))
    visible = {marker_id(o.object_id) for o in res.result.objects if o.visible and o.area > 0}
    marker_ids = {m.id for m in got("markers")[-1].markers if m.ns == "sam2" and m.action == 0}  # ADD
    assert visible <= marker_ids <= {marker_id(i) for i in ids}
    assert all(-2**31 <= m <= 2**31 - 1 for m in marker_ids)
    assert "exception in publishing" not in node.log()


def test_large_ids_in_track_goals(env):
    from sam2_client import point_prompt

    client, _ = env
    client.start_camera(rate=8.0)
    try:
        handle, feedback = client.send_goal([point_prompt(60, 60, object_id=2**31),
                                             point_prompt(100, 60, object_id=2**32 - 1)], max_frames=2)
        assert handle.accepted
        status, result = client.result(handle)
        assert status == _status().STATUS_SUCCEEDED, result.reason
        assert sorted(result.object_ids) == [2**31, 2**32 - 1]
        assert sorted(o.object_id for o in feedback[0].masks.objects) == [2**31, 2**32 - 1]
    finally:
        client.stop_camera()


def test_refusals_are_logged_throttled_and_quote_the_real_limit(env):
    from sam2_client import camera_image

    from anima_sam2_ros.node import conversions

    client, node = env
    lines = node.log().count("segment refused")
    for _ in range(30):
        res = client.segment_call([], image=camera_image(64, 48))
        assert not res.success and "no prompts" in res.message
    # 30 refusals within a few seconds: at most 2 log lines (REFUSAL_LOG_PERIOD 5 s), with counts.
    assert node.log().count("segment refused") - lines <= 2
    assert "so far)" in node.log()
    # A mask prompt over the limit names the node's own max_image_side, not a built-in one.
    from sam2_client import point_prompt
    from sensor_msgs.msg import Image

    mask = Image(width=MAX_SIDE + 1, height=4, encoding="mono8", step=MAX_SIDE + 1,
                 data=array.array("B", bytes(4 * (MAX_SIDE + 1))))
    p = point_prompt(0, 0)
    p.points, p.labels, p.mask = [], [], mask
    res = client.segment_call([p], image=camera_image(64, 48))
    assert not res.success
    assert f"limit of {MAX_SIDE} pixels per side (parameter max_image_side)" in res.message, res.message
    assert str(conversions.DEFAULT_MAX_SIDE) not in res.message


def test_oversized_answers_are_refused_before_inference(env):
    from sam2_client import point_prompt
    from sensor_msgs.msg import Image

    client, node = env
    side = 2048
    big = Image(width=side, height=side, encoding="mono8", step=side,
                data=array.array("B", bytes(side * side)))
    # 8 masks of 2048 x 2048 = 32 MB in one answer: over max_result_mb 16, refused up front.
    res = client.segment_call([point_prompt(100 * (i + 1), 500) for i in range(8)], image=big)
    assert not res.success
    assert "32 MB of masks (8 prompts x 2048x2048), more than max_result_mb = 16" in res.message, res.message
    # 4 of them (16 MB) are answered.
    res = client.segment_call([point_prompt(100 * (i + 1), 500) for i in range(4)], image=big, timeout=120.0)
    assert res.success, res.message
    assert len(res.result.objects) == 4
    _alive_and_serving(client, node)

"""Fuzz (hypothesis) of the node's conversion layer and the engine's validation layer.

Random ``sensor_msgs/Image`` headers and data, random ``Prompt`` messages and random engine
prompts / arrays: nothing escapes but the documented error type (``ConversionError`` /
``InvalidInputError``), and whatever is accepted is consistent with its header.
"""

from __future__ import annotations

import array
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ros_helpers import require_workspace

pytestmark = pytest.mark.ros

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ENCODINGS = ["rgb8", "bgr8", "mono8", "8UC1", "8UC3", "mono16", "16UC1", "32FC1", "yuv422", "rgba8",
             "bayer_rggb8", "", "garbage\x00", "RGB8", "16SC1", "64FC1"]
U32 = st.integers(0, 2**32 - 1)
SMALL = st.integers(0, 40)
FLOATS = st.floats(allow_nan=True, allow_infinity=True)
F32_MAX = 3.3999999521443642e+38  # the message field check's bound, as a float32
F32 = st.one_of(st.floats(-F32_MAX, F32_MAX, width=32), st.sampled_from([math.nan, math.inf, -math.inf]))


@pytest.fixture(autouse=True)
def _workspace():
    require_workspace()


def _image_msg(width, height, step, encoding, data_len, bigendian):
    from sensor_msgs.msg import Image

    return Image(width=width, height=height, step=step, encoding=encoding, is_bigendian=bigendian,
                 data=array.array("B", bytes(data_len)))


@st.composite
def image_headers(draw):
    width = draw(st.one_of(SMALL, U32))
    height = draw(st.one_of(SMALL, U32))
    encoding = draw(st.one_of(st.sampled_from(ENCODINGS), st.text(max_size=12)))
    step = draw(st.one_of(st.just(width * 3), st.just(width), SMALL, U32))
    exact = (step * height) if step * height < 20000 else 0
    data_len = draw(st.one_of(st.just(exact), st.integers(0, 5000)))
    return width, height, step % 2**32, encoding, data_len, draw(st.integers(0, 255))


@given(image_headers(), st.integers(1, 8192))
@FUZZ
def test_image_from_msg_raises_only_conversion_error(header, max_side):
    from anima_sam2_ros.node.conversions import ConversionError, image_from_msg

    width, height, step, encoding, data_len, bigendian = header
    msg = _image_msg(width, height, step, encoding, data_len, bigendian)
    try:
        image, engine_encoding = image_from_msg(msg, max_side)
    except ConversionError as exc:
        assert str(exc)
        return
    assert image.dtype == np.uint8 and image.shape[:2] == (height, width)
    assert 0 < width <= max_side and 0 < height <= max_side
    assert engine_encoding in ("rgb8", "bgr8", "mono8")


@st.composite
def prompt_msgs(draw):
    from geometry_msgs.msg import Point
    from sensor_msgs.msg import Image

    from anima_sam2_msgs.msg import Prompt

    p = Prompt()
    p.object_id = draw(U32)
    n = draw(st.integers(0, 4))
    p.points = [Point(x=draw(FLOATS), y=draw(FLOATS), z=0.0) for _ in range(n)]
    p.labels = draw(st.lists(st.integers(-128, 127), max_size=5))
    p.box = draw(st.lists(F32, max_size=6))
    if draw(st.booleans()):
        h, w = draw(st.integers(0, 12)), draw(st.integers(0, 12))
        step = draw(st.one_of(st.just(w), st.integers(0, 40)))
        size = draw(st.one_of(st.just(step * h), st.integers(0, 200)))
        enc = draw(st.sampled_from(["mono8", "8UC1", "rgb8", "16UC1", "x"]))
        p.mask = Image(height=h, width=w, step=step, encoding=enc,
                       data=array.array("B", draw(st.binary(min_size=size, max_size=size))))
    return p


@given(prompt_msgs(), st.integers(1, 64), st.integers(1, 64))
@FUZZ
def test_prompt_conversion_and_validation_raise_only_invalid_input(msg, height, width):
    from anima_sam2_ros.engine.errors import InvalidInputError
    from anima_sam2_ros.engine.validation import validate_prompt
    from anima_sam2_ros.node.conversions import ConversionError, assign_ids, prompt_from_msg

    try:
        prompt = prompt_from_msg(msg)
    except ConversionError as exc:
        assert str(exc)
        return
    assign_ids([prompt])
    try:
        checked = validate_prompt(prompt, (height, width))
    except InvalidInputError as exc:
        assert str(exc)
        return
    if checked.points is not None:
        assert np.isfinite(checked.points).all()
        assert (checked.points[:, 0] >= 0).all() and (checked.points[:, 0] <= width).all()
        assert set(np.unique(checked.labels)) <= {0, 1}
    if checked.box is not None:
        x0, y0, x1, y1 = checked.box
        assert 0 <= x0 <= x1 <= width and 0 <= y0 <= y1 <= height and math.isfinite(float(x1))
    if checked.mask is not None:
        assert checked.mask.shape == (height, width) and checked.mask.dtype == np.bool_


_ARRAYS = st.one_of(
    st.none(),
    st.lists(st.lists(FLOATS, max_size=3), max_size=4),
    st.lists(FLOATS, max_size=5),
    st.text(max_size=4),
    st.integers(-5, 5),
    st.builds(lambda shape, v: np.full(shape, v),
              st.lists(st.integers(0, 3), max_size=3).map(tuple), FLOATS),
)


@given(points=_ARRAYS, labels=_ARRAYS, box=_ARRAYS, mask=_ARRAYS,
       oid=st.one_of(st.integers(-3, 2**40), st.just(True), st.floats()),
       hw=st.tuples(st.integers(1, 8), st.integers(1, 8)))
# Found by this test in CI: a ragged nested list as mask made np.asarray raise ValueError.
@example(points=None, labels=None, box=None, mask=[[], [0.0]], oid=0, hw=(1, 1))
@FUZZ
def test_validate_prompt_with_arbitrary_values(points, labels, box, mask, oid, hw):
    from anima_sam2_ros.engine.errors import InvalidInputError
    from anima_sam2_ros.engine.types import Prompt
    from anima_sam2_ros.engine.validation import validate_prompt

    try:
        validate_prompt(Prompt(object_id=oid, points=points, labels=labels, box=box, mask=mask), hw)
    except InvalidInputError as exc:
        assert str(exc)


@given(shape=st.lists(st.integers(0, 6), max_size=4).map(tuple),
       dtype=st.sampled_from(["uint8", "uint16", "float32", "int8", "bool", "object"]))
@FUZZ
def test_validate_image_with_arbitrary_arrays(shape, dtype):
    from anima_sam2_ros.engine.errors import InvalidInputError
    from anima_sam2_ros.engine.validation import validate_image

    arr = np.zeros(shape, dtype=dtype)
    try:
        out = validate_image(arr)
    except InvalidInputError as exc:
        assert str(exc)
        return
    assert out.dtype == np.uint8 and out.ndim in (2, 3) and min(out.shape[:2]) > 0

"""The refinement loop over ``~/segment`` across processes: return low-res logits, send them back.

A real sam2_node process (test-micro, dummy weights) and a client process over DDS, as
test_node_segment.py; the engine-side equality with Meta's ``mask_input`` is
test/engine/test_mask_logits.py.
"""

from __future__ import annotations

import array

import numpy as np
import pytest

from ros_helpers import require_workspace

pytestmark = pytest.mark.ros

NAME = "sam2_logits_test"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    require_workspace()
    from sam2_client import running_node

    with running_node(tmp_path_factory.mktemp("logits"), NAME) as env:
        yield env


def _call(client, prompts, image, return_logits):
    from anima_sam2_msgs.srv import Segment

    req = Segment.Request()
    req.image = image
    req.prompts = list(prompts)
    req.return_mask_logits = return_logits
    return client.call(client.segment, req, 60.0)


def test_logits_round_trip_refines_the_mask(env):
    from sam2_client import box_prompt, camera_image, point_prompt

    client, _ = env
    image = camera_image(160, 120, t=2)
    first = _call(client, [point_prompt(50, 60), box_prompt([25, 35, 75, 85], object_id=7)], image, True)
    assert first.success, first.message
    side = first.mask_logits_size
    assert side > 0 and len(first.mask_logits) == 2 * side * side
    logits = np.asarray(first.mask_logits, dtype=np.float32).reshape(2, side, side)
    assert np.isfinite(logits).all() and np.abs(logits).max() <= 32.0

    # Without the option the answer carries none.
    plain = _call(client, [point_prompt(50, 60)], image, False)
    assert plain.success and plain.mask_logits_size == 0 and len(plain.mask_logits) == 0

    # Send object 1's logits back with a second (background) click, and the logits alone.
    refine = point_prompt(50, 60, object_id=1)
    refine.points.append(type(refine.points[0])(x=120.0, y=20.0, z=0.0))
    refine.labels = [1, 0]
    refine.mask_logits = array.array("f", logits[0].tobytes())
    alone = point_prompt(0, 0, object_id=7)
    alone.points, alone.labels = [], []
    alone.mask_logits = array.array("f", logits[1].tobytes())
    second = _call(client, [refine, alone], image, True)
    assert second.success, second.message
    assert [o.object_id for o in second.result.objects] == [1, 7]
    again = np.asarray(second.mask_logits, dtype=np.float32).reshape(2, side, side)
    assert not np.allclose(again[0], logits[0])  # the logits went in and changed the answer


@pytest.mark.parametrize(("values", "message"), [
    ([0.0] * 10, "n x n"),
    ([float("nan")] * 16, "NaN"),
])
def test_bad_logits_are_refused_and_node_keeps_serving(env, values, message):
    from sam2_client import camera_image, point_prompt

    client, _ = env
    image = camera_image(160, 120, t=1)
    bad = point_prompt(40, 40)
    bad.mask_logits = array.array("f", values)
    res = _call(client, [bad], image, False)
    assert not res.success and message in res.message
    ok = _call(client, [point_prompt(40, 40)], image, False)
    assert ok.success, ok.message

"""Long-run behaviour of sam2_node: memory and threads flat while tracking and over cycles.

Short versions: 300 tracked frames and 20 configure / cleanup cycles (``test/soak_node.py
--frames 10000`` is the long run).
"""

from __future__ import annotations

import pytest

from ros_helpers import require_workspace

pytestmark = pytest.mark.ros

NAME = "sam2_soak_test"
SOAK_FRAMES = 300
# Bounds: the node's RSS may move by allocator noise, not by frames or cycles.
SOAK_RSS_GROWTH_KIB = 6 * 1024  # between 50 % and 100 % of the run
CYCLE_RSS_GROWTH_KIB = 12 * 1024  # between cycle 10 and cycle 20


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    require_workspace()
    from sam2_client import running_node

    with running_node(tmp_path_factory.mktemp("soak"), NAME, overrides={"camera_timeout": 30.0},
                      log_tail=3000) as env:
        yield env


def test_tracking_soak_memory_and_threads_flat(env):
    from soak_node import run_soak

    client, node = env
    samples = run_soak(client, node.proc.pid, SOAK_FRAMES, interval=SOAK_FRAMES // 10)
    assert samples[-1]["frame"] == SOAK_FRAMES
    mid = min(samples, key=lambda s: abs(s["frame"] - SOAK_FRAMES // 2))
    last = samples[-1]
    growth = last["rss_kib"] - mid["rss_kib"]
    print(f"soak: {SOAK_FRAMES} frames in {last['t']} s; RSS {mid['rss_kib']} -> {last['rss_kib']} KiB, "
          f"threads {mid['threads']} -> {last['threads']}")
    assert growth <= SOAK_RSS_GROWTH_KIB, samples
    assert last["threads"] == mid["threads"], samples


def test_configure_cleanup_cycles_memory_and_threads_flat(env):
    from sam2_client import camera_image, point_prompt
    from soak_node import proc_status

    client, node = env
    assert client.transition("deactivate") and client.transition("cleanup")
    marks = {}
    for cycle in range(1, 21):
        assert client.transition("configure"), cycle
        assert client.transition("cleanup"), cycle
        if cycle in (5, 10, 20):
            marks[cycle] = proc_status(node.proc.pid)
    print(f"configure/cleanup cycles: {marks}")
    assert marks[20]["rss_kib"] - marks[10]["rss_kib"] <= CYCLE_RSS_GROWTH_KIB, marks
    assert marks[20]["threads"] == marks[10]["threads"] == marks[5]["threads"], marks
    assert client.transition("configure") and client.transition("activate")
    res = client.segment_call([point_prompt(10, 10)], image=camera_image(64, 48))
    assert res.success, res.message

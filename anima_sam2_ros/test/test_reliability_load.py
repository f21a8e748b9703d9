"""sam2_node under load, across three processes (issue 13): no request lost, nothing starved.

The node (test-micro, ``segment_queue`` 4) runs in one process; ``load_client.py`` in a second
sends bursts of 16, 30 and 50 concurrent segment calls, each with its own image; this process
publishes the camera, runs a track goal and asks ``get_state`` and ``get_parameters`` meanwhile.
Every call must be answered (success, "busy ..." or "timed out ..."), the goal must keep
receiving frames, and every lifecycle / parameter query must be answered. Then the deadline:
requests heavier than ``segment_timeout`` allows are answered "timed out", not left waiting.
Bounded: about 60 s in all.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from ros_helpers import require_workspace, wait_for

pytestmark = pytest.mark.ros

NAME = "sam2_load_test"
QUEUE = 4
TEST_DIR = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    require_workspace()
    from sam2_client import running_node

    overrides = {"segment_queue": QUEUE, "segment_timeout": 10.0, "camera_timeout": 5.0}
    with running_node(tmp_path_factory.mktemp("load"), NAME, overrides=overrides, log_tail=6000) as env:
        yield env


def _load(bursts, size="320x240", prompts=4, timeout=90.0):
    """Run load_client.py in its own process; its per-burst reports."""
    out = subprocess.run([sys.executable, os.path.join(TEST_DIR, "load_client.py"), "--node", f"/{NAME}",
                          "--bursts", ",".join(str(b) for b in bursts), "--size", size,
                          "--prompts", str(prompts), "--timeout", str(timeout)],
                         capture_output=True, text=True, timeout=timeout * len(bursts) + 60)
    reports = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert reports and "error" not in reports[0], (out.stdout, out.stderr[-3000:])
    return reports


class _Prober:
    """Asks get_state and get_parameters in a loop from this process; records each latency."""

    def __init__(self, client):
        self.client = client
        self.latencies = []
        self.failures = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        from rcl_interfaces.srv import GetParameters

        get_params = self.client.node.create_client(GetParameters, f"{self.client.base}/get_parameters")
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                assert self.client.state() == "active"
                req = GetParameters.Request(names=["segment_queue"])
                res = self.client.call(get_params, req, timeout=30.0)
                assert res.values[0].integer_value == QUEUE
                self.latencies.append(time.monotonic() - t0)
            except Exception as exc:  # noqa: BLE001 - recorded, asserted by the test
                self.failures.append(repr(exc))
            self._stop.wait(0.2)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(60)


def test_bursts_are_all_answered_while_a_goal_and_lifecycle_queries_run(env):
    from sam2_client import point_prompt

    client, node = env
    client.start_camera(rate=5.0)
    try:
        handle, feedback = client.send_goal([point_prompt(60, 60, object_id=1)])
        assert handle.accepted
        assert wait_for(lambda: len(feedback) >= 2, 20.0)
        frames_before = len(feedback)
        with _Prober(client) as prober:
            reports = _load([16, 30, 50])
        frames_during = len(feedback) - frames_before
        for r in reports:
            print(f"burst {r['burst']}: answered {r['answered']}/{r['sent']}, success {r['success']}, "
                  f"busy {r['busy']}, timed out {r['timed_out']}, last answer after {r['max_s']} s")
        print(f"get_state + get_parameters: {len(prober.latencies)} answered, max "
              f"{max(prober.latencies, default=0):.3f} s; goal frames during the bursts: {frames_during}")
        for r in reports:
            assert r["answered"] == r["sent"], r
            assert r["success"] + r["busy"] + r["timed_out"] == r["sent"] and not r["other"], r
        assert reports[-1]["busy"] > 0, reports  # 50 at once overflow a queue of 4
        assert sum(r["success"] for r in reports) >= QUEUE
        busy_msgs = [e for r in reports for e in r["examples"] if e.startswith("busy")]
        assert busy_msgs and all(f"segment_queue = {QUEUE}" in e for e in busy_msgs)
        assert not prober.failures, prober.failures[:3]
        assert len(prober.latencies) >= 3
        # Not starved: a node whose executor threads all wait on inference answered these after
        # 10-20 s (issue 13); the 1 s goal under 32 hiera-tiny calls is node_bench --load's number.
        assert max(prober.latencies) < 5.0, sorted(prober.latencies)[-5:]
        assert frames_during >= 1  # the goal kept receiving frames
        handle.cancel_goal_async()
        status, result = client.result(handle)
        assert result.reason == "canceled", result.reason
        assert node.proc.poll() is None
        # Refusals were logged throttled, not once per call.
        busy_total = sum(r["busy"] for r in reports)
        assert node.log().count("segment refused") < busy_total
    finally:
        client.stop_camera()


def test_requests_past_the_deadline_are_answered_timed_out(env):
    client, node = env
    # A short deadline takes a reconfigure (parameters are read at configure).
    assert client.transition("deactivate") and client.transition("cleanup")
    assert client.set_param("segment_timeout", 0.3)
    assert client.transition("configure") and client.transition("activate")
    try:
        # 8 requests of 16 masks at 1024x768 each: the queue (4) holds some, and those waiting
        # behind the others pass the 0.3 s deadline.
        (report,) = _load([8], size="1024x768", prompts=16)
        print(report)
        assert report["answered"] == report["sent"] == 8, report
        assert report["timed_out"] >= 1, report
        assert report["success"] + report["busy"] + report["timed_out"] == 8 and not report["other"], report
        assert all("segment_timeout = 0.3 s" in e for e in report["examples"] if e.startswith("timed out"))
    finally:
        assert client.transition("deactivate") and client.transition("cleanup")
        assert client.set_param("segment_timeout", 10.0)
        assert client.transition("configure") and client.transition("activate")
    assert node.proc.poll() is None

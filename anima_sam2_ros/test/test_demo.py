"""`python -m anima_sam2_ros.demo` end to end (camera + node + client processes), a few frames."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ros_helpers import require_workspace

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def test_demo_writes_overlays_and_summary(tmp_path):
    require_workspace()
    out = tmp_path / "demo_output"
    frames = 3
    cmd = [sys.executable, "-m", "anima_sam2_ros.demo", "--out", str(out), "--frames", str(frames),
           "--width", "160", "--height", "120", "--rate", "5"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=420, cwd=tmp_path)
    log = proc.stdout + proc.stderr
    node_log = (out / "node.log").read_text(errors="replace") if (out / "node.log").exists() else ""
    assert proc.returncode == 0, log + "\n--- node.log ---\n" + node_log[-4000:]
    assert "MEANINGLESS" in proc.stdout  # dummy weights are announced loudly
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ok"] is True and summary["dummy_weights"] is True
    assert summary["segment"]["inference_ms"] > 0 and summary["segment"]["objects"]
    track = summary["track"]
    assert track["status"] == "succeeded" and track["frames_processed"] == frames
    assert track["feedback_messages"] == frames and track["latency_ms"]["mean"] > 0
    assert track["dropped_frames_estimate"] >= 0
    assert summary["exit_codes"] == {"camera_source": 0, "sam2_node": 0}
    pngs = sorted(out.glob("overlay_*.png"))
    assert pngs and [p.name for p in pngs] == summary["overlay_pngs"]
    assert summary["overlays_matching_track_feedback"] >= 1
    import cv2

    img = cv2.imread(str(pngs[-1]))
    assert img.shape == (120, 160, 3)
    # Every overlay says on the image that the weights are dummy: the red banner strip on top.
    for png in pngs:
        top = cv2.imread(str(png))[1:4]
        assert (top == (0, 0, 200)).all(axis=2).mean() > 0.9, png.name
    text = (out / "summary.txt").read_text()
    assert "DUMMY" in text and "latency" in text and "fps" in text
    # The summary says in words what limited the frame rate.
    assert "What limited the frame rate" in text
    assert ("INFERENCE-BOUND" in text) != ("CAMERA-BOUND" in text)
    assert summary["explanation"] and summary["explanation"][0].startswith("What limited")
    # Start-up progress: numbered stages with elapsed time; the last lines say where the images are.
    for n in range(1, 5):
        assert f"[{n}/4]" in proc.stdout
    tail = proc.stdout.strip().splitlines()[-2:]
    assert tail[0].startswith(f"Overlay images ({len(pngs)}): {out}/overlay_*.png"), tail
    assert str(out / "summary.txt") in tail[1]

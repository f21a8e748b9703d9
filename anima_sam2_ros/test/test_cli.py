"""``anima-sam2``: help and argument errors offline, then segment / track against a live sam2_node."""

from __future__ import annotations

import json
import pathlib
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from ros_helpers import require_workspace, spawn, stop, wait_for

pytestmark = pytest.mark.ros

NODE = "sam2_cli_test"
CAM_NS = "/anima_cli_cam"


def _cli_script() -> str:
    from ament_index_python.packages import get_package_prefix

    path = pathlib.Path(get_package_prefix("anima_sam2_ros")) / "lib" / "anima_sam2_ros" / "anima-sam2"
    assert path.is_file(), f"{path} is not installed"
    return str(path)


def _run(args, timeout=90.0, **kwargs):
    return subprocess.run([sys.executable, _cli_script(), *args], capture_output=True, text=True,
                          timeout=timeout, **kwargs)


def test_help_is_fast_and_lists_commands():
    require_workspace()
    proc = _run(["--help"], timeout=60)
    assert proc.returncode == 0, proc.stderr
    for command in ("segment", "track", "quantize", "evaluate", "bench"):
        assert command in proc.stdout
    # --help imports neither rclpy nor torch.
    code = ("import sys; from anima_sam2_ros.cli import main; rc = main(['--help']); "
            "print('HEAVY', sorted(m for m in ('rclpy', 'torch', 'transformers') if m in sys.modules)); "
            "sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "HEAVY []" in proc.stdout, proc.stdout + proc.stderr
    for sub in ("segment", "track"):
        proc = _run([sub, "--help"], timeout=60)
        assert proc.returncode == 0 and "--point" in proc.stdout and "--node" in proc.stdout


@pytest.mark.parametrize("argv,message", [
    (["segment", "--point", "1"], "expected 2 or 3 numbers"),
    (["segment", "--point", "1,2,7"], "label must be 1"),
    (["segment", "--point", "a,b"], "expected numbers"),
    (["segment", "--box", "50,50,10,10"], "x_min < x_max"),
    (["segment"], "no prompt"),
    (["segment", "--point", "1,2", "--box", "0,0,5,5", "--box", "1,1,6,6"], "more than one --box"),
    (["segment", "--object", "3"], "has no --point"),
    (["segment", "--object", "-1", "--point", "1,2"], "object id"),
    (["segment", "--point", "1,2", "--overlay", "x.png"], "--overlay needs --image-file"),
    (["track", "--point", "1,2", "--frames", "-3"], "must be >= 0"),
    (["track", "--point", "1,2", "--min-score", "2"], "must be in [0, 1]"),
    (["frobnicate"], "invalid choice"),
])
def test_argument_errors(argv, message, capsys):
    require_workspace()
    from anima_sam2_ros import cli

    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err


def test_prompt_grouping():
    require_workspace()
    from anima_sam2_ros import cli

    parser = cli.build_parser()
    args = parser.parse_args(["segment", "--point", "10,20", "--point", "30,40,0", "--object", "7",
                              "--box", "1,2,3,4", "--object", "0", "--point", "5,6"])
    objs = cli.group_prompts(args.prompt_items)
    assert [o["object_id"] for o in objs] == [0, 7, 0]
    assert objs[0]["points"] == [(10.0, 20.0), (30.0, 40.0)] and objs[0]["labels"] == [1, 0]
    assert objs[1]["box"] == (1.0, 2.0, 3.0, 4.0) and not objs[1]["points"]
    assert objs[2]["points"] == [(5.0, 6.0)]
    with pytest.raises(ValueError):
        cli.group_prompts([("object", 4), ("point", (1.0, 2.0, 1)), ("object", 4), ("point", (1.0, 2.0, 1))])


def test_delegated_commands_parse_their_own_arguments(capsys):
    require_workspace()
    from anima_sam2_ros import cli

    assert cli.main(["quantize", "--help"]) == 0
    assert "--recipe" in capsys.readouterr().out
    assert cli.main(["evaluate", "--help"]) == 0
    assert cli.main(["quantize", "--no-such-option"]) == 2


def test_node_not_running_is_reported():
    require_workspace()
    proc = _run(["segment", "--node", "/no_such_node", "--point", "1,2", "--wait", "1"], timeout=60)
    assert proc.returncode == 3
    assert "not available" in proc.stderr


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """sam2_node (test-micro, dummy weights) + camera_source, both child processes."""
    require_workspace()
    from sam2_client import start_node

    tmp = tmp_path_factory.mktemp("cli")
    node = start_node(tmp, NODE, overrides={"topics.image": f"{CAM_NS}/image_raw",
                                            "topics.camera_info": f"{CAM_NS}/camera_info"})
    camera = spawn(["-m", "anima_sam2_ros.node.camera_source", "--ros-args", "-r", f"__ns:={CAM_NS}",
                    "-p", "width:=96", "-p", "height:=64", "-p", "rate:=5.0"])
    try:
        yield tmp, node
    finally:
        stop(camera)
        node.stop()


def _segment_until_ready(args, node, timeout=150.0):
    """Run `segment` until the node has loaded its model and answers (start-up takes a while)."""
    deadline = time.monotonic() + timeout
    proc = None
    while time.monotonic() < deadline:
        assert node.proc.poll() is None, node.log()[-3000:]
        proc = _run(args)
        if proc.returncode == 0:
            return proc
        time.sleep(1.0)
    raise AssertionError(f"segment never succeeded: {proc.stdout}{proc.stderr}\n{node.log()[-3000:]}")


def test_segment_with_image_file(live):
    tmp, node = live
    from anima_sam2_ros.node.camera_source import SyntheticScene

    image = SyntheticScene(96, 64).render(0)
    npy = tmp / "frame.npy"
    np.save(npy, image)
    labels, overlay = tmp / "labels.png", tmp / "overlay.png"
    proc = _segment_until_ready(["segment", "--node", f"/{NODE}", "--image-file", str(npy),
                                 "--point", "48,32", "--object", "5", "--box", "2,2,30,30",
                                 "--out", str(labels), "--overlay", str(overlay), "--json", "--wait", "5"],
                                node)
    text = proc.stdout
    summary = json.loads(text[text.index("{"): text.rindex("}") + 1])
    assert summary["success"] is True and summary["inference_ms"] > 0
    ids = [o["object_id"] for o in summary["objects"]]
    assert len(ids) == 2 and ids[1] == 5 and ids[0] not in (0, 5)
    import cv2

    lab = cv2.imread(str(labels), cv2.IMREAD_UNCHANGED)
    assert lab.shape == (64, 96) and set(np.unique(lab)) <= {0, *ids}
    ov = cv2.imread(str(overlay))
    assert ov.shape == (64, 96, 3)


def test_segment_latest_frame_and_track(live):
    tmp, node = live
    proc = _segment_until_ready(["segment", "--node", f"/{NODE}", "--point", "48,32", "--wait", "5"], node)
    assert "segment ok" in proc.stdout and "object" in proc.stdout

    proc = _run(["track", "--node", f"/{NODE}", "--point", "48,32", "--frames", "2", "--json"], timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr + node.log()[-3000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    feedback = [d for d in lines if "frame_index" in d]
    result = [d["result"] for d in lines if "result" in d][0]
    assert result["status"] == "succeeded" and result["reason"] == "max_frames"
    assert result["frames_processed"] == 2
    assert len(feedback) == 2 and all(len(d["objects"]) == 1 and d["stamp"] > 0 for d in feedback)


def test_track_ctrl_c_cancels_the_goal(live):
    tmp, node = live
    _segment_until_ready(["segment", "--node", f"/{NODE}", "--point", "48,32", "--wait", "5"], node)
    cmd = [sys.executable, _cli_script(), "track", "--node", f"/{NODE}", "--point", "48,32"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        assert wait_for(lambda: any(line.startswith("frame") for line in lines), 60.0), lines
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
        reader.join(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    out = "".join(lines)
    assert proc.returncode == 0, out + proc.stderr.read()
    assert "goal canceled" in out and "reason 'canceled'" in out

"""The README's "Using the node", "Prompting" and "Pipelines" commands, run as written (real ROS 2 tools).

Each command is taken from the README (``readme_commands``), so the text and the test cannot
drift apart; the last test checks that every command of the three sections ran. Where a README line
needs real weights, the README says so on that line and the test appends the substitution it
names (``model:=test-micro weights:=dummy``). ``ros2 launch`` runs in a subprocess and the
lifecycle is driven by the launch files' own events; the assertions are on what the node answers.

These tests need the real ``ros2`` CLI and launch (ros2cli, launch_ros): ``make test`` installs
them from ../shared/ros2-tools when present; a robot's system ROS 2 has them.
"""

from __future__ import annotations

import os
import pathlib
import re
import shlex
import shutil
import signal
import subprocess
import time
import warnings
from typing import List, Optional

import pytest
import readme_commands
from readme_commands import commands

from ros_helpers import require_workspace, wait_for

pytestmark = [pytest.mark.ros, pytest.mark.tools, pytest.mark.slow]

SECTIONS = ("Using the node", "Prompting", "Pipelines")
#: Appended to a README line that needs real weights (the README line says so).
NO_WEIGHTS_LAUNCH = " model:=test-micro weights:=dummy"
NO_WEIGHTS_RUN = " -p model:=test-micro -p weights:=dummy"
#: The params file of the README's lines, relative to the workspace root.
INSTALLED_CONFIG = "install/anima_sam2_ros/share/anima_sam2_ros/config/sam2.yaml"
_ran: set = set()


def _tools_or_skip() -> str:
    ros2 = shutil.which("ros2")
    try:
        import launch_ros  # noqa: F401
    except ImportError:
        ros2 = None
    if ros2 is None:
        pytest.skip("needs the real ros2 CLI and launch (ros2cli, launch_ros), not installed here")
    return ros2


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> pathlib.Path:
    """A colcon workspace root (``install/`` is relative to it in the README) of this lane.

    The Jazzy lane installs into ``install-jazzy/``: a workspace root whose ``install`` is this
    lane's install space, so ``install/anima_sam2_ros/...`` in a README line is the lane's own.
    """
    require_workspace()
    _tools_or_skip()
    from ament_index_python.packages import get_package_prefix

    install = pathlib.Path(get_package_prefix("anima_sam2_ros")).parent
    root = tmp_path_factory.mktemp("ws")
    (root / "install").symlink_to(install, target_is_directory=True)
    assert (root / INSTALLED_CONFIG).is_file()
    yield root
    subprocess.run(["ros2", "daemon", "stop"], capture_output=True, timeout=30)


def readme(prefix: str, section: Optional[str] = None) -> str:
    """The one README command (of ``section``, else of all three) starting with ``prefix``; marked as run."""
    found = [c for s in ((section,) if section else SECTIONS) for c in commands(s) if c.startswith(prefix)]
    assert len(found) == 1, f"README: {len(found)} commands start with {prefix!r}"
    _ran.add(found[0])
    return found[0]


def service_call(cmd: str, cwd: pathlib.Path) -> Optional[str]:
    """Run a README ``ros2 service call`` line; None where this lane's ros2cli cannot run it.

    ../shared/ros2-tools holds the Kilted line of ros2cli, whose ``service call`` does
    ``with rclpy.init():`` (Kilted's rclpy only). In the Jazzy venv lane that verb cannot work; a
    robot's Jazzy ros2cli has its own ``service call``. The Segment service itself is tested on
    both lanes by test_node_segment.py; here the gap is said in the warnings summary.
    """
    import rclpy

    if not hasattr(rclpy, "InitContextManager"):
        out = run(cmd, cwd, ok=False)
        if "does not support the context manager protocol" in out:
            warnings.warn("`ros2 service call` not run: this lane's ros2cli (Kilted line from "
                          "../shared/ros2-tools) needs Kilted's rclpy", stacklevel=2)
            return None
        return out
    return run(cmd, cwd)


def run(cmd: str, cwd: pathlib.Path, timeout: float = 120.0, ok: bool = True) -> str:
    proc = subprocess.run(shlex.split(cmd), cwd=cwd, capture_output=True, text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    if ok:
        assert proc.returncode == 0, f"`{cmd}` exited {proc.returncode}:\n{out[-3000:]}"
    return out


class Background:
    """A long-running command (ros2 launch / ros2 run) in its own process group, log to a file."""

    def __init__(self, cmd: str, cwd: pathlib.Path, log: pathlib.Path) -> None:
        self.cmd = cmd
        self.log = log
        self._file = open(log, "w")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(shlex.split(cmd), cwd=cwd, stdout=self._file,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 30.0) -> int:
        """Ctrl-C (SIGINT to the group, as a terminal sends it); the whole group must exit."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
                raise AssertionError(f"`{self.cmd}` ignored Ctrl-C for {timeout} s:\n"
                                     f"{self.output()[-3000:]}") from None
        self._file.close()
        return self.proc.returncode


def wait_state(ws: pathlib.Path, want: str, bg: Optional[Background], timeout: float = 120.0) -> str:
    """Poll ``ros2 lifecycle get /sam2_node`` until it prints ``want``."""
    deadline = time.monotonic() + timeout
    out = ""
    while time.monotonic() < deadline:
        if bg is not None and bg.proc.poll() is not None:
            raise AssertionError(f"`{bg.cmd}` exited {bg.proc.returncode}:\n{bg.output()[-3000:]}")
        out = run("ros2 lifecycle get /sam2_node", ws, timeout=60, ok=False)
        if out.startswith(want):
            return out
        time.sleep(1.0)
    raise AssertionError(f"/sam2_node not {want} after {timeout} s (last: {out!r})"
                         + (f"\n{bg.output()[-3000:]}" if bg else ""))


def _graceful(bg: Background) -> None:
    code = bg.stop()
    assert code == 0, f"`{bg.cmd}` exited {code} on Ctrl-C:\n{bg.output()[-3000:]}"
    text = bg.output()
    assert "Traceback" not in text, text[-3000:]


def test_sam2_launch_reaches_active_and_answers(ws, tmp_path):
    """``sam2.launch.py`` with the README's camera remaps, a camera publishing there."""
    line = readme("ros2 launch anima_sam2_ros sam2.launch.py", "Using the node")
    assert "model:=test-micro weights:=dummy" in _comment_above(line), "README must name the substitution"
    node = Background(line + NO_WEIGHTS_LAUNCH, ws, tmp_path / "launch.log")
    camera = Background("ros2 run anima_sam2_ros camera_source --ros-args -r __ns:=/camera/color",
                        ws, tmp_path / "camera.log")
    try:
        assert wait_state(ws, "active [3]", node).startswith("active [3]")
        out = service_call(readme("ros2 service call /sam2_node/segment"), ws)
        assert out is None or "success=True" in out, out[-2000:]
        want = {"/sam2_node/masks", "/sam2_node/overlay", "/sam2_node/label_image", "/sam2_node/markers"}
        deadline = time.monotonic() + 30
        while not want <= set(topics := run("ros2 topic list", ws).split()) and time.monotonic() < deadline:
            time.sleep(1.0)  # the ros2 daemon's graph catches up with discovery
        assert want <= set(topics), topics
    finally:
        camera.stop()
        _graceful(node)


def test_demo_launch_without_rviz_and_every_prompting_command(ws, tmp_path):
    """``sam2_demo.launch.py`` (no rviz2 here): camera + node, then the "Prompting" lines."""
    demo = Background(readme("ros2 launch anima_sam2_ros sam2_demo.launch.py"), ws, tmp_path / "demo.log")
    try:
        wait_state(ws, "active [3]", demo)
        assert "rviz2 is not installed" in demo.output()
        out = run(readme("ros2 run anima_sam2_ros anima-sam2 segment --node /sam2_node --point 320,240"),
                  tmp_path)
        assert "segment ok" in out, out
        assert (tmp_path / "mask.png").stat().st_size > 0
        out = run(readme("ros2 run anima_sam2_ros anima-sam2 segment --node /sam2_node --box"), tmp_path)
        assert "segment ok" in out and "object   2:" in out, out
        run(readme("ros2 run anima_sam2_ros anima-sam2 track"), tmp_path, timeout=180)
        out = service_call(readme("ros2 service call /sam2_node/segment"), ws)
        assert out is None or "success=True" in out, out[-2000:]
        # ~/masks is published for tracked frames: listen before the goal starts.
        echo = Background(readme("ros2 topic echo --once /sam2_node/masks"), ws, tmp_path / "echo.log")
        time.sleep(3.0)  # the subscription is matched before the first tracked frame
        out = run(readme("ros2 action send_goal --feedback /sam2_node/track"), ws, timeout=180)
        assert "Goal accepted" in out and "Feedback:" in out, out[-2000:]
        assert "Goal finished with status: SUCCEEDED" in out or "Goal finished with status: ABORTED" in out, \
            out[-2000:]
        echo.proc.wait(60)
        echo.stop()
        assert "frame_id: camera_optical_frame" in echo.output(), echo.output()
        _ctrl_c_on_send_goal(ws, tmp_path, demo)
    finally:
        _graceful(demo)


def _ctrl_c_on_send_goal(ws: pathlib.Path, tmp_path: pathlib.Path, node: Background) -> None:
    """What the README says of Ctrl-C on ``ros2 action send_goal``.

    ros2cli sends the cancel request, then (mostly) prints its exception; the node cancels the goal (or,
    had the request been lost, ends it ``client_gone`` after ``client_lost_timeout``). The README's
    goal with ``max_frames: 0`` (until cancelled): it cannot end on its own first.
    """
    line = readme("ros2 action send_goal --feedback /sam2_node/track")
    assert "max_frames: 100" in line
    ended = re.compile(r"track goal ended: (canceled|client_gone) after \d+ frame")
    ended_before = len(ended.findall(node.output()))
    goal = Background(line.replace("max_frames: 100", "max_frames: 0"), ws, tmp_path / "send_goal.log")
    wait_for(lambda: "Feedback:" in goal.output() or goal.proc.poll() is not None, 120.0, period=0.5)
    assert "Feedback:" in goal.output(), goal.output()[-2000:]
    goal.stop()
    assert "Canceling goal..." in goal.output(), goal.output()[-2000:]  # ros2cli sent the cancel
    # Then ros2cli races its own shutdown: `Exception while canceling goal: None` mostly, not always.
    # client_gone would come client_lost_timeout (10 s) after the client left the graph.
    wait_for(lambda: len(ended.findall(node.output())) > ended_before, 60.0, period=1.0)
    reasons = ended.findall(node.output())[ended_before:]
    assert reasons, node.output()[-3000:]
    print(f"Ctrl-C on ros2 action send_goal: the goal ended {reasons[0]}")
    text = readme_commands.README.read_text()  # what it says of this
    assert reasons[0] == "client_gone" or (
        "Exception while canceling goal: None" in text and f"`track goal ended: {reasons[0]}`" in text)


def test_ros2_run_node_with_autostart_and_lifecycle_commands(ws, tmp_path):
    """``ros2 run … -p autostart:=true`` activates itself.

    With autostart off, the README's ``ros2 lifecycle set`` lines configure and activate it.
    """
    line = readme("ros2 run anima_sam2_ros sam2_node", "Using the node")
    assert "-p model:=test-micro -p weights:=dummy" in _comment_above(line)
    node = Background(line + NO_WEIGHTS_RUN, ws, tmp_path / "autostart.log")
    try:
        wait_state(ws, "active [3]", node)
    finally:
        _graceful(node)

    manual = line.replace("-p autostart:=true", "-p autostart:=false")
    assert manual != line
    node = Background(manual + NO_WEIGHTS_RUN, ws, tmp_path / "manual.log")
    try:
        wait_state(ws, "unconfigured [1]", node)
        assert "Transitioning successful" in run(readme("ros2 lifecycle set /sam2_node configure"), ws)
        assert "Transitioning successful" in run(readme("ros2 lifecycle set /sam2_node activate"), ws)
        assert run(readme("ros2 lifecycle get /sam2_node"), ws).startswith("active [3]")
    finally:
        _graceful(node)


def test_pipelines_depth_camera_click_and_3d_output(ws, tmp_path):
    """"Pipelines": the perception node, the synthetic RGB-D camera, a click, ``~/detections_3d``.

    Then the same node from the launch file with a params file (``my_sam2.yaml``).
    """
    import yaml

    line = readme("ros2 run anima_sam2_ros sam2_node", "Pipelines")
    assert "-p model:=test-micro -p weights:=dummy" in _comment_above(line), "README: name the substitution"
    camera_line = readme("ros2 run anima_sam2_ros camera_source", "Pipelines")
    camera = Background(camera_line, ws, tmp_path / "cam.log")
    node = Background(line + NO_WEIGHTS_RUN, ws, tmp_path / "pipeline.log")
    try:
        wait_state(ws, "active [3]", node)
        click = readme("ros2 topic pub --once /clicked_point", "Pipelines")
        deadline = time.monotonic() + 60
        while "new object" not in node.output() and time.monotonic() < deadline:
            run(click, ws, timeout=60)  # a click before the node holds a frame is refused: again
            time.sleep(1.0)
        assert "click at pixel (320.0, 240.0): new object" in node.output(), node.output()[-3000:]
        # Published for the tracked frames once paired with the depth image of the same stamp.
        out = run(readme("ros2 topic echo --once /sam2_node/detections_3d", "Pipelines"), ws, timeout=90)
        assert out.split() == ["camera_optical_frame", "---"], out[-2000:]
        assert "no 3D output" not in node.output(), node.output()[-3000:]
    finally:
        _graceful(node)

    params = yaml.safe_load((ws / INSTALLED_CONFIG).read_text())
    params["/**"]["ros__parameters"]["topics"].update({
        "detections": "/yolo/detections", "depth": "/camera/aligned_depth_to_color/image_raw",
        "clicked_point": "/clicked_point"})
    (ws / "my_sam2.yaml").write_text(yaml.safe_dump(params))
    launch = readme("ros2 launch anima_sam2_ros sam2.launch.py", "Pipelines")
    assert "model:=test-micro weights:=dummy" in _comment_above(launch)
    node = Background(launch + NO_WEIGHTS_LAUNCH, ws, tmp_path / "pipeline_launch.log")
    try:
        wait_state(ws, "active [3]", node)
        params_out = run("ros2 param get /sam2_node topics.depth", ws)
        assert "/camera/aligned_depth_to_color/image_raw" in params_out, params_out
    finally:
        camera.stop()
        _graceful(node)


def test_every_readme_command_of_the_three_sections_ran():
    _tools_or_skip()
    every = {c for s in SECTIONS for c in commands(s)}
    assert _ran == every, f"README commands no test ran: {sorted(every - _ran)}"


def _comment_above(command: str) -> str:
    """The README lines (comments) in the three lines above the command's first line."""
    lines: List[str] = readme_commands.README.read_text().splitlines()
    head = command.split("  ")[0].strip()  # the first physical line (continuations join with spaces)
    for i, text in enumerate(lines):
        if text.rstrip(" \\").strip() == head:
            return "\n".join(lines[max(0, i - 3):i])
    raise AssertionError(f"{command!r} not found in the README")


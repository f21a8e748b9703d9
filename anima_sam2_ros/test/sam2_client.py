"""Test-side helpers for sam2_node: start the node as a child process, talk to it over DDS.

``start_node`` runs ``python -m anima_sam2_ros.node.sam2_node`` with the installed
``config/sam2.yaml`` plus overrides (tiny ``test-micro`` model with dummy weights on the CPU by
default), its output captured in a log file. ``Sam2Client`` is an in-process rclpy node in its own
``Context`` with a spinning ``MultiThreadedExecutor`` thread: lifecycle, parameter, segment and
track clients, a camera publisher and recorders for the output topics.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np

NODE = "sam2_node"
TINY = {"model": "test-micro", "weights": "dummy", "precision": "fp32", "device": "cpu",
        "output.diagnostics_period": 0.5}


def installed_config() -> pathlib.Path:
    """The ``config/sam2.yaml`` installed with the package (share/anima_sam2_ros/config)."""
    from ament_index_python.packages import get_package_share_directory

    path = pathlib.Path(get_package_share_directory("anima_sam2_ros")) / "config" / "sam2.yaml"
    assert path.is_file(), f"installed config not found at {path}"
    return path


class NodeProcess:
    """A running sam2_node child process and its log file."""

    def __init__(self, proc: subprocess.Popen, log_path: pathlib.Path, name: str) -> None:
        self.proc = proc
        self.log_path = log_path
        self.name = name

    def log(self) -> str:
        """Everything the node printed so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 30.0) -> int:
        """SIGINT, then kill; returns the exit code.

        30 s: the node's release may wait its drain timeouts (5 s each, three of them) when a
        callback is still finishing; one Jazzy run took longer than the former 15 s.
        """
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                # PYTHONFAULTHANDLER: SIGABRT makes the node print every thread's stack to its log,
                # so a node that does not exit says where it waits.
                self.proc.send_signal(signal.SIGABRT)
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(5)
                print(f"{self.name} did not exit within {timeout:.0f} s of SIGINT; its stacks:\n"
                      f"{self.log()[-20000:]}")
        return self.proc.returncode


def start_node(tmp_dir: pathlib.Path, name: str = NODE, autostart: bool = True,
               overrides: Optional[Dict[str, Any]] = None) -> NodeProcess:
    """Start sam2_node (tiny model) with the installed params file and ``-p`` overrides."""
    values = dict(TINY)
    values["autostart"] = autostart
    values.update(overrides or {})
    args = ["-m", "anima_sam2_ros.node.sam2_node", "--ros-args", "--params-file", str(installed_config()),
            "-r", f"__node:={name}"]
    for key, value in values.items():
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, str):
            value = f"'{value}'" if value == "" else value
        args += ["-p", f"{key}:={value}"]
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONFAULTHANDLER"] = "1"  # stacks on SIGABRT (NodeProcess.stop) and on a crash
    env.setdefault("OMP_NUM_THREADS", "1")
    log_path = pathlib.Path(tmp_dir) / f"{name}.log"
    log = open(log_path, "wb")  # noqa: SIM115 - the child owns it
    proc = subprocess.Popen([sys.executable, *args], env=env, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    return NodeProcess(proc, log_path, name)


def camera_image(width: int = 160, height: int = 120, t: int = 0, encoding: str = "rgb8") -> Any:
    """A ``sensor_msgs/Image``: grey background with a bright square moving right with ``t``."""
    from sensor_msgs.msg import Image

    arr = np.full((height, width, 3), 40, dtype=np.uint8)
    x0 = 20 + 3 * t
    arr[40:80, x0:x0 + 40] = (220, 60, 60)
    msg = Image()
    msg.header.stamp.sec = 1000 + t
    msg.header.stamp.nanosec = 12345
    msg.header.frame_id = "test_camera"
    msg.height, msg.width = height, width
    if encoding == "mono8":
        arr = arr[:, :, 0].copy()
    msg.encoding = encoding
    msg.step = width * (arr.shape[2] if arr.ndim == 3 else 1)
    import array

    msg.data = array.array("B", arr.tobytes())
    return msg


def point_prompt(x: float, y: float, object_id: int = 0, label: int = 1) -> Any:
    """A ``Prompt`` with one point."""
    from geometry_msgs.msg import Point

    from anima_sam2_msgs.msg import Prompt

    p = Prompt()
    p.object_id = object_id
    p.points = [Point(x=float(x), y=float(y), z=0.0)]
    p.labels = [label]
    return p


def box_prompt(box, object_id: int = 0) -> Any:
    """A ``Prompt`` with a box."""
    from anima_sam2_msgs.msg import Prompt

    p = Prompt()
    p.object_id = object_id
    p.box = [float(v) for v in box]
    return p


class Sam2Client:
    """An rclpy node in its own context, spinning in a thread, that talks to one sam2_node."""

    def __init__(self, node_name: str = NODE, camera_reliable: bool = False) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from lifecycle_msgs.srv import ChangeState, GetState
        from rcl_interfaces.srv import ListParameters, SetParameters
        from rclpy.action import ActionClient
        from rclpy.executors import MultiThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image
        from visualization_msgs.msg import MarkerArray

        from anima_sam2_msgs.action import Track
        from anima_sam2_msgs.msg import ObjectMaskArray
        from anima_sam2_msgs.srv import Segment

        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx)
        self.node = rclpy.create_node(f"test_client_{os.getpid()}", context=self.ctx)
        base = f"/{node_name}"
        self.base = base
        n = self.node
        self.change_state = n.create_client(ChangeState, f"{base}/change_state")
        self.get_state = n.create_client(GetState, f"{base}/get_state")
        self.set_params = n.create_client(SetParameters, f"{base}/set_parameters")
        self.list_params = n.create_client(ListParameters, f"{base}/list_parameters")
        self.segment = n.create_client(Segment, f"{base}/segment")
        self.track = ActionClient(n, Track, f"{base}/track")
        cam_qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE if camera_reliable
                             else ReliabilityPolicy.BEST_EFFORT)
        self.camera = n.create_publisher(Image, "/image", cam_qos)
        self.compressed = n.create_publisher(CompressedImage, "/image/compressed", cam_qos)
        self.camera_info = n.create_publisher(CameraInfo, "/camera_info", cam_qos)
        out_qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self._lock = threading.Lock()
        self.received: Dict[str, List[Any]] = {k: [] for k in ("masks", "overlay", "label_image",
                                                               "diagnostics", "camera_info", "markers")}
        n.create_subscription(ObjectMaskArray, f"{base}/masks", self._recorder("masks"), out_qos)
        n.create_subscription(Image, f"{base}/overlay", self._recorder("overlay"), out_qos)
        n.create_subscription(Image, f"{base}/label_image", self._recorder("label_image"), out_qos)
        n.create_subscription(DiagnosticArray, "/diagnostics", self._recorder("diagnostics"), out_qos)
        n.create_subscription(CameraInfo, f"{base}/camera_info", self._recorder("camera_info"), out_qos)
        n.create_subscription(MarkerArray, f"{base}/markers", self._recorder("markers"), out_qos)
        self.executor = MultiThreadedExecutor(num_threads=2, context=self.ctx)
        self.executor.add_node(n)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()
        self._cam_stop = threading.Event()
        self._cam_thread: Optional[threading.Thread] = None
        self.frames_sent = 0

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except Exception:  # noqa: BLE001 - context shut down
            pass

    def _recorder(self, key: str):
        def record(msg: Any) -> None:
            with self._lock:
                self.received[key].append(msg)
        return record

    def messages(self, key: str) -> List[Any]:
        """Messages received so far on an output topic."""
        with self._lock:
            return list(self.received[key])

    def clear(self) -> None:
        """Forget received messages."""
        with self._lock:
            for v in self.received.values():
                v.clear()

    # ---------------------------------------------------------------- calls
    @staticmethod
    def wait_future(future: Any, timeout: float) -> Any:
        """Wait for an rclpy future completed by the spinning thread."""
        deadline = time.monotonic() + timeout
        while not future.done():
            if time.monotonic() > deadline:
                raise TimeoutError(f"no answer within {timeout} s")
            time.sleep(0.01)
        return future.result()

    def call(self, client: Any, request: Any, timeout: float = 30.0) -> Any:
        """Call a service (waiting for it first)."""
        assert client.wait_for_service(timeout_sec=timeout), f"service {client.srv_name} not available"
        return self.wait_future(client.call_async(request), timeout)

    def state(self) -> str:
        """The node's lifecycle state label."""
        from lifecycle_msgs.srv import GetState

        # The first request right after discovery can be answered to a response reader the node
        # has not matched yet (DDS discovery is not symmetric): that answer is lost, so a
        # read-only request is sent again (seen once on a loaded machine).
        for attempt in range(3):
            try:
                return self.call(self.get_state, GetState.Request(), timeout=10.0).current_state.label
            except TimeoutError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def transition(self, label: str, timeout: float = 60.0) -> bool:
        """Request a transition by label (configure, activate, ...), as ``ros2 lifecycle set``."""
        from lifecycle_msgs.msg import Transition
        from lifecycle_msgs.srv import ChangeState

        ids = {"configure": Transition.TRANSITION_CONFIGURE, "activate": Transition.TRANSITION_ACTIVATE,
               "deactivate": Transition.TRANSITION_DEACTIVATE, "cleanup": Transition.TRANSITION_CLEANUP,
               "shutdown": Transition.TRANSITION_UNCONFIGURED_SHUTDOWN}
        req = ChangeState.Request()
        req.transition.id = ids[label]
        return bool(self.call(self.change_state, req, timeout).success)

    def set_param(self, name: str, value: Any) -> bool:
        """Set one parameter on the node."""
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter

        req = SetParameters.Request()
        req.parameters = [Parameter(name, value=value).to_parameter_msg()]
        return bool(self.call(self.set_params, req).results[0].successful)

    def wait_active(self, timeout: float = 90.0) -> None:
        """Wait until the node reports the active state."""
        assert self.get_state.wait_for_service(timeout_sec=timeout), "node did not come up"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.state() == "active":
                return
            time.sleep(0.2)
        raise AssertionError(f"node not active after {timeout} s (state {self.state()})")

    def segment_call(self, prompts: List[Any], image: Any = None, multimask: bool = False,
                     timeout: float = 60.0, camera: str = "") -> Any:
        """Call ``~/segment``."""
        from anima_sam2_msgs.srv import Segment

        req = Segment.Request()
        req.camera = camera
        if image is not None:
            req.image = image
        req.prompts = list(prompts)
        req.multimask_output = multimask
        return self.call(self.segment, req, timeout)

    def send_goal(self, prompts: List[Any], max_frames: int = 0, max_lost_frames: int = 0,
                  min_score: float = 0.0, timeout: float = 30.0, camera: str = ""):
        """Send a track goal; returns ``(goal_handle, feedback_list)`` (handle.accepted may be False)."""
        from anima_sam2_msgs.action import Track

        assert self.track.wait_for_server(timeout_sec=timeout), "track action server not available"
        goal = Track.Goal()
        goal.prompts = list(prompts)
        goal.max_frames = max_frames
        goal.max_lost_frames = max_lost_frames
        goal.min_score = float(min_score)
        goal.camera = camera
        feedback: List[Any] = []
        handle = self.wait_future(self.track.send_goal_async(
            goal, feedback_callback=lambda fb: feedback.append(fb.feedback)), timeout)
        return handle, feedback

    def result(self, handle: Any, timeout: float = 60.0) -> Any:
        """Wait for a goal's result: ``(status, result)``."""
        res = self.wait_future(handle.get_result_async(), timeout)
        return res.status, res.result

    # ---------------------------------------------------------------- camera
    def start_camera(self, rate: float = 10.0, width: int = 160, height: int = 120) -> None:
        """Publish moving-square frames on /image from a thread."""
        self.stop_camera()
        self._cam_stop.clear()

        def run() -> None:
            t = self.frames_sent
            while not self._cam_stop.is_set():
                self.camera.publish(camera_image(width, height, t % 30))
                t += 1
                self.frames_sent = t
                self._cam_stop.wait(1.0 / rate)

        self._cam_thread = threading.Thread(target=run, daemon=True)
        self._cam_thread.start()

    def stop_camera(self) -> None:
        """Stop publishing frames."""
        self._cam_stop.set()
        if self._cam_thread is not None:
            self._cam_thread.join(5)
            self._cam_thread = None

    def close(self) -> None:
        """Stop the camera and the executor thread, destroy the node, shut the context down."""
        import rclpy

        self.stop_camera()
        self.executor.shutdown(timeout_sec=2.0)
        self._thread.join(5)
        self.track.destroy()  # not destroyed with the node: its DDS entities would outlive close()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.ctx)


@contextlib.contextmanager
def running_node(tmp_dir: pathlib.Path, name: str, overrides: Optional[Dict[str, Any]] = None,
                 autostart: bool = True, log_tail: int = 4000) -> Iterator[Tuple[Sam2Client, NodeProcess]]:
    """A node child process and a client for a test module; the node must exit cleanly.

    With ``autostart`` the client waits until the node is active; without it, until its
    lifecycle services answer. The tail of the node's log is printed on the way out.
    """
    node = start_node(tmp_dir, name, autostart=autostart, overrides=overrides)
    client = Sam2Client(name)
    try:
        if autostart:
            client.wait_active()
        else:
            assert client.get_state.wait_for_service(timeout_sec=60.0), "node did not come up"
        yield client, node
    finally:
        client.close()
        code = node.stop()
        print(node.log()[-log_tail:])
        assert code in (0, -2, 130), f"node exited with {code}"

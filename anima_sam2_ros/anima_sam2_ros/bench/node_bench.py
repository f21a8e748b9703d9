"""Node-level benchmark: sam2_node across processes, end to end, vs the engine's own time.

Processes: this one (the client: ``~/segment`` calls, a ``~/track`` goal, a ``~/masks``
subscriber), ``sam2_node`` (a child process, ``autostart``) and a camera publisher (a child
process per resolution: pre-rendered frames, each stamped with the wall clock right before
``publish``). For every ``--resolutions`` entry (default 640x480 and 1280x720):

* ``segment_request``: ``~/segment`` with the image in the request and one point prompt; the
  round trip measured here vs the ``inference_ms`` the node reports (its worker's engine time:
  ``set_image`` + ``segment``). Overhead = round trip - inference_ms (message transport both
  ways, conversions, executor hand-offs). The camera publisher is not running then.
* ``segment_latest``: the same with an empty image (the node's latest camera frame).
* ``track``: a track goal (one point prompt) while the camera publishes at ``--rate`` Hz (default:
  slow enough that every frame finds the worker idle); end-to-end latency = ``~/masks`` receipt
  here - the frame's header stamp (set right before the camera's ``publish``). ``node_ms`` is the
  goal feedback's ``latency_ms`` (frame arrival in the node -> ``Tracker.step`` done: the engine
  time, as the worker found the frame idle); overhead = end to end - node_ms per frame (camera ->
  node transport and image conversion, result conversion, publish, node -> client transport).
* ``delivery`` (issue 13): per tracked frame, the feedback's latency trace (node clock stamps:
  frame received, step start, step end, feedback published) and receipt times here and in a
  *probe* (a second subscriber process on ``~/masks`` and the action's feedback topic), so each
  hop is measured: camera -> node, waiting, inference, hand-off (step end -> feedback published),
  and node -> client delivery (receipt - published) seen by this client and by the probe. A delay
  the probe sees too is node-side (or transport); one only this client sees is client-side.
  p50 / p99 / max over ``--track-frames`` frames; goal: no frame's delivery (receipt here - step
  end) more than 50 ms beyond its inference. This client spins a ``SingleThreadedExecutor``
  (``--client-executor single``, the default): with rclpy's ``MultiThreadedExecutor`` (2 threads,
  ``--client-executor multi``) this client received frames up to 1.1 s (test-micro) and 6.9 s
  (hiera-tiny) late while the probe got the same messages within 11 ms; that was the
  "multi-second delivery delay" of the earlier runs (issue 13).
* ``load`` (``--load N``, issue 13): N concurrent ``~/segment`` calls, each with its own image,
  while the camera runs and a track goal is active; ``get_state`` is asked every 0.25 s
  meanwhile. Reports answered / sent, busy, timed out, the ``get_state`` latencies and the goal's
  frames during the burst (goal: ``get_state`` within 1 s, the goal keeps receiving frames).
* ``engine``: the same model measured in this process before the node starts (``Tracker.step``
  and ``Segmenter.set_image`` + ``segment`` on the same frames, same thread count), for
  reference (a different process: its numbers differ from the node's by warm-up and noise).

Goal (issue 6): node overhead <= 15% of the engine time at 640x480 (segment service, and the
tracking path camera -> masks). Run it in the built workspace, on loopback, in its own domain::

    scripts/ws.sh env scripts/netns.sh python -m anima_sam2_ros.bench.node_bench [--json]

Every process uses the installed shared-memory Fast DDS profile (``--dds-profile auto``).

(``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` and a bench-only ``ROS_DOMAIN_ID`` are set here.)
"""

from __future__ import annotations

import argparse
import array
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import (
    SCHEMA_VERSION,
    MovingScene,
    add_model_arguments,
    emit_report,
    format_goals,
    format_table,
    goal,
    machine_info,
    parse_resolution,
    ratio,
    summarize,
)

OVERHEAD_LIMIT = 0.15
DEFAULT_RESOLUTIONS = "640x480,1280x720"
# Issue 13: step end -> receipt by the client, every frame.
DELIVERY_LIMIT_MS = 50.0


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------
def _image_msg(frame: np.ndarray, frame_id: str = "bench_camera") -> Any:
    from sensor_msgs.msg import Image

    msg = Image()
    msg.header.frame_id = frame_id
    msg.height, msg.width = int(frame.shape[0]), int(frame.shape[1])
    msg.encoding = "rgb8"
    msg.is_bigendian = 0
    msg.step = msg.width * 3
    msg.data = array.array("B", np.ascontiguousarray(frame).tobytes())
    return msg


def _stamp_now(msg: Any) -> None:
    ns = time.time_ns()
    msg.header.stamp.sec = ns // 1_000_000_000
    msg.header.stamp.nanosec = ns % 1_000_000_000


def _stamp_ns(header: Any) -> int:
    return _time_ns(header.stamp)


def _time_ns(t: Any) -> int:
    return int(t.sec) * 1_000_000_000 + int(t.nanosec)


def percentiles(values_ms: Sequence[float]) -> Dict[str, Any]:
    """p50 / p99 / max / count of a list of milliseconds (NaN when empty)."""
    vals = sorted(float(v) for v in values_ms)
    if not vals:
        return {"p50": float("nan"), "p99": float("nan"), "max": float("nan"), "n": 0}

    def pct(q: float) -> float:
        k = (len(vals) - 1) * q / 100.0
        lo, hi = int(k), min(int(k) + 1, len(vals) - 1)
        return vals[lo] + (vals[hi] - vals[lo]) * (k - lo)

    return {"p50": pct(50.0), "p99": pct(99.0), "max": vals[-1], "n": len(vals)}


def _point_prompt(x: float, y: float, object_id: int = 0) -> Any:
    from geometry_msgs.msg import Point

    from anima_sam2_msgs.msg import Prompt

    p = Prompt()
    p.object_id = int(object_id)
    p.points = [Point(x=float(x), y=float(y), z=0.0)]
    p.labels = [1]
    return p


def installed_config(name: str = "sam2.yaml") -> Optional[str]:
    """An installed ``share/anima_sam2_ros/config/<name>``, or None (not installed)."""
    try:
        from ament_index_python.packages import get_package_share_directory

        path = os.path.join(get_package_share_directory("anima_sam2_ros"), "config", name)
        if os.path.isfile(path):
            return path
    except Exception:  # noqa: BLE001 - PackageNotFoundError, no ament index
        pass
    return None


def _python_env(threads: int) -> Dict[str, str]:
    import anima_sam2_ros

    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["OMP_NUM_THREADS"] = str(threads)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    # Children import this package from where this process did (the installed workspace).
    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(anima_sam2_ros.__file__)))
    rest = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != pkg_parent]
    env["PYTHONPATH"] = os.pathsep.join([pkg_parent] + rest)
    return env


class _Child:
    """A child process with its output in a log file."""

    def __init__(self, args: List[str], env: Dict[str, str], name: str) -> None:
        fd, self.log_path = tempfile.mkstemp(prefix=f"anima_bench_{name}_", suffix=".log")
        with os.fdopen(fd, "wb") as log:
            self.proc = subprocess.Popen([sys.executable, *args], env=env, stdout=log,
                                         stderr=subprocess.STDOUT)
        self.name = name

    def log_tail(self, chars: int = 3000) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as fh:
                return fh.read()[-chars:]
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        try:
            os.unlink(self.log_path)
        except OSError:
            pass
        return self.proc.returncode


# ----------------------------------------------------------------------------------------------
# camera publisher (child process)
# ----------------------------------------------------------------------------------------------
def run_publisher(topic: str, width: int, height: int, rate: float, seed: int = 0) -> int:
    """Publish pre-rendered frames on ``topic`` at ``rate`` Hz until SIGINT/SIGTERM.

    The header stamp is the wall clock right before ``publish``; nothing is published until a
    subscriber is matched.
    """
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    stop = threading.Event()
    try:
        from rclpy.signals import SignalHandlerOptions

        rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    except ImportError:  # pragma: no cover - very old rclpy
        rclpy.init()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    node = rclpy.create_node(f"bench_camera_{os.getpid()}")
    pub = node.create_publisher(Image, topic, QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT))
    scene = MovingScene(width, height, seed=seed)
    msgs = [_image_msg(scene.frame(t)) for t in range(24)]
    period = 1.0 / float(rate)
    sent = 0
    try:
        while not stop.is_set() and pub.get_subscription_count() == 0:
            stop.wait(0.02)
        stop.wait(0.5)  # let discovery finish on the subscriber's side too (else frame 0 is lost)
        next_t = time.monotonic()
        while not stop.is_set():
            msg = msgs[sent % len(msgs)]
            _stamp_now(msg)
            pub.publish(msg)
            sent += 1
            next_t += period
            stop.wait(max(0.0, next_t - time.monotonic()))
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    print(f"bench camera: published {sent} frames on {topic}", flush=True)
    return 0


# ----------------------------------------------------------------------------------------------
# probe subscriber (child process)
# ----------------------------------------------------------------------------------------------
def run_probe(node_base: str, out_path: str) -> int:
    """Record receipt times of ``~/masks`` and the track feedback until SIGINT/SIGTERM.

    Writes JSON ``{"masks": [[stamp_ns, recv_ns], ...], "feedback": [[stamp_ns, recv_ns], ...]}``
    (stamp = the source frame's header stamp) to ``out_path``. Same QoS as the bench client.
    """
    import json

    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    from anima_sam2_msgs.action import Track
    from anima_sam2_msgs.msg import ObjectMaskArray

    stop = threading.Event()
    try:
        from rclpy.signals import SignalHandlerOptions

        rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    except ImportError:  # pragma: no cover - very old rclpy
        rclpy.init()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    node = rclpy.create_node(f"bench_probe_{os.getpid()}")
    got: Dict[str, List[List[int]]] = {"masks": [], "feedback": []}
    node.create_subscription(ObjectMaskArray, f"{node_base}/masks",
                             lambda m: got["masks"].append([_stamp_ns(m.header), time.time_ns()]),
                             QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))
    # Action feedback: the topic every action client subscribes to (default action feedback QoS).
    node.create_subscription(Track.Impl.FeedbackMessage, f"{node_base}/track/_action/feedback",
                             lambda m: got["feedback"].append([_stamp_ns(m.feedback.masks.header),
                                                               time.time_ns()]),
                             QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        while not stop.is_set():
            executor.spin_once(timeout_sec=0.1)
    finally:
        with open(out_path, "w", encoding="utf-8") as fh:
            json.dump(got, fh)
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def delivery_report(feedback: List[Tuple[int, Any]], masks: List[Tuple[int, int, int]],
                    probe: Dict[str, List[List[int]]], skip: int) -> Dict[str, Any]:
    """Per-hop latencies (ms) of the tracked frames from the feedback's latency trace.

    ``feedback``: ``(receipt ns here, Track.Feedback)``; ``masks``: ``(receipt ns, stamp ns, n)``;
    ``probe``: what ``run_probe`` wrote. The first ``skip`` frames (prompted frame, warm-up) are
    left out.
    """
    masks_at = {stamp: recv for recv, stamp, _ in masks}
    probe_masks = {int(s): int(r) for s, r in probe.get("masks", [])}
    probe_fb = {int(s): int(r) for s, r in probe.get("feedback", [])}
    hops: Dict[str, List[float]] = {k: [] for k in (
        "camera_to_node", "wait", "inference", "handoff", "delivery_feedback", "delivery_masks",
        "probe_delivery_feedback", "probe_delivery_masks", "beyond_inference")}
    frames = sorted(feedback, key=lambda rf: _stamp_ns(rf[1].masks.header))[skip:]
    worst: Tuple[float, int] = (float("-inf"), 0)
    for recv, fb in frames:
        stamp = _stamp_ns(fb.masks.header)
        received, start, end, published = (_time_ns(fb.received), _time_ns(fb.step_start),
                                           _time_ns(fb.step_end), _time_ns(fb.published))
        if not (received and start and end and published):
            continue
        hops["camera_to_node"].append((received - stamp) / 1e6)
        hops["wait"].append((start - received) / 1e6)
        hops["inference"].append((end - start) / 1e6)
        hops["handoff"].append((published - end) / 1e6)
        hops["delivery_feedback"].append((recv - published) / 1e6)
        beyond = (max(recv, masks_at.get(stamp, recv)) - end) / 1e6
        hops["beyond_inference"].append(beyond)
        worst = max(worst, (beyond, stamp))
        if stamp in masks_at:
            hops["delivery_masks"].append((masks_at[stamp] - end) / 1e6)
        if stamp in probe_fb:
            hops["probe_delivery_feedback"].append((probe_fb[stamp] - published) / 1e6)
        if stamp in probe_masks:
            hops["probe_delivery_masks"].append((probe_masks[stamp] - end) / 1e6)
    out: Dict[str, Any] = {k: percentiles(v) for k, v in hops.items()}
    out["frames"] = len(hops["inference"])
    out["probe_frames"] = len(hops["probe_delivery_masks"])
    out["worst_frame_stamp_ns"] = worst[1]
    return out


def load_phase(client: Any, scene: Any, prompt: Any, calls: int, timeout: float,
               log: Callable[[str], None]) -> Dict[str, Any]:
    """``calls`` concurrent segment calls (own images) while a goal runs and get_state is polled."""
    from anima_sam2_msgs.srv import Segment

    handle, feedback = client.start_goal([prompt])
    try:
        t_end = time.monotonic() + 60.0
        while len(feedback) < 2 and time.monotonic() < t_end:
            time.sleep(0.05)
        frames_before = len(feedback)
        latencies: List[float] = []
        failures: List[str] = []
        stop = threading.Event()

        def probe() -> None:
            while not stop.is_set():
                t0 = time.perf_counter()
                try:
                    client.state(timeout=30.0)
                    latencies.append((time.perf_counter() - t0) * 1000.0)
                except Exception as exc:  # noqa: BLE001 - reported
                    failures.append(repr(exc))
                stop.wait(0.25)

        prober = threading.Thread(target=probe, daemon=True)
        prober.start()
        requests = []
        for i in range(calls):
            req = Segment.Request()
            req.image = _image_msg(scene.frame(100 + i), frame_id=f"load_{i}")
            req.prompts = [prompt]
            requests.append(req)
        log(f"load: {calls} concurrent segment calls while a goal runs ...")
        t0 = time.monotonic()
        futures = [client.segment.call_async(r) for r in requests]
        while time.monotonic() - t0 < timeout and not all(f.done() for f in futures):
            time.sleep(0.05)
        burst_s = time.monotonic() - t0
        stop.set()
        prober.join(60)
        answers = [f.result() for f in futures if f.done()]
        refused = [a.message for a in answers if not a.success]
        frames_during = len(feedback) - frames_before
    finally:
        client.wait(handle.cancel_goal_async(), 30.0)
    return {"sent": calls, "answered": len(answers), "success": sum(a.success for a in answers),
            "busy": sum(m.startswith("busy") for m in refused),
            "timed_out": sum(m.startswith("timed out") for m in refused),
            "other": sorted(set(m for m in refused if not m.startswith(("busy", "timed out"))))[:5],
            "burst_s": burst_s, "get_state_ms": percentiles(latencies), "get_state_failures": failures[:5],
            "goal_frames_during": frames_during}


# ----------------------------------------------------------------------------------------------
# client (this process)
# ----------------------------------------------------------------------------------------------
class _Client:
    """rclpy node in its own context, spinning in a thread: segment / track clients, masks recorder."""

    def __init__(self, node_name: str, executor: str = "single") -> None:
        import rclpy
        from lifecycle_msgs.srv import GetState
        from rclpy.action import ActionClient
        from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        from anima_sam2_msgs.action import Track
        from anima_sam2_msgs.msg import ObjectMaskArray
        from anima_sam2_msgs.srv import Segment

        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx)
        self.node = rclpy.create_node(f"bench_client_{os.getpid()}", context=self.ctx)
        base = f"/{node_name}"
        self.base = base
        self.get_state = self.node.create_client(GetState, f"{base}/get_state")
        # Deep enough for a whole burst of answers (--load): none is dropped on this side.
        self.segment = self.node.create_client(
            Segment, f"{base}/segment",
            qos_profile=QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE))
        self.track = ActionClient(self.node, Track, f"{base}/track")
        self._lock = threading.Lock()
        self.masks: List[Tuple[int, int, int]] = []  # (receipt ns, stamp ns, objects)
        self.node.create_subscription(ObjectMaskArray, f"{base}/masks", self._on_masks,
                                      QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))
        self.executor = (SingleThreadedExecutor(context=self.ctx) if executor == "single"
                         else MultiThreadedExecutor(num_threads=2, context=self.ctx))
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except Exception:  # noqa: BLE001 - context shut down
            pass

    def _on_masks(self, msg: Any) -> None:
        now = time.time_ns()
        with self._lock:
            self.masks.append((now, _stamp_ns(msg.header), len(msg.objects)))

    def take_masks(self) -> List[Tuple[int, int, int]]:
        with self._lock:
            out, self.masks = self.masks, []
        return out

    @staticmethod
    def wait(future: Any, timeout: float) -> Tuple[Any, float]:
        """Wait for an rclpy future; returns ``(result, perf_counter time of completion)``."""
        done = threading.Event()
        stamp: List[float] = []

        def on_done(_f: Any) -> None:
            stamp.append(time.perf_counter())
            done.set()

        future.add_done_callback(on_done)
        if future.done() and not done.is_set():
            stamp.append(time.perf_counter())
            done.set()
        if not done.wait(timeout):
            raise TimeoutError(f"no answer within {timeout:g} s")
        return future.result(), stamp[0]

    def state(self, timeout: float = 10.0) -> str:
        from lifecycle_msgs.srv import GetState

        res, _ = self.wait(self.get_state.call_async(GetState.Request()), timeout)
        return res.current_state.label

    def wait_active(self, timeout: float, alive: Callable[[], bool]) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not alive():
                raise RuntimeError("sam2_node exited during start-up")
            if self.get_state.wait_for_service(timeout_sec=0.5):
                try:
                    if self.state() == "active":
                        break
                except TimeoutError:
                    pass
            time.sleep(0.2)
        else:
            raise TimeoutError(f"sam2_node not active after {timeout:g} s")
        if not self.segment.wait_for_service(timeout_sec=timeout):
            raise TimeoutError("~/segment not available")
        if not self.track.wait_for_server(timeout_sec=timeout):
            raise TimeoutError("~/track not available")

    def segment_call(self, prompts: List[Any], image: Any = None,
                     timeout: float = 600.0) -> Tuple[Any, float]:
        """One ``~/segment`` call: ``(response, round trip ms)``."""
        from anima_sam2_msgs.srv import Segment

        req = Segment.Request()
        if image is not None:
            req.image = image
        req.prompts = list(prompts)
        t0 = time.perf_counter()
        res, t1 = self.wait(self.segment.call_async(req), timeout)
        return res, (t1 - t0) * 1000.0

    def track_goal(self, prompts: List[Any], max_frames: int,
                   timeout: float) -> Tuple[Any, List[Tuple[int, Any]]]:
        """Run one track goal to its end; ``(result, [(receipt ns, feedback), ...])``."""
        from anima_sam2_msgs.action import Track

        goal_msg = Track.Goal()
        goal_msg.prompts = list(prompts)
        goal_msg.max_frames = int(max_frames)
        feedback: List[Tuple[int, Any]] = []
        handle, _ = self.wait(self.track.send_goal_async(
            goal_msg, feedback_callback=lambda fb: feedback.append((time.time_ns(), fb.feedback))), 30.0)
        if not handle.accepted:
            raise RuntimeError("track goal rejected")
        res, _ = self.wait(handle.get_result_async(), timeout)
        # Feedback and result travel on different topics: the last frames' feedback may still be
        # on its way when the result is in (seen in CI: one frame's node time missing).
        deadline = time.monotonic() + 3.0
        while len(feedback) < int(res.result.frames_processed) and time.monotonic() < deadline:
            time.sleep(0.02)
        return res.result, feedback

    def start_goal(self, prompts: List[Any]) -> Tuple[Any, List[Tuple[int, Any]]]:
        """Start an endless track goal; ``(goal handle, feedback list that fills)``."""
        from anima_sam2_msgs.action import Track

        goal_msg = Track.Goal()
        goal_msg.prompts = list(prompts)
        feedback: List[Tuple[int, Any]] = []
        handle, _ = self.wait(self.track.send_goal_async(
            goal_msg, feedback_callback=lambda fb: feedback.append((time.time_ns(), fb.feedback))), 30.0)
        if not handle.accepted:
            raise RuntimeError("track goal rejected")
        return handle, feedback

    def close(self) -> None:
        import rclpy

        self.executor.shutdown(timeout_sec=2.0)
        self._thread.join(5)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.ctx)


# ----------------------------------------------------------------------------------------------
# engine reference (this process, before the node starts)
# ----------------------------------------------------------------------------------------------
def engine_reference(model: str, weights: str, precision: str, device: str,
                     resolutions: Sequence[Tuple[int, int]],
                     runs: int, warmup: int, threads: int, seed: int) -> Dict[str, Dict[str, Any]]:
    """Median engine times per resolution: ``Tracker.step`` (1 object) and set_image + segment."""
    import torch

    from anima_sam2_ros.engine import Prompt, Segmenter, Tracker, load_model

    torch.set_num_threads(int(threads))
    lm = load_model(model, weights=weights, precision=precision, device=device, seed=seed)
    out: Dict[str, Dict[str, Any]] = {}
    for w, h in resolutions:
        scene = MovingScene(w, h, seed=seed)
        frames = [scene.frame(t) for t in range(24)]
        x, y = scene.object_points(1)[0]
        prompt = Prompt(object_id=1, points=np.array([[x, y]], np.float32), labels=np.array([1]))
        seg = Segmenter(lm)
        seg_times = []
        for i in range(warmup + runs):
            t0 = time.perf_counter()
            seg.segment_image(frames[i % len(frames)], [prompt])
            if i >= warmup:
                seg_times.append((time.perf_counter() - t0) * 1000.0)
        trk = Tracker(lm)
        trk.step(frames[0], [prompt])
        step_times = []
        for i in range(1, 1 + warmup + runs):
            t0 = time.perf_counter()
            trk.step(frames[i % len(frames)])
            if i > warmup:
                step_times.append((time.perf_counter() - t0) * 1000.0)
        out[f"{w}x{h}"] = {"segment": summarize(seg_times), "track_step": summarize(step_times)}
    lm.release()
    return out


# ----------------------------------------------------------------------------------------------
# the bench
# ----------------------------------------------------------------------------------------------
def run_node_bench(model: str = "test-micro", weights: str = "dummy", precision: str = "fp32",
                   device: str = "cpu", resolutions: Sequence[Tuple[int, int]] = ((640, 480), (1280, 720)),
                   runs: int = 20, warmup: int = 3, rate: float = 0.0, threads: int = 1, seed: int = 0,
                   start_timeout: float = 180.0, track_frames: int = 0, load: int = 0,
                   client_executor: str = "single",
                   log: Optional[Callable[[str], None]] = None) -> Dict[str, Any]:
    """Run the node bench (see the module docstring); returns the report.

    ``rate`` 0 picks a camera rate from the engine's tracking time (a frame every ~2 steps).
    ``track_frames`` (0 = ``runs``) timed frames are tracked per resolution.
    """
    say = log or (lambda _msg: None)
    runs, warmup = max(1, int(runs)), max(0, int(warmup))
    say("engine reference ...")
    engine = engine_reference(model, weights, precision, device, resolutions, runs, max(3, warmup), threads,
                              seed)

    import torch

    name = f"sam2_bench_{os.getpid()}"
    topic = f"/{name}_camera/image_raw"
    env = _python_env(threads)
    node_args = ["-m", "anima_sam2_ros.node.sam2_node", "--ros-args"]
    cfg = installed_config()
    if cfg:
        node_args += ["--params-file", cfg]
    overrides = {"model": model, "weights": weights, "precision": precision, "device": device, "seed": seed,
                 "autostart": "true", "topics.image": topic, "topics.camera_info": "''",
                 "output.segment_results": "false", "output.diagnostics": "false",
                 "camera_timeout": 3600.0, "segment_timeout": 600.0}
    node_args += ["-r", f"__node:={name}"]
    for key, value in overrides.items():
        node_args += ["-p", f"{key}:={value}"]
    say(f"starting sam2_node {name} ({model}, {precision}, {device}) ...")
    node = _Child(node_args, env, "node")
    client = None
    per_res: Dict[str, Dict[str, Any]] = {}
    try:
        client = _Client(name, client_executor)
        client.wait_active(start_timeout, node.alive)
        for w, h in resolutions:
            key = f"{w}x{h}"
            eng = engine[key]
            scene = MovingScene(w, h, seed=seed)
            x, y = scene.object_points(1)[0]
            prompt = _point_prompt(x, y)
            image = _image_msg(scene.frame(0))
            timeout = max(60.0, 20.0 * eng["segment"]["median"] / 1000.0)

            say(f"{key}: segment (image in the request) ...")
            rts, infs = [], []
            for i in range(warmup + runs):
                res, rt = client.segment_call([prompt], image=image, timeout=timeout)
                if not res.success:
                    raise RuntimeError(f"segment failed: {res.message}")
                if i >= warmup:
                    rts.append(rt)
                    infs.append(float(res.inference_ms))
            seg_req = _service_summary(rts, infs)

            step_ms = eng["track_step"]["median"]
            cam_rate = float(rate) if rate and rate > 0 else min(10.0, 1000.0 / (2.0 * step_ms + 20.0))
            say(f"{key}: camera at {cam_rate:.2f} Hz ...")
            cam = _Child(["-m", "anima_sam2_ros.bench.node_bench", "--publisher", topic, "--resolution", key,
                          "--rate", f"{cam_rate:.4f}", "--seed", str(seed)], env, "camera")
            try:
                deadline = time.monotonic() + 60.0 + 2.0 / cam_rate
                while True:  # until the node holds a camera frame
                    res, _ = client.segment_call([prompt], timeout=timeout)
                    if res.success:
                        break
                    if time.monotonic() > deadline or not cam.alive():
                        raise RuntimeError(f"no camera frame reached the node: {res.message}; "
                                           f"camera log: {cam.log_tail()}")
                    time.sleep(0.1)
                say(f"{key}: segment (latest camera frame) ...")
                rts, infs = [], []
                for i in range(warmup + runs):
                    res, rt = client.segment_call([prompt], timeout=timeout)
                    if not res.success:
                        raise RuntimeError(f"segment failed: {res.message}")
                    if i >= warmup:
                        rts.append(rt)
                        infs.append(float(res.inference_ms))
                seg_latest = _service_summary(rts, infs)

                n_track = int(track_frames) if track_frames and track_frames > 0 else runs
                say(f"{key}: tracking {warmup + n_track} frames (with a probe subscriber process) ...")
                fd, probe_path = tempfile.mkstemp(prefix="anima_bench_probe_", suffix=".json")
                os.close(fd)
                probe = _Child(["-m", "anima_sam2_ros.bench.node_bench", "--probe", client.base,
                                "--out", probe_path], env, "probe")
                try:
                    time.sleep(2.0)  # discovery of the probe's subscriptions
                    client.take_masks()
                    n_frames = warmup + n_track + 1
                    result, feedback = client.track_goal(
                        [prompt], n_frames,
                        timeout=60.0 + 4.0 * n_frames * (1.0 / cam_rate + step_ms / 1000.0))
                    time.sleep(0.5)
                    masks = client.take_masks()
                finally:
                    probe.stop()
                probe_data = _read_json(probe_path)
                load_report = None
                if load > 0:
                    load_report = load_phase(client, scene, prompt, int(load),
                                             timeout=120.0 + 4.0 * load * eng["segment"]["median"] / 1000.0,
                                             log=say)
            finally:
                cam.stop()
            # Per frame (matched by the header stamp): camera publish -> masks here, and the node's
            # own arrival -> inference-done time from the goal feedback.
            node_by_stamp = {_stamp_ns(fb.masks.header): float(fb.latency_ms) for _, fb in feedback}
            timed = sorted(masks, key=lambda m: m[1])[1 + warmup:]  # skip the prompted frame + warm-up
            e2e = [(recv - stamp) / 1e6 for recv, stamp, _ in timed]
            node_ms = [node_by_stamp[stamp] for _, stamp, _ in timed if stamp in node_by_stamp]
            over = [(recv - stamp) / 1e6 - node_by_stamp[stamp] for recv, stamp, _ in timed
                    if stamp in node_by_stamp]
            track = {
                "e2e_ms": summarize(e2e),
                "node_ms": summarize(node_ms),
                "overhead_ms": summarize(over),
                "frames_processed": int(result.frames_processed),
                "masks_received": len(masks),
                "reason": str(result.reason),
                "camera_rate_hz": cam_rate,
                "delivery": delivery_report(feedback, masks, probe_data, 1 + warmup),
            }
            track["overhead_ratio"] = ratio(track["overhead_ms"]["median"], track["node_ms"]["median"])
            track["e2e_over_engine_inprocess"] = ratio(track["e2e_ms"]["median"], step_ms)
            per_res[key] = {"segment_request": seg_req, "segment_latest": seg_latest, "track": track,
                            "engine": eng}
            if load_report is not None:
                per_res[key]["load"] = load_report
    except Exception as exc:
        raise RuntimeError(f"{type(exc).__name__}: {exc}\n--- sam2_node log (tail) ---\n"
                           f"{node.log_tail()}") from exc
    finally:
        if client is not None:
            client.close()
        node.stop()

    goals = []
    first = f"{resolutions[0][0]}x{resolutions[0][1]}"
    if "640x480" in per_res:
        first = "640x480"
    r = per_res[first]
    goals.append(goal(f"segment service overhead / engine time at {first}",
                      r["segment_request"]["overhead_ratio"], OVERHEAD_LIMIT, note="issue 6: <= 15%"))
    goals.append(goal(f"tracking camera->masks overhead / engine step at {first}",
                      r["track"]["overhead_ratio"], OVERHEAD_LIMIT, note="issue 6: <= 15%"))
    worst = max((res["track"]["delivery"]["beyond_inference"]["max"] for res in per_res.values()),
                default=float("nan"))
    goals.append(goal("worst frame: client receipt - step end (ms), all resolutions", worst,
                      DELIVERY_LIMIT_MS, note="issue 13: <= 50 ms for every frame"))
    for key, res in per_res.items():
        if "load" in res:
            ld = res["load"]
            goals.append(goal(f"get_state under {ld['sent']} concurrent segment calls at {key}: max ms",
                              ld["get_state_ms"]["max"], 1000.0, note="issue 13: within 1 s"))
            goals.append(goal(f"requests answered under load at {key}", float(ld["answered"]),
                              float(ld["sent"]), rule=">=", note="issue 13: every request answered"))
            goals.append(goal(f"goal frames during the burst at {key}", float(ld["goal_frames_during"]), 1.0,
                              rule=">=", note="issue 13: the goal keeps receiving frames"))
    return {
        "bench": "node",
        "schema": SCHEMA_VERSION,
        "config": {"model": model, "weights": weights, "precision": precision, "device": device,
                   "resolutions": [f"{w}x{h}" for w, h in resolutions], "runs": runs, "warmup": warmup,
                   "threads": threads, "rate": rate, "seed": seed, "track_frames": track_frames,
                   "load": load, "client_executor": client_executor,
                   "rmw": os.environ.get("RMW_IMPLEMENTATION"), "domain_id": os.environ.get("ROS_DOMAIN_ID"),
                   "discovery_range": os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE"),
                   "dds_profile": os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE")},
        "machine": machine_info(torch, device),
        "results": per_res,
        "goals": goals,
    }


def _read_json(path: str) -> Dict[str, Any]:
    import json

    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return {}
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass


def _service_summary(rts: List[float], infs: List[float]) -> Dict[str, Any]:
    over = [rt - inf for rt, inf in zip(rts, infs, strict=True)]
    inf_med = summarize(infs)["median"]
    out = {"round_trip_ms": summarize(rts), "inference_ms": summarize(infs), "overhead_ms": summarize(over)}
    out["overhead_ratio"] = ratio(out["overhead_ms"]["median"], inf_med)
    return out


def format_report(report: Dict[str, Any]) -> str:
    """The human-readable table of a node report."""
    cfg = report["config"]
    lines = [f"node bench: {cfg['model']} {cfg['precision']} on {cfg['device']}, {cfg['threads']} thread(s), "
             f"{cfg['runs']} runs, {cfg['rmw']}, domain {cfg['domain_id']}"]
    rows = []
    for key, r in report["results"].items():
        for kind in ("segment_request", "segment_latest"):
            s = r[kind]
            rows.append([key, kind, s["round_trip_ms"]["median"], s["round_trip_ms"]["p90"],
                         s["inference_ms"]["median"], s["overhead_ms"]["median"],
                         100.0 * s["overhead_ratio"]])
        t = r["track"]
        rows.append([key, "track camera->masks", t["e2e_ms"]["median"], t["e2e_ms"]["p90"],
                     t["node_ms"]["median"], t["overhead_ms"]["median"], 100.0 * t["overhead_ratio"]])
    headers = ["frame", "path", "median ms", "p90 ms", "engine ms", "overhead ms", "overhead %"]
    lines.append(format_table(headers, rows))
    for key, r in report["results"].items():
        t = r["track"]
        lines.append(f"{key}: {t['masks_received']} masks for {t['frames_processed']} tracked frames at "
                     f"{t['camera_rate_hz']:.2f} Hz; engine in this process: Tracker.step "
                     f"{r['engine']['track_step']['median']:.1f} ms, set_image + segment "
                     f"{r['engine']['segment']['median']:.1f} ms")
    hop_rows = []
    for key, r in report["results"].items():
        d = r["track"]["delivery"]
        for hop in ("camera_to_node", "wait", "inference", "handoff", "delivery_feedback", "delivery_masks",
                    "probe_delivery_feedback", "probe_delivery_masks", "beyond_inference"):
            h = d[hop]
            hop_rows.append([key, hop, h["p50"], h["p99"], h["max"], h["n"]])
    lines.append("tracking latency trace per frame (ms; delivery = receipt - published, masks: receipt - "
                 "step end; probe = a second subscriber process):")
    lines.append(format_table(["frame", "hop", "p50", "p99", "max", "frames"], hop_rows))
    for key, r in report["results"].items():
        if "load" in r:
            ld = r["load"]
            g = ld["get_state_ms"]
            lines.append(f"{key} load: {ld['answered']}/{ld['sent']} answered ({ld['success']} success, "
                         f"{ld['busy']} busy, {ld['timed_out']} timed out) in {ld['burst_s']:.1f} s; "
                         f"get_state p50 {g['p50']:.1f} / max {g['max']:.1f} ms over {g['n']}; goal frames "
                         f"during the burst {ld['goal_frames_during']}")
    lines.append("engine ms: segment rows = the node's inference_ms (its worker: set_image + segment); "
                 "track row = the feedback's latency_ms (frame arrival in the node -> Tracker.step done)")
    lines.append("goals:")
    lines.append(format_goals(report["goals"]))
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The node bench options."""
    add_model_arguments(parser, model="test-micro", device="cpu")
    parser.add_argument("--resolutions", default=DEFAULT_RESOLUTIONS, help="comma-separated WIDTHxHEIGHT")
    parser.add_argument("--runs", type=int, default=20, help="timed calls / tracked frames per resolution")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls / frames first")
    parser.add_argument("--rate", type=float, default=0.0, help="camera Hz (0: from the engine's step time)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the node and the reference")
    parser.add_argument("--seed", type=int, default=0, help="seed of dummy weights and frames")
    parser.add_argument("--domain-id", type=int, default=None,
                        help="ROS_DOMAIN_ID (default: a bench-only id from the process id)")
    parser.add_argument("--start-timeout", type=float, default=180.0, help="seconds for the node to come up")
    parser.add_argument("--dds-profile", default="auto",
                        help="FASTDDS_DEFAULT_PROFILES_FILE for every process: 'auto' = the installed "
                             "config/fastdds_shm.xml (shared memory: best-effort 720p frames are lost over "
                             "UDP loopback), 'none' = the environment's, or a path")
    parser.add_argument("--track-frames", type=int, default=0,
                        help="timed tracked frames per resolution (0 = --runs); the delivery percentiles "
                             "are over these")
    parser.add_argument("--client-executor", choices=("multi", "single"), default="single",
                        help="executor of this client process: rclpy MultiThreadedExecutor (2 threads) or "
                             "SingleThreadedExecutor (the probe process always uses a single-threaded one)")
    parser.add_argument("--load", type=int, default=0,
                        help="also send this many concurrent segment calls while a goal runs (0 = off)")
    parser.add_argument("--json", action="store_true", help="print only the JSON report")
    parser.add_argument("--out", default=None, help="also write the JSON report to this file")
    parser.add_argument("--publisher", default=None, metavar="TOPIC", help=argparse.SUPPRESS)
    parser.add_argument("--probe", default=None, metavar="NODE", help=argparse.SUPPRESS)
    parser.add_argument("--resolution", default="640x480", help=argparse.SUPPRESS)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m anima_sam2_ros.bench.node_bench``."""
    parser = argparse.ArgumentParser(prog="anima-sam2 bench node", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR if args.json else logging.WARNING)
    if args.probe:
        return run_probe(args.probe, args.out)
    if args.publisher:
        w, h = parse_resolution(args.resolution)
        return run_publisher(args.publisher, w, h, args.rate if args.rate > 0 else 5.0, args.seed)
    try:
        resolutions = [parse_resolution(r) for r in args.resolutions.split(",") if r.strip()]
        if not resolutions:
            raise ValueError("--resolutions: none given")
    except ValueError as exc:
        print(f"node bench: {exc}", file=sys.stderr)
        return 2
    # Loopback only, in a domain of its own (1..39: apart from the tests' and the workspace's); set
    # before the contexts are created, children inherit it; restored afterwards.
    keys = ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_STATIC_PEERS", "ROS_DOMAIN_ID",
            "FASTDDS_DEFAULT_PROFILES_FILE")
    saved = {k: os.environ.get(k) for k in keys}
    profile = installed_config("fastdds_shm.xml") if args.dds_profile == "auto" else args.dds_profile
    if profile and profile != "none":
        os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = profile
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.pop("ROS_STATIC_PEERS", None)
    domain = args.domain_id if args.domain_id is not None else 1 + os.getpid() % 39
    os.environ["ROS_DOMAIN_ID"] = str(domain)
    # Progress on stderr: the engine reference, the node's start, then per resolution its phases.
    from anima_sam2_ros.progress import Progress

    progress = Progress(2 + len(resolutions) * (4 + (1 if args.load > 0 else 0)), enabled=not args.json)
    log = None if args.json else (lambda msg: progress.stage(msg.rstrip(" .")))
    try:
        report = run_node_bench(model=args.model, weights=args.weights, precision=args.precision,
                                device=args.device, resolutions=resolutions, runs=args.runs,
                                warmup=args.warmup,
                                rate=args.rate, threads=args.threads, seed=args.seed,
                                start_timeout=args.start_timeout, track_frames=args.track_frames,
                                load=args.load, client_executor=args.client_executor, log=log)
    except (RuntimeError, TimeoutError) as exc:
        print(f"node bench failed: {exc}", file=sys.stderr)
        return 1
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    progress.done()
    return emit_report(report, args, format_report)


if __name__ == "__main__":
    sys.exit(main())

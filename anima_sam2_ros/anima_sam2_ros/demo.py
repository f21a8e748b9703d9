"""End-to-end demo: camera -> sam2_node -> segment + track from a client -> overlay PNGs + summary.

``make demo`` runs ``python -m anima_sam2_ros.demo`` (inside a private network namespace)::

    python -m anima_sam2_ros.demo [--out demo_output] [--frames 20] [--weights dummy|DIR]
                                  [--model NAME] [--precision fp32] [--device auto]
                                  [--width 320] [--height 240] [--rate 5]

What it does, with three processes talking over DDS on loopback:

1. starts ``sam2_node`` (child process, ``autostart``), by default the ``test-micro`` model with
   dummy (random) weights, and the built-in ``camera_source`` (child process) publishing the
   synthetic moving-object sequence at 320 x 240, 5 Hz on ``/camera/image_raw``;
2. as the client (this process): calls ``/sam2_node/segment`` on the latest frame with a point on
   the red disc (the scene's anchor point, on the disc in every frame), then sends a
   ``/sam2_node/track`` goal with the same point for ``--frames`` frames, printing feedback;
3. records ``/sam2_node/overlay`` (bgr8) and ``/diagnostics`` meanwhile, writes the overlays as
   PNGs, ``summary.json`` and ``summary.txt`` (latency, fps, frames, dropped frames) and the two
   child processes' logs into ``--out``; stops everything and exits 0 when segment and track worked.

Defaults are chosen to finish in about a minute on 2 CPU cores: ``test-micro`` (a tiny SAM 2.1-shaped
network, 128 px input) with dummy weights runs each frame in tens of milliseconds, and most of the
minute is the node's start-up (importing torch/transformers). **With dummy weights the masks are
meaningless** (random network); the demo shows the plumbing, timing and visualization. For real
masks pass ``--weights DIR`` (a local SAM 2.1 checkpoint directory in Hugging Face format, or an
INT8 artifact) with ``--model sam2.1-hiera-tiny`` (or small, ...), or ``--weights hf`` to use the
model's Hugging Face id from the local cache (never downloaded); expect seconds per frame on a CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import signal
import statistics
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional

import numpy as np

NODE_NAME = "sam2_node"
CAMERA_NS = "/camera"
BANNER = "=" * 78


_T0 = time.monotonic()
STAGES = 4  # start processes, node start-up, segment, track


def _log(text: str) -> None:
    print(f"[demo {time.monotonic() - _T0:6.1f}s] {text}", flush=True)


def _stage(n: int, text: str) -> None:
    """A numbered stage line: ``[demo  12.3s] [2/4] text``."""
    _log(f"[{n}/{STAGES}] {text}")


def _installed_share() -> pathlib.Path:
    """``<install>/share/anima_sam2_ros`` of the imported package."""
    try:
        from ament_index_python.packages import get_package_share_directory

        return pathlib.Path(get_package_share_directory("anima_sam2_ros"))
    except Exception:  # noqa: BLE001 - fall back to the layout next to the package
        import anima_sam2_ros

        return pathlib.Path(anima_sam2_ros.__file__).resolve().parents[3] / "share" / "anima_sam2_ros"


def _param_args(values: Dict[str, Any]) -> List[str]:
    out: List[str] = []
    for key, value in values.items():
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, str) and value == "":
            value = "''"
        out += ["-p", f"{key}:={value}"]
    return out


def _start(args: List[str], log_path: pathlib.Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(log_path, "w", encoding="utf-8") as log:
        # cwd = the output folder: `python -m` puts the cwd first on sys.path, and the source tree
        # (which has no generated msg/srv/action modules) must not shadow the installed package.
        return subprocess.Popen([sys.executable, *args], stdout=log, stderr=subprocess.STDOUT, env=env,
                                cwd=str(log_path.parent))


def _require_interfaces() -> None:
    """The demo's clients need the generated interfaces (package anima_sam2_msgs, built by colcon)."""
    import importlib.util

    if importlib.util.find_spec("anima_sam2_msgs") is None:
        raise SystemExit("anima_sam2_msgs is not importable: build the workspace (make build) and "
                         "source install/setup.bash, or run `make demo`")


def _stop(proc: Optional[subprocess.Popen], name: str, timeout: float = 20.0) -> Optional[int]:
    if proc is None:
        return None
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _log(f"{name} did not stop on SIGINT within {timeout:g} s: killing it")
            proc.kill()
            proc.wait(5)
    return proc.returncode


class _Heartbeat:
    """Called while waiting: every ``period`` s one line with the time left and the node's last log line."""

    def __init__(self, deadline: float, log_path: pathlib.Path, period: float = 10.0) -> None:
        self.deadline, self.log_path, self.period = deadline, log_path, period
        self.next = time.monotonic() + period

    def __call__(self) -> bool:
        now = time.monotonic()
        if now >= self.next:
            self.next = now + self.period
            last = ""
            try:
                lines = [ln for ln in self.log_path.read_text(errors="replace").splitlines() if ln.strip()]
                last = lines[-1].strip()[:140] if lines else ""
            except OSError:
                pass
            _log(f"      still starting ({max(self.deadline - now, 0):.0f} s left before giving up)"
                 + (f"; node: {last}" if last else ""))
        return False


def _percentile(values: List[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if values else float("nan")


def _stamp_ns(header) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Command-line options of the demo."""
    p = argparse.ArgumentParser(prog="python -m anima_sam2_ros.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="demo_output", help="output folder (default demo_output)")
    p.add_argument("--frames", type=int, default=20, help="frames to track (default 20)")
    p.add_argument("--weights", default="dummy",
                   help="'dummy' (random weights, meaningless masks; default), a local weights directory / "
                        "INT8 artifact, or 'hf' for the model's Hugging Face id from the local cache")
    p.add_argument("--model", default=None,
                   help="model name (default: test-micro with dummy weights, else sam2.1-hiera-tiny)")
    p.add_argument("--precision", default="fp32", help="fp32 | bf16 | fp16 | int8 (default fp32)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")
    p.add_argument("--width", type=int, default=320, help="camera width (default 320)")
    p.add_argument("--height", type=int, default=240, help="camera height (default 240)")
    p.add_argument("--rate", type=float, default=5.0, help="camera frames per second (default 5)")
    p.add_argument("--startup-timeout", type=float, default=180.0,
                   help="seconds to wait for the node to load the model and answer (default 180)")
    args = p.parse_args(argv)
    if args.frames < 1:
        p.error("--frames must be at least 1")
    if args.model is None:
        args.model = "test-micro" if args.weights == "dummy" else "sam2.1-hiera-tiny"
    return args


class _Client:
    """The demo's rclpy side: service / action clients and topic recorders in one context."""

    def __init__(self) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.action import ActionClient
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
        from sensor_msgs.msg import Image

        from anima_sam2_msgs.action import Track
        from anima_sam2_msgs.srv import Segment

        self.rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("anima_sam2_demo_client", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.overlays: List[Any] = []  # (receive time, msg)
        self.camera_stamps: List[int] = []
        self.diagnostics: Dict[str, str] = {}
        reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self.node.create_subscription(Image, f"/{NODE_NAME}/overlay",
                                      lambda m: self.overlays.append((time.monotonic(), m)), reliable)
        self.node.create_subscription(Image, f"{CAMERA_NS}/image_raw",
                                      lambda m: self.camera_stamps.append(_stamp_ns(m.header)),
                                      qos_profile_sensor_data)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self.segment = self.node.create_client(Segment, f"/{NODE_NAME}/segment")
        self.track = ActionClient(self.node, Track, f"/{NODE_NAME}/track")
        self.Segment, self.Track = Segment, Track

    def _on_diagnostics(self, msg) -> None:
        for status in msg.status:
            if NODE_NAME in status.name:
                self.diagnostics = {kv.key: kv.value for kv in status.values}
                self.diagnostics["_level_message"] = status.message

    def spin_for(self, seconds: float) -> None:
        """Spin the executor for ``seconds``."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=min(0.05, max(end - time.monotonic(), 0.0)))

    def spin_until(self, predicate, timeout: float) -> bool:
        """Spin until ``predicate()`` or ``timeout`` seconds."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if predicate():
                return True
            self.executor.spin_once(timeout_sec=0.05)
        return bool(predicate())

    def close(self) -> None:
        """Portable shutdown."""
        try:
            self.executor.shutdown(timeout_sec=2.0)
        finally:
            self.node.destroy_node()
            self.rclpy.try_shutdown(context=self.context)


def _prompt(x: float, y: float):
    from geometry_msgs.msg import Point

    from anima_sam2_msgs.msg import Prompt

    return Prompt(object_id=1, points=[Point(x=float(x), y=float(y), z=0.0)], labels=[1])


def run(args: argparse.Namespace) -> int:
    """Run the demo; returns the exit status (0 = segment and track worked)."""
    import cv2

    from anima_sam2_ros.node.camera_source import SyntheticScene

    out = pathlib.Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("overlay_*.png"):
        old.unlink()
    dummy = args.weights == "dummy"
    weights = "" if args.weights == "hf" else args.weights
    if dummy:
        print(f"{BANNER}\n  DUMMY (RANDOM) WEIGHTS: the masks in this demo are MEANINGLESS.\n"
              f"  It shows the plumbing, timing and visualization only. For real masks:\n"
              "  python -m anima_sam2_ros.demo --model sam2.1-hiera-tiny --weights /path/to/weights\n"
              f"{BANNER}",
              flush=True)
    _log(f"output folder {out}; ROS_DOMAIN_ID={os.environ.get('ROS_DOMAIN_ID', '0')}, "
         f"ROS_AUTOMATIC_DISCOVERY_RANGE={os.environ.get('ROS_AUTOMATIC_DISCOVERY_RANGE', '-')}")

    config = _installed_share() / "config" / "sam2.yaml"
    node_params = {"model": args.model, "weights": weights, "precision": args.precision,
                   "device": args.device,
                   "autostart": True}
    node_cmd = ["-m", "anima_sam2_ros.node.sam2_node", "--ros-args"]
    if config.is_file():
        node_cmd += ["--params-file", str(config)]
    node_cmd += ["-r", f"__node:={NODE_NAME}", "-r", f"image:={CAMERA_NS}/image_raw",
                 "-r", f"camera_info:={CAMERA_NS}/camera_info", *_param_args(node_params)]
    cam_cmd = ["-m", "anima_sam2_ros.node.camera_source", "--ros-args", "-r", f"__ns:={CAMERA_NS}",
               *_param_args({"width": args.width, "height": args.height, "rate": float(args.rate)})]
    scene = SyntheticScene(args.width, args.height)
    px, py = scene.anchor_point()

    summary: Dict[str, Any] = {
        "dummy_weights": dummy,
        "warning": "DUMMY (RANDOM) WEIGHTS: masks are meaningless" if dummy else "",
        "model": args.model, "weights": args.weights, "precision": args.precision, "device": args.device,
        "camera": {"width": args.width, "height": args.height, "rate_hz": args.rate,
                   "topic": f"{CAMERA_NS}/image_raw"},
        "prompt_point": [px, py],
    }
    node = camera = client = None
    status = 1
    t_start = time.monotonic()
    try:
        _log(f"[1/{STAGES}] starting sam2_node (model {args.model}, weights {args.weights}, "
             f"{args.precision}, device {args.device}); log: {out / 'node.log'}")
        node = _start(node_cmd, out / "node.log")
        _log(f"[1/{STAGES}] starting camera_source ({args.width}x{args.height} @ {args.rate:g} Hz); "
             f"log: {out / 'camera.log'}")
        camera = _start(cam_cmd, out / "camera.log")
        client = _Client()
        status = _exercise(args, client, node, summary, (px, py), t_start)
    except KeyboardInterrupt:
        _log("interrupted")
        status = 130
    finally:
        goal = summary.pop("_goal_handle", None)
        if goal is not None and client is not None and status != 0:
            try:
                goal.cancel_goal_async()
                client.spin_for(0.5)
            except Exception:  # noqa: BLE001 - best effort on the way out
                pass
        overlays = list(client.overlays) if client is not None else []
        if client is not None:
            summary["diagnostics"] = dict(client.diagnostics)
            client.close()
        codes = {"camera_source": _stop(camera, "camera_source"), "sam2_node": _stop(node, "sam2_node")}
        summary["exit_codes"] = codes
    summary["overlay_pngs"] = _write_overlays(out, overlays, summary, cv2)
    summary["wall_s"] = round(time.monotonic() - t_start, 2)
    summary["ok"] = status == 0
    _write_summary(out, summary)
    if dummy:
        print(f"{BANNER}\n  REMINDER: DUMMY WEIGHTS, the overlays show MEANINGLESS masks.\n{BANNER}",
              flush=True)
    _log(f"{'done' if status == 0 else 'FAILED'}: {out / 'summary.txt'}")
    pngs = summary["overlay_pngs"]
    if pngs:
        print(f"Overlay images ({len(pngs)}): {out}/overlay_*.png  (first {out / pngs[0]}, last "
              f"{out / pngs[-1]})", flush=True)
    else:
        print(f"No overlay images were received; logs in {out}", flush=True)
    print(f"Summary: {out / 'summary.txt'} and {out / 'summary.json'}; logs: {out / 'node.log'}, "
          f"{out / 'camera.log'}", flush=True)
    return status


def _exercise(args, client: _Client, node: subprocess.Popen, summary: Dict[str, Any], point, t_start) -> int:
    """Segment, then track; fills ``summary``; returns the exit status."""
    # 1. The node is up once its segment service answers success (model loaded, active, a frame).
    _stage(2, f"waiting for /{NODE_NAME} to import torch/transformers, load {args.model} and see a camera "
              f"frame (usually 20-60 s on 2 CPU cores, at most {args.startup_timeout:g} s)")
    deadline = t_start + args.startup_timeout
    beat = _Heartbeat(deadline, pathlib.Path(args.out).resolve() / "node.log")
    if not client.spin_until(lambda: beat() or node.poll() is not None or client.segment.service_is_ready(),
                             max(deadline - time.monotonic(), 0)):
        _log("the segment service never appeared: see node.log")
        return 1
    req = client.Segment.Request()
    req.prompts = [_prompt(*point)]
    res = None
    last_message = ""
    while time.monotonic() < deadline and node.poll() is None:
        t0 = time.perf_counter()
        future = client.segment.call_async(req)
        if not client.spin_until(future.done, max(deadline - time.monotonic(), 1.0)):
            break
        res = future.result()
        round_trip_ms = (time.perf_counter() - t0) * 1000.0
        if res.success:
            break
        if res.message != last_message:
            _log(f"segment not ready yet: {res.message}")
            last_message = res.message
        beat()
        client.spin_for(0.5)
    if node.poll() is not None:
        _log(f"sam2_node exited with code {node.returncode}: see node.log")
        return 1
    if res is None or not res.success:
        _log(f"segment failed: {res.message if res else 'no answer'}")
        return 1
    summary["startup_s"] = round(time.monotonic() - t_start, 2)
    objs = [{"object_id": int(o.object_id), "score": round(float(o.score), 4), "area": int(o.area),
             "visible": bool(o.visible), "bbox": [int(o.x_min), int(o.y_min), int(o.x_max), int(o.y_max)]}
            for o in res.result.objects]
    summary["segment"] = {"inference_ms": round(float(res.inference_ms), 2),
                          "round_trip_ms": round(round_trip_ms, 2), "message": res.message, "objects": objs,
                          "stamp_ns": _stamp_ns(res.result.header)}
    _stage(3, f"node ready after {summary['startup_s']:.1f} s; segment on the latest frame")
    _log(f"segment at ({point[0]:.0f}, {point[1]:.0f}): {res.message}; inference {res.inference_ms:.1f} ms, "
         f"round trip {round_trip_ms:.1f} ms; objects {objs}")

    # 2. Track for args.frames frames.
    if not client.track.wait_for_server(timeout_sec=10.0):
        _log("the track action server is not available")
        return 1
    goal = client.Track.Goal()
    goal.prompts = [_prompt(*point)]
    goal.max_frames = int(args.frames)
    feedback: List[Dict[str, Any]] = []

    def on_feedback(msg) -> None:
        fb = msg.feedback
        obj = fb.masks.objects[0] if fb.masks.objects else None
        feedback.append({"frame_index": int(fb.frame_index), "latency_ms": float(fb.latency_ms),
                         "stamp_ns": _stamp_ns(fb.masks.header), "t": time.monotonic(),
                         "visible": bool(obj.visible) if obj else False,
                         "score": float(obj.score) if obj else 0.0, "event": obj.event if obj else ""})
        n = len(feedback)
        if n == 1 or n % 5 == 0 or n == args.frames:
            per_frame = (feedback[-1]["t"] - feedback[0]["t"]) / (n - 1) if n > 1 else 0.0
            left = f", ~{per_frame * (args.frames - n):.0f} s left" if n > 1 and n < args.frames else ""
            _log(f"track {n}/{args.frames} frames{left}: latency {fb.latency_ms:.1f} ms"
                 + (f", object {obj.object_id} visible={obj.visible} score {obj.score:.3f}" if obj else ""))

    cam_before = len(client.camera_stamps)
    t_goal = time.monotonic()
    send = client.track.send_goal_async(goal, feedback_callback=on_feedback)
    if not client.spin_until(send.done, 30.0) or not send.result().accepted:
        _log("track goal was not accepted: see node.log")
        return 1
    handle = send.result()
    summary["_goal_handle"] = handle
    _stage(4, f"track goal accepted: {args.frames} frames at up to {args.rate:g} Hz")
    result_future = handle.get_result_async()
    budget = 60.0 + 5.0 * args.frames / max(args.rate, 0.1)
    if not client.spin_until(result_future.done, budget):
        _log(f"track goal did not finish within {budget:.0f} s")
        return 1
    summary.pop("_goal_handle", None)
    t_end = time.monotonic()
    client.spin_for(0.5)  # the last overlays
    wrapped = result_future.result()
    result = wrapped.result
    cam_frames = len(client.camera_stamps) - cam_before
    latencies = [f["latency_ms"] for f in feedback]
    span = (feedback[-1]["t"] - feedback[0]["t"]) if len(feedback) > 1 else 0.0
    fps = (len(feedback) - 1) / span if span > 0 else float("nan")
    diag = client.diagnostics
    summary["track"] = {
        "status": {4: "succeeded", 5: "canceled", 6: "aborted"}.get(int(wrapped.status), str(wrapped.status)),
        "reason": result.reason, "frames_requested": int(args.frames),
        "frames_processed": int(result.frames_processed), "feedback_messages": len(feedback),
        "camera_frames_during_goal": cam_frames,
        "dropped_frames_estimate": max(cam_frames - int(result.frames_processed), 0),
        "node_frames_dropped_total": int(diag["frames_dropped"]) if "frames_dropped" in diag else None,
        "duration_s": round(t_end - t_goal, 3), "fps": round(fps, 3) if np.isfinite(fps) else None,
        "latency_ms": {"mean": round(statistics.fmean(latencies), 2) if latencies else None,
                       "p50": round(_percentile(latencies, 50), 2) if latencies else None,
                       "p95": round(_percentile(latencies, 95), 2) if latencies else None,
                       "max": round(max(latencies), 2) if latencies else None},
        "visible_frames": sum(1 for f in feedback if f["visible"]),
        "feedback": [{k: v for k, v in f.items() if k != "t"} for f in feedback],
    }
    t = summary["track"]
    _log(f"track {t['status']} ({t['reason']}): {t['frames_processed']} frames in {t['duration_s']:.1f} s, "
         f"{t['fps']} fps, latency mean {t['latency_ms']['mean']} ms p95 {t['latency_ms']['p95']} ms, "
         f"camera frames {cam_frames}, dropped ~{t['dropped_frames_estimate']}")
    ok = t["status"] == "succeeded" and t["frames_processed"] == args.frames and len(feedback) > 0
    return 0 if ok else 1


def _write_overlays(out: pathlib.Path, overlays: List[Any], summary: Dict[str, Any], cv2) -> List[str]:
    """Write each received ~/overlay as overlay_NNNN.png; tag the segment's and matched track frames."""
    names: List[str] = []
    track_stamps = {f["stamp_ns"] for f in summary.get("track", {}).get("feedback", [])}
    seg_stamp = summary.get("segment", {}).get("stamp_ns")
    matched = 0
    for i, (_, msg) in enumerate(overlays):
        if msg.encoding != "bgr8" or msg.height == 0:
            continue
        img = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.step)[:, : msg.width * 3]
        img = img.reshape(msg.height, msg.width, 3)
        stamp = _stamp_ns(msg.header)
        if stamp == seg_stamp and not names:
            tag = "segment"
        else:
            tag = "track" if stamp in track_stamps else "other"
        matched += tag == "track"
        name = f"overlay_{i:04d}_{tag}.png"
        cv2.imwrite(str(out / name), img)
        names.append(name)
    summary["overlays_matching_track_feedback"] = matched
    return names


def explain_rate(summary: Dict[str, Any]) -> List[str]:
    """What limited the tracking frame rate, in words: the node's time per frame vs the camera's period."""
    t = summary.get("track")
    if not t or not t.get("latency_ms", {}).get("mean"):
        return []
    rate = float(summary["camera"]["rate_hz"])
    period_ms = 1000.0 / rate if rate > 0 else float("inf")
    node_ms = float(t["latency_ms"]["p50"] or t["latency_ms"]["mean"])
    fps = t.get("fps")
    seen, done = int(t.get("camera_frames_during_goal") or 0), int(t["frames_processed"])
    skipped = max(seen - done, 0)
    fps_text = f"{fps:.2f} frames/s" if fps else "n/a"
    lines = [f"What limited the frame rate: tracked at {fps_text}; the camera sent {rate:g} frames/s "
             f"(one every {period_ms:.0f} ms) and the node needed {node_ms:.0f} ms per frame (median, "
             "from the frame's arrival to its result)."]
    if node_ms > 0.9 * period_ms:
        lines.append(f"  -> INFERENCE-BOUND: each frame takes longer than the camera's period, so inference, "
                     f"not the camera, set the pace ({fps_text}). {skipped} of {seen} camera frames "
                     "arrived while it was busy and were skipped (by design the node always takes the "
                     "newest frame, so results never lag behind). A smaller model, a GPU, or a lower "
                     "camera rate removes the skips.")
    else:
        lines.append(f"  -> CAMERA-BOUND: the node needs less time than the camera's period, so it kept up "
                     f"with the camera ({done} of {seen} frames tracked; the camera rate set the pace). "
                     "A faster camera (--rate) would raise the frame rate until inference takes the "
                     f"whole period (~{1000.0 / max(node_ms, 1e-3):.0f} frames/s here).")
    if summary.get("dummy_weights"):
        lines.append("  Timing is real; with dummy weights the masks are not (same network size and speed).")
    return lines


def _write_summary(out: pathlib.Path, summary: Dict[str, Any]) -> None:
    lines = []
    if summary.get("dummy_weights"):
        lines += [BANNER, "DUMMY (RANDOM) WEIGHTS: the masks are MEANINGLESS (plumbing/timing demo).", BANNER]
    lines.append(f"model {summary['model']}  weights {summary['weights']}  precision {summary['precision']}  "
                 f"device {summary['device']}")
    cam = summary["camera"]
    lines.append(f"camera {cam['width']}x{cam['height']} @ {cam['rate_hz']:g} Hz on {cam['topic']}")
    if "startup_s" in summary:
        lines.append(f"node ready after {summary['startup_s']} s (model load + first frame)")
    seg = summary.get("segment")
    if seg:
        lines.append(f"segment: inference {seg['inference_ms']} ms, round trip {seg['round_trip_ms']} ms, "
                     f"objects {[(o['object_id'], o['score'], o['area']) for o in seg['objects']]}")
    t = summary.get("track")
    if t:
        lat = t["latency_ms"]
        lines.append(f"track: {t['status']} ({t['reason']}), "
                     f"{t['frames_processed']}/{t['frames_requested']} frames "
                     f"in {t['duration_s']} s, {t['fps']} fps")
        lines.append(f"track latency ms: mean {lat['mean']}  p50 {lat['p50']}  p95 {lat['p95']}  "
                     f"max {lat['max']}")
        lines.append(f"camera frames during the goal {t['camera_frames_during_goal']}, dropped (not tracked) "
                     f"~{t['dropped_frames_estimate']}; node total dropped {t['node_frames_dropped_total']}")
    summary["explanation"] = explain_rate(summary)
    lines += summary["explanation"]
    lines.append(f"overlay PNGs: {len(summary.get('overlay_pngs', []))} "
                 f"({summary.get('overlays_matching_track_feedback', 0)} match a track feedback frame)")
    lines.append(f"wall time {summary.get('wall_s')} s; result: {'OK' if summary.get('ok') else 'FAILED'}")
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    (out / "summary.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point: ``python -m anima_sam2_ros.demo``."""
    args = parse_args(argv)
    _require_interfaces()
    return run(args)


if __name__ == "__main__":
    sys.exit(main())

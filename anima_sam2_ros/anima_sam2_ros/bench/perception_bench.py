"""Perception-pipeline benchmark (issue 16): 3D extraction cost per object, detections -> masks latency.

* ``extract3d`` (this process, no ROS needed): ``depth3d.object_geometry`` on a registered depth
  image at ``--resolution`` (default 640x480) from ``camera_source.box_scene``: boxes of three
  sizes at known distances, each with an exact mask and with a mask spilling 5 px onto the wall
  behind it (the discontinuity cut at work), plus a whole-frame mask (the worst case, what dummy
  weights produce). Centroid / extent only, and with the decimated cloud (stride 2); with ROS
  messages importable also the ``Detection3DArray`` + ``PointCloud2`` building. Median ms.
* ``node`` (needs the built workspace; ``--skip-node`` skips it): ``sam2_node`` as a child
  process (``--model``, default test-micro with dummy weights) with ``topics.detections`` on and
  ``detections.reprompt_interval`` 0; this process streams camera frames at ``--rate`` Hz and,
  once per trial, right after a frame, a ``Detection2DArray`` stamped with that frame (a detector
  with zero latency; a box re-prompting the same object). Latency = receipt here of
  the ``~/masks`` message in which the detected object is added / re-prompted - the array's
  publish time (detector -> node transport, association, the tracking step that applies the box,
  result conversion, node -> client transport). Also counted: how often the box was applied on
  exactly the frame it was stamped with (else: the next frame, when the tracker had already taken
  the stamped one).

    scripts/ws.sh env scripts/netns.sh python -m anima_sam2_ros.bench.perception_bench [--json]
"""

from __future__ import annotations

import argparse
import array
import logging
import os
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from . import (
    SCHEMA_VERSION,
    add_model_arguments,
    emit_report,
    format_table,
    machine_info,
    parse_resolution,
    summarize,
    time_calls,
)


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    from anima_sam2_ros.node.depth3d import _erode

    padded = np.pad(~mask, r + 1, constant_values=True)
    return ~_erode(padded, r)[r + 1:-r - 1, r + 1:-r - 1]


def run_extract3d(width: int = 640, height: int = 480, runs: int = 30) -> Dict[str, Any]:
    """Time per-object 3D extraction (see the module docstring)."""
    from anima_sam2_ros.node.camera_source import box_scene
    from anima_sam2_ros.node.depth3d import Intrinsics, object_geometry

    cases = {"small box (10x8 cm at 1.0 m)": ((0.01, 0.01, 1.05), (0.10, 0.08, 0.10)),
             "medium box (30x20 cm at 0.9 m)": ((0.02, -0.01, 1.0), (0.30, 0.20, 0.20)),
             "large box (60x45 cm at 0.7 m)": ((0.0, 0.0, 0.8), (0.60, 0.45, 0.20))}
    try:
        from std_msgs.msg import Header

        from anima_sam2_ros.node import conversions
        header: Any = Header(frame_id="bench")
    except ImportError:
        conversions = header = None
    rows = []
    for name, (center, size) in cases.items():
        depth_m, mask, truth = box_scene(width, height, center=center, size=size, background_m=2.0)
        depth_mm = np.round(depth_m * 1000).astype(np.uint16)
        intr = Intrinsics.from_k(truth["k"], width, height)
        masks = {"exact": mask, "spill 5 px": _dilate(mask, 5)}
        if name.startswith("large"):
            masks["whole frame"] = np.ones_like(mask)
        for mname, m in masks.items():
            def extract(m=m, depth_mm=depth_mm, intr=intr, stride=0):
                return object_geometry(1, depth_mm, 0.001, m, intr, cloud_stride=stride)
            geom = object_geometry(1, depth_mm, 0.001, m, intr)
            err_c = float(np.abs(geom.centroid - truth["centroid"]).max()) if mname != "whole frame" else None
            err_e = float(np.abs(geom.size - truth["extent"]).max()) if mname != "whole frame" else None
            row = {"object": name, "mask": mname, "mask_px": int(m.sum()), "points": geom.n_points,
                   "rejected": geom.n_rejected, "centroid_err_m": err_c, "extent_err_m": err_e,
                   "geometry_ms": time_calls(extract, runs),
                   "with_cloud_ms": time_calls(lambda extract=extract: extract(stride=2), runs)}
            if conversions is not None:
                g = object_geometry(1, depth_mm, 0.001, m, intr, cloud_stride=2)

                def build(g=g):
                    conversions.detection3d_array_msg([g], header)
                    conversions.pointcloud2_msg(g.points, header, np.full(len(g.points), 1, np.uint32))
                row["messages_ms"] = time_calls(build, runs)
            rows.append(row)
    return {"resolution": [width, height], "runs": runs, "cases": rows}


# ----------------------------------------------------------------------------------------------
# node: detections -> masks
# ----------------------------------------------------------------------------------------------
def run_node(model: str, weights: str, precision: str, device: str, width: int, height: int,
             trials: int, rate: float, threads: int, start_timeout: float,
             say: Callable[[str], None]) -> Dict[str, Any]:
    """Detections -> ~/masks latency across processes (see the module docstring)."""
    import rclpy
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    from vision_msgs.msg import Detection2D, Detection2DArray

    from anima_sam2_msgs.msg import ObjectMaskArray

    from .node_bench import MovingScene, _Child, _python_env, installed_config

    name = f"sam2_pbench_{os.getpid()}"
    cam_topic, det_topic = f"/{name}/camera", f"/{name}/detector"
    args = ["-m", "anima_sam2_ros.node.sam2_node", "--ros-args"]
    cfg = installed_config()
    if cfg:
        args += ["--params-file", cfg]
    overrides = {"model": model, "weights": weights, "precision": precision, "device": device,
                 "autostart": "true", "topics.image": cam_topic, "topics.camera_info": "''",
                 "topics.detections": det_topic, "detections.reprompt_interval": 0.0,
                 "output.diagnostics": "false", "camera_timeout": 3600.0}
    args += ["-r", f"__node:={name}"]
    for key, value in overrides.items():
        args += ["-p", f"{key}:={value}"]
    say(f"starting sam2_node {name} ({model}, {precision}, {device}) ...")
    node = _Child(args, _python_env(threads), "node")
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    client = rclpy.create_node(f"pbench_client_{os.getpid()}", context=ctx)
    lock = threading.Lock()
    received: List[Any] = []

    def on_masks(msg: Any) -> None:
        now = time.monotonic()
        events = [(o.object_id, o.event) for o in msg.objects if o.event in ("added", "reprompted")]
        if events:
            with lock:
                received.append((now, (msg.header.stamp.sec, msg.header.stamp.nanosec), events))

    qos = QoSProfile(depth=20, reliability=ReliabilityPolicy.RELIABLE)
    client.create_subscription(ObjectMaskArray, f"/{name}/masks", on_masks, qos)
    cam = client.create_publisher(Image, cam_topic,
                                  QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT))
    det = client.create_publisher(Detection2DArray, det_topic, qos)
    executor = MultiThreadedExecutor(num_threads=2, context=ctx)
    executor.add_node(client)
    spin = threading.Thread(target=executor.spin, daemon=True)
    spin.start()
    scene = MovingScene(width, height)
    frames = [scene.frame(t) for t in range(12)]
    latencies, exact, lost = [], 0, 0
    trial_box: Dict[str, Any] = {}  # the detector's request: set -> published right after the next frame
    sent = threading.Event()
    stop = threading.Event()

    def camera() -> None:  # a camera streaming at `rate`; the detector answers right after a frame
        seq = 0
        while not stop.is_set():
            img = Image(height=height, width=width, encoding="rgb8", step=width * 3)
            img.header.frame_id = "bench_camera"
            img.header.stamp.sec, img.header.stamp.nanosec = 100 + seq, 0
            img.data = array.array("B", frames[seq % len(frames)].tobytes())
            seq += 1
            cam.publish(img)
            if trial_box.get("want"):
                arr = Detection2DArray(header=img.header)
                d = Detection2D()
                d.bbox.center.position.x, d.bbox.center.position.y = width / 2.0, height / 2.0
                d.bbox.size_x, d.bbox.size_y = width / 4.0, height / 4.0
                arr.detections = [d]
                with lock:
                    trial_box.update(want=False, start=len(received), stamp=(img.header.stamp.sec, 0),
                                     t_pub=time.monotonic())
                det.publish(arr)
                sent.set()
            stop.wait(1.0 / rate)

    cam_thread = threading.Thread(target=camera, daemon=True)
    try:
        deadline = time.monotonic() + start_timeout
        while det.get_subscription_count() == 0 or cam.get_subscription_count() == 0:
            if time.monotonic() > deadline or not node.alive():
                raise RuntimeError(f"sam2_node did not come up:\n{node.log_tail()}")
            time.sleep(0.1)
        time.sleep(1.0)
        cam_thread.start()
        for trial in range(trials + 1):  # trial 0 (new object, warm-up) is not timed
            sent.clear()
            trial_box["want"] = True
            if not sent.wait(10.0):
                raise RuntimeError("the camera thread stopped")
            with lock:
                start, stamp, t_pub = trial_box["start"], trial_box["stamp"], trial_box["t_pub"]
            hit = None
            while time.monotonic() - t_pub < 20.0 and hit is None:
                with lock:
                    hit = next((r for r in received[start:] if r[1] >= stamp), None)
                time.sleep(0.001)
            if trial == 0:
                continue
            if hit is None:
                lost += 1
            else:
                latencies.append((hit[0] - t_pub) * 1000.0)
                exact += int(hit[1] == stamp)
            time.sleep(0.3)
    finally:
        stop.set()
        if cam_thread.is_alive():
            cam_thread.join(5)
        executor.shutdown(timeout_sec=2.0)
        client.destroy_node()
        rclpy.try_shutdown(context=ctx)
        code = node.stop()
    return {"model": model, "precision": precision, "device": device, "resolution": [width, height],
            "trials": trials, "rate_hz": rate, "latency_ms": summarize(latencies) if latencies else None,
            "applied_on_stamped_frame": exact, "no_answer": lost, "node_exit": code}


def format_report(report: Dict[str, Any]) -> str:
    """The tables of a report."""
    ex = report["extract3d"]
    lines = [f"Per-object 3D extraction at {ex['resolution'][0]}x{ex['resolution'][1]} (median ms, "
             f"{ex['runs']} runs)"]
    rows = [(c["object"], c["mask"], c["mask_px"], c["points"], c["rejected"],
             c["centroid_err_m"] * 100 if c["centroid_err_m"] is not None else None,
             c["extent_err_m"] * 100 if c["extent_err_m"] is not None else None,
             c["geometry_ms"]["median"], c["with_cloud_ms"]["median"],
             c["messages_ms"]["median"] if "messages_ms" in c else None) for c in ex["cases"]]
    lines.append(format_table(("object", "mask", "mask px", "points", "rejected", "centroid err cm",
                               "extent err cm", "3D ms", "3D+cloud ms", "msgs ms"), rows))
    nd = report.get("node")
    if nd:
        lat = nd["latency_ms"] or {}
        lines += ["", f"Detections -> ~/masks across processes ({nd['model']}, {nd['precision']}, "
                      f"{nd['resolution'][0]}x{nd['resolution'][1]}, {nd['trials']} arrays, camera at "
                      f"{nd['rate_hz']:g} Hz)",
                  format_table(("median ms", "p90 ms", "max ms", "on the stamped frame", "no answer"),
                               [(lat.get("median"), lat.get("p90"), lat.get("max"),
                                 f"{nd['applied_on_stamped_frame']}/{nd['trials']}", nd["no_answer"])])]
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m anima_sam2_ros.bench.perception_bench``."""
    parser = argparse.ArgumentParser(prog="anima-sam2 bench perception", description=__doc__.split("\n\n")[0])
    add_model_arguments(parser, model="test-micro", device="cpu")
    parser.add_argument("--resolution", default="640x480", help="WIDTHxHEIGHT (default 640x480)")
    parser.add_argument("--runs", type=int, default=30, help="timed runs per 3D case")
    parser.add_argument("--trials", type=int, default=20, help="timed detection arrays sent to the node")
    parser.add_argument("--rate", type=float, default=10.0, help="camera Hz for the node part")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the node")
    parser.add_argument("--start-timeout", type=float, default=180.0, help="seconds for the node to come up")
    parser.add_argument("--skip-node", action="store_true", help="only the 3D extraction (no ROS)")
    parser.add_argument("--json", action="store_true", help="print only the JSON report")
    parser.add_argument("--out", default=None, help="also write the JSON report to this file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR if args.json else logging.WARNING)
    try:
        width, height = parse_resolution(args.resolution)
    except ValueError as exc:
        print(f"perception bench: {exc}", file=sys.stderr)
        return 2

    from anima_sam2_ros.progress import Progress

    progress = Progress(1 if args.skip_node else 2, enabled=not args.json)  # stderr, as the other benches

    def say(text: str) -> None:
        progress.stage(text.rstrip(" ."))

    say("3D extraction ...")
    report: Dict[str, Any] = {"schema": SCHEMA_VERSION, "bench": "perception", "machine": machine_info(),
                              "extract3d": run_extract3d(width, height, max(1, args.runs))}
    if not args.skip_node:
        os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
        os.environ.pop("ROS_STATIC_PEERS", None)
        os.environ["ROS_DOMAIN_ID"] = str(1 + os.getpid() % 39)  # a bench-only domain (as node_bench)
        report["node"] = run_node(args.model, args.weights, args.precision, args.device, width, height,
                                  max(1, args.trials), max(0.1, args.rate), args.threads,
                                  args.start_timeout, say)
    progress.done()
    return emit_report(report, args, format_report)


if __name__ == "__main__":
    raise SystemExit(main())

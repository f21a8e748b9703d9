"""``anima-sam2``: the command-line tool of anima_sam2_ros.

What ``ros2 service call`` / ``ros2 action send_goal`` do, for machines without ros2cli, plus the
offline tools::

    anima-sam2 segment [--node /sam2_node] [--image-file F.png|F.npy] PROMPT... [--multimask]
                       [--out masks.png] [--overlay overlay.png] [--json]
    anima-sam2 track   [--node /sam2_node] PROMPT... [--frames N] [--min-score S]
                       [--max-lost-frames N] [--json]                    (Ctrl-C cancels the goal)
    anima-sam2 quantize ...    INT8 artifact (anima_sam2_ros.quant.quantize)
    anima-sam2 evaluate ...    INT8 vs FP32 fidelity (anima_sam2_ros.quant.evaluate)
    anima-sam2 bench ...       benchmarks (anima_sam2_ros.bench), when installed

PROMPT, in order: ``--point x,y[,label]`` (label 1 foreground (default), 0 background),
``--box x_min,y_min,x_max,y_max``, ``--mask-file F.png`` (non-zero = object), all in source-image
pixels, for the current object; ``--object ID`` starts the next object (ID 0 = let the node assign
one). Everything before the first ``--object`` is object 0. Example, two objects at once::

    anima-sam2 segment --point 320,240 --object 0 --box 10,10,80,60 --out labels.png

``segment`` without ``--image-file`` segments the node's latest camera frame. ``--out`` writes the
masks as a label PNG (pixel = object id, 8 or 16 bit), ``--overlay`` the colour overlay (needs
``--image-file``). Exit status: 0 success, 1 the node answered with a failure (or the goal was
aborted), 2 usage errors, 3 node not reachable, 4 an optional dependency is missing (one line
names what to install: torchao for ``quantize``, ROS 2 and the built interfaces for ``segment``
and ``track``).

rclpy is imported only by ``segment`` and ``track``; the offline sub-commands are imported only
when run, so ``anima-sam2 --help`` is fast.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import signal
import sys
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

#: Sub-commands implemented elsewhere: name -> (module, function taking argv, help). The module is
#: imported only when the sub-command runs. The benchmarks add ``bench`` through the same hook:
#: ``anima_sam2_ros.bench.cli.main(argv) -> int`` (falls back to ``anima_sam2_ros.bench.main``).
DELEGATED: Dict[str, Tuple[Tuple[str, ...], str, str]] = {
    "quantize": (("anima_sam2_ros.quant.quantize",), "main_quantize",
                 "quantize a SAM 2.1 model to an INT8 artifact (torchao)"),
    "evaluate": (("anima_sam2_ros.quant.evaluate",), "main_evaluate",
                 "compare two models (e.g. INT8 vs FP32) on synthetic scenes"),
    "bench": (("anima_sam2_ros.bench.cli", "anima_sam2_ros.bench"), "main",
              "benchmarks (engine, stream, node)"),
}

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_MISSING = 0, 1, 2, 3, 4

#: What to install when an optional module is missing, by top-level module name.
_ROS_HINT = ("{command} needs ROS 2 (rclpy) and this workspace's interfaces (anima_sam2_msgs, built "
             "by colcon): source your ROS 2 setup.bash and the workspace's install/setup.bash (in a "
             "checkout: scripts/ws.sh env anima-sam2 {sub} ...); a `pip install .` venv has neither")
INSTALL_HINTS: Dict[str, str] = {
    "torchao": ('{command} needs torchao: pip install "anima-sam2[int8]" (in a checkout: '
                'pip install ".[int8]"; on a robot the torchao release matching its torch)'),
    "cv2": '{command} needs OpenCV: pip install "anima-sam2[images]" (or opencv-python-headless)',
    "tqdm": '{command} needs tqdm: pip install tqdm',
    **{name: _ROS_HINT for name in ("rclpy", "anima_sam2_msgs", "sensor_msgs", "geometry_msgs", "std_msgs",
                                    "action_msgs", "rosidl_runtime_py", "ament_index_python")},
}
#: Optional modules a sub-command needs, checked before it loads a model or contacts a node.
NEEDS: Dict[str, Tuple[str, ...]] = {
    "quantize": ("torchao",),
    "segment": ("rclpy", "anima_sam2_msgs"),
    "track": ("rclpy", "anima_sam2_msgs"),
}


def missing_dependency(name: Optional[str], sub: str) -> Optional[str]:
    """The one-line message for a missing optional module ``name`` (dotted ok), or None if unknown."""
    top = (name or "").split(".")[0]
    hint = INSTALL_HINTS.get(top)
    if hint is None:
        return None
    return "error: " + hint.format(command=f"anima-sam2 {sub}", sub=sub)


#: Options of a sub-command that read or write image files (OpenCV), checked with NEEDS.
IMAGE_FILE_OPTIONS: Dict[str, Tuple[str, ...]] = {"segment": ("--out", "--overlay", "--image-file", "-i")}


def _check_needs(sub: str, argv: Sequence[str] = ()) -> Optional[str]:
    """The message for the first module ``sub`` needs (with ``argv``'s options) that is missing, else None."""
    import importlib.util

    options = IMAGE_FILE_OPTIONS.get(sub, ())
    files = any(a.split("=", 1)[0] in options for a in argv)  # --out x and --out=x
    for module in (("cv2",) if files else ()) + NEEDS.get(sub, ()):
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            return missing_dependency(module, sub)
    return None


# ----------------------------------------------------------------------------------------------
# prompt arguments (kept in command-line order)
# ----------------------------------------------------------------------------------------------
def _floats(text: str, count: Sequence[int], what: str) -> List[float]:
    try:
        values = [float(v) for v in text.replace(" ", "").split(",") if v != ""]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what} {text!r}: expected numbers separated by commas") from None
    if len(values) not in count:
        raise argparse.ArgumentTypeError(f"{what} {text!r}: expected {' or '.join(map(str, count))} numbers")
    if any(not np.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"{what} {text!r}: not finite")
    return values


def parse_point(text: str) -> Tuple[float, float, int]:
    """``x,y[,label]`` -> (x, y, label); label 1 (foreground, default) or 0 (background)."""
    values = _floats(text, (2, 3), "point")
    label = 1 if len(values) == 2 else values[2]
    if label not in (0, 1):
        raise argparse.ArgumentTypeError(f"point {text!r}: label must be 1 (foreground) or 0 (background)")
    return values[0], values[1], int(label)


def parse_box(text: str) -> Tuple[float, float, float, float]:
    """``x_min,y_min,x_max,y_max`` -> a tuple (x_max > x_min, y_max > y_min)."""
    x0, y0, x1, y1 = _floats(text, (4,), "box")
    if x1 <= x0 or y1 <= y0:
        raise argparse.ArgumentTypeError(f"box {text!r}: need x_min < x_max and y_min < y_max")
    return x0, y0, x1, y1


def parse_object_id(text: str) -> int:
    """A non-negative object id (0 = the node assigns one)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"object id {text!r}: not an integer") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"object id {text!r}: must be in 0 .. 2^32-1")
    return value


class _Ordered(argparse.Action):
    """Appends (kind, value) to ``namespace.prompt_items``, preserving command-line order."""

    def __call__(self, parser, namespace, values, option_string=None):
        items = list(getattr(namespace, "prompt_items", None) or [])
        items.append((self.dest, values))
        namespace.prompt_items = items


def _add_prompt_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("prompts (in order; --object starts the next object)")
    group.add_argument("--point", "-p", dest="point", type=parse_point, action=_Ordered, metavar="X,Y[,L]",
                       help="point in source pixels; label 1 = foreground (default), 0 = background")
    group.add_argument("--box", "-b", dest="box", type=parse_box, action=_Ordered, metavar="X0,Y0,X1,Y1",
                       help="box in source pixels")
    group.add_argument("--mask-file", dest="mask", action=_Ordered, metavar="FILE",
                       help="mask prompt image (PNG or .npy, non-zero = object, source resolution)")
    group.add_argument("--object", "-o", dest="object", type=parse_object_id, action=_Ordered, metavar="ID",
                       help="start the next object with this id (0 = node assigns)")
    parser.set_defaults(prompt_items=[])


def group_prompts(items: Sequence[Tuple[str, Any]]) -> List[Dict[str, Any]]:
    """Ordered (kind, value) items -> one dict per object: id, points, labels, box, mask (file).

    Raises ValueError for an object without any prompt or with two boxes / two masks.
    """
    objects: List[Dict[str, Any]] = []
    current: Optional[Dict[str, Any]] = None
    for kind, value in items:
        if kind == "object" or current is None:
            current = {"object_id": value if kind == "object" else 0, "points": [], "labels": [],
                       "box": None, "mask": None}
            objects.append(current)
            if kind == "object":
                continue
        if kind == "point":
            current["points"].append((value[0], value[1]))
            current["labels"].append(value[2])
        elif kind in ("box", "mask"):
            if current[kind] is not None:
                flag = "--box" if kind == "box" else "--mask-file"
                raise ValueError(f"object {len(objects)}: more than one {flag}; "
                                 "use --object to start another object")
            current[kind] = value
    if not objects:
        raise ValueError("no prompt: give at least one --point, --box or --mask-file")
    for i, obj in enumerate(objects, 1):
        if not obj["points"] and obj["box"] is None and obj["mask"] is None:
            raise ValueError(f"object {i} (id {obj['object_id']}) has no --point, --box or --mask-file")
    ids = [o["object_id"] for o in objects if o["object_id"]]
    if len(ids) != len(set(ids)):
        raise ValueError(f"object ids repeat: {ids}")
    return objects


# ----------------------------------------------------------------------------------------------
# images
# ----------------------------------------------------------------------------------------------
def load_image(path: str) -> Tuple[np.ndarray, str]:
    """Image file -> (array, ROS encoding): PNG/JPEG (colour -> rgb8, grey -> mono8) or .npy.

    A .npy array is (H, W, 3) uint8 RGB or (H, W) uint8 mono.
    """
    import cv2

    if path.lower().endswith(".npy"):
        arr = np.load(path)
    else:
        arr = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        if arr is None:
            raise ValueError(f"cannot read image {path}")
        if arr.ndim == 3 and arr.shape[2] == 4:
            arr = cv2.cvtColor(arr, cv2.COLOR_BGRA2RGB)
        elif arr.ndim == 3:
            arr = cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
    if arr.dtype != np.uint8:
        raise ValueError(f"{path}: need 8-bit pixels, got {arr.dtype}")
    if arr.ndim == 2:
        return np.ascontiguousarray(arr), "mono8"
    if arr.ndim == 3 and arr.shape[2] == 3:
        return np.ascontiguousarray(arr), "rgb8"
    raise ValueError(f"{path}: need an (H, W, 3) or (H, W) image, got shape {arr.shape}")


def image_to_msg(arr: np.ndarray, encoding: str):
    """A uint8 numpy image -> ``sensor_msgs/Image``."""
    import array

    from sensor_msgs.msg import Image

    msg = Image()
    msg.height, msg.width = int(arr.shape[0]), int(arr.shape[1])
    msg.encoding = encoding
    msg.step = msg.width * (1 if arr.ndim == 2 else int(arr.shape[2]))
    msg.data = array.array("B", np.ascontiguousarray(arr).tobytes())
    return msg


def mask_from_msg(msg) -> Optional[np.ndarray]:
    """mono8 ``sensor_msgs/Image`` -> bool (H, W), or None when the message has no pixels."""
    if msg.width == 0 or msg.height == 0 or len(msg.data) == 0:
        return None
    buf = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.step)[:, : msg.width]
    return buf > 0


def build_prompt_msgs(objects: Sequence[Dict[str, Any]]):
    """Grouped prompt dicts -> ``anima_sam2_msgs/Prompt`` messages."""
    from geometry_msgs.msg import Point

    from anima_sam2_msgs.msg import Prompt

    msgs = []
    for obj in objects:
        p = Prompt()
        p.object_id = int(obj["object_id"])
        p.points = [Point(x=float(x), y=float(y), z=0.0) for x, y in obj["points"]]
        p.labels = [int(v) for v in obj["labels"]]
        if obj["box"] is not None:
            p.box = [float(v) for v in obj["box"]]
        if obj["mask"] is not None:
            arr, _ = load_image(obj["mask"])
            if arr.ndim == 3:
                arr = arr.max(axis=2)
            p.mask = image_to_msg(((arr > 0) * 255).astype(np.uint8), "mono8")
        msgs.append(p)
    return msgs


# ----------------------------------------------------------------------------------------------
# printing
# ----------------------------------------------------------------------------------------------
def describe_object(om) -> Dict[str, Any]:
    """``ObjectMask`` -> a plain dict (for printing and JSON)."""
    return {
        "object_id": int(om.object_id), "visible": bool(om.visible), "score": round(float(om.score), 4),
        "object_score": round(float(om.object_score), 4), "area": int(om.area),
        "bbox": [int(om.x_min), int(om.y_min), int(om.x_max), int(om.y_max)],
        "lost": bool(om.lost), "event": str(om.event),
    }


def _object_line(d: Dict[str, Any]) -> str:
    state = "visible" if d["visible"] else ("LOST" if d["lost"] else "hidden")
    event = f"  [{d['event']}]" if d["event"] else ""
    return (f"  object {d['object_id']:>3}: {state:7s} score {d['score']:.3f} "
            f"presence {d['object_score']:.3f} area {d['area']:>7} bbox {d['bbox']}{event}")


def _stamp(header) -> float:
    return header.stamp.sec + header.stamp.nanosec * 1e-9


def _results_to_engine(objects) -> list:
    from anima_sam2_ros.engine.types import ObjectResult

    out = []
    for om in objects:
        mask = mask_from_msg(om.mask)
        if mask is None:
            continue
        out.append(ObjectResult(object_id=int(om.object_id), mask=mask, score=float(om.score),
                                object_score=float(om.object_score), visible=bool(om.visible),
                                bbox=(int(om.x_min), int(om.y_min), int(om.x_max), int(om.y_max)),
                                area=int(om.area)))
    return out


# ----------------------------------------------------------------------------------------------
# ROS plumbing (rclpy imported here only)
# ----------------------------------------------------------------------------------------------
class _Ros:
    """An rclpy context + node + executor for one command; SIGINT stays a KeyboardInterrupt."""

    def __init__(self, name: str) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self.rclpy = rclpy
        self.context = rclpy.Context()
        try:
            from rclpy.signals import SignalHandlerOptions

            rclpy.init(context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        except (ImportError, TypeError):  # very old rclpy: default handlers
            rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def spin_until(self, future, timeout: Optional[float], stop: Optional[threading.Event] = None) -> bool:
        """Spin until ``future`` is done, ``timeout`` seconds pass (None = forever) or ``stop`` is set."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not future.done():
            if deadline is not None and time.monotonic() >= deadline:
                return False
            if stop is not None and stop.is_set():
                return False
            self.executor.spin_once(timeout_sec=0.05)
        return True

    def close(self) -> None:
        """Portable shutdown: executor, node, context."""
        try:
            self.executor.shutdown(timeout_sec=2.0)
        finally:
            self.node.destroy_node()
            self.rclpy.try_shutdown(context=self.context)


@contextlib.contextmanager
def _ctrl_c_sets(event: threading.Event) -> Iterator[None]:
    """SIGINT sets ``event`` instead of raising KeyboardInterrupt inside rclpy's executor.

    A KeyboardInterrupt that lands inside ``spin_once`` can leave the executor unable to spin
    again (seen: the cancel request never sent, the process hanging after Ctrl-C).
    """
    try:
        previous = signal.signal(signal.SIGINT, lambda *_: event.set())
    except ValueError:  # not the main thread (a test calling main()): Ctrl-C cannot reach it anyway
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _name(node: str, leaf: str) -> str:
    node = node if node.startswith("/") else "/" + node
    return node.rstrip("/") + "/" + leaf


def _wait_server(ros: _Ros, ready: Callable[[float], bool], what: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready(0.2):
            return True
        ros.executor.spin_once(timeout_sec=0.05)
    print(f"error: {what} is not available after {timeout:g} s: is sam2_node running and active, "
          "with the same ROS_DOMAIN_ID (and ROS_AUTOMATIC_DISCOVERY_RANGE)?", file=sys.stderr)
    return False


def run_segment(args: argparse.Namespace) -> int:
    """``anima-sam2 segment``: one Segment service call; prints the objects; writes PNGs."""
    try:
        objects = group_prompts(args.prompt_items)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    image = encoding = None
    if args.image_file:
        try:
            image, encoding = load_image(args.image_file)
        except (OSError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
    if args.overlay and image is None:
        print("error: --overlay needs --image-file (the client does not have the camera frame)",
              file=sys.stderr)
        return EXIT_USAGE

    from anima_sam2_msgs.srv import Segment

    ros = _Ros("anima_sam2_cli_segment")
    try:
        service = _name(args.node, "segment")
        client = ros.node.create_client(Segment, service)
        if not _wait_server(ros, lambda t: client.wait_for_service(timeout_sec=t), f"service {service}",
                            args.wait):
            return EXIT_UNREACHABLE
        req = Segment.Request()
        try:
            req.prompts = build_prompt_msgs(objects)
        except (OSError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        req.multimask_output = bool(args.multimask)
        if image is not None:
            req.image = image_to_msg(image, encoding)
        t0 = time.perf_counter()
        future = client.call_async(req)
        if not ros.spin_until(future, args.timeout):
            print(f"error: no answer from {service} within {args.timeout:g} s", file=sys.stderr)
            return EXIT_UNREACHABLE
        round_trip_ms = (time.perf_counter() - t0) * 1000.0
        res = future.result()
        summary = {
            "success": bool(res.success), "message": res.message,
            "inference_ms": round(float(res.inference_ms), 2),
            "round_trip_ms": round(round_trip_ms, 2), "frame_id": res.result.header.frame_id,
            "stamp": _stamp(res.result.header), "objects": [describe_object(o) for o in res.result.objects],
        }
        if args.json:
            print(json.dumps(summary, indent=2))
        else:
            status = "ok" if res.success else "FAILED"
            print(f"segment {status}: {res.message or '-'}  (inference {res.inference_ms:.1f} ms, "
                  f"round trip {round_trip_ms:.1f} ms, frame {res.result.header.frame_id!r} "
                  f"@ {summary['stamp']:.3f})")
            for d in summary["objects"]:
                print(_object_line(d))
        if not res.success:
            return EXIT_FAILED
        return _write_outputs(args, res.result.objects, image)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_FAILED
    finally:
        ros.close()


def _write_outputs(args: argparse.Namespace, objects, image: Optional[np.ndarray]) -> int:
    if not (args.out or args.overlay):
        return EXIT_OK
    import cv2

    from anima_sam2_ros.node import visualization

    results = _results_to_engine(objects)
    if objects and not results:
        print("warning: the node sent no mask pixels (parameter output.mask_in_results is false)",
              file=sys.stderr)
    if args.out:
        if results:
            shape = results[0].mask.shape
        elif image is not None:
            shape = image.shape[:2]
        else:
            shape = (1, 1)
        labels = visualization.label_image(results, shape)
        if not cv2.imwrite(args.out, labels):
            print(f"error: cannot write {args.out}", file=sys.stderr)
            return EXIT_USAGE
        print(f"wrote {args.out} ({labels.dtype}, pixel = object id)")
    if args.overlay and image is not None:
        overlay = visualization.overlay_image(image, results, 0.5)
        if not cv2.imwrite(args.overlay, overlay):
            print(f"error: cannot write {args.overlay}", file=sys.stderr)
            return EXIT_USAGE
        print(f"wrote {args.overlay}")
    return EXIT_OK


_GOAL_STATUS = {0: "unknown", 1: "accepted", 2: "executing", 3: "canceling", 4: "succeeded", 5: "canceled",
                6: "aborted"}


def run_track(args: argparse.Namespace) -> int:
    """``anima-sam2 track``: send a Track goal, print feedback per frame; Ctrl-C cancels it."""
    try:
        objects = group_prompts(args.prompt_items)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE

    from rclpy.action import ActionClient

    from anima_sam2_msgs.action import Track

    ros = _Ros("anima_sam2_cli_track")
    goal_handle = None
    try:
        action = _name(args.node, "track")
        client = ActionClient(ros.node, Track, action)
        if not _wait_server(ros, lambda t: client.wait_for_server(timeout_sec=t), f"action {action}",
                            args.wait):
            return EXIT_UNREACHABLE
        goal = Track.Goal()
        try:
            goal.prompts = build_prompt_msgs(objects)
        except (OSError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        goal.max_frames = int(args.frames)
        goal.min_score = float(args.min_score)
        goal.max_lost_frames = int(args.max_lost_frames)

        def on_feedback(msg) -> None:
            fb = msg.feedback
            objs = [describe_object(o) for o in fb.masks.objects]
            if args.json:
                print(json.dumps({"frame_index": int(fb.frame_index),
                                  "latency_ms": round(float(fb.latency_ms), 2),
                                  "stamp": _stamp(fb.masks.header), "objects": objs}), flush=True)
            else:
                print(f"frame {fb.frame_index:>5}  latency {fb.latency_ms:7.1f} ms  "
                      f"stamp {_stamp(fb.masks.header):.3f}", flush=True)
                for d in objs:
                    print(_object_line(d), flush=True)

        send = client.send_goal_async(goal, feedback_callback=on_feedback)
        if not ros.spin_until(send, args.wait):
            print(f"error: {action} did not answer the goal request", file=sys.stderr)
            return EXIT_UNREACHABLE
        goal_handle = send.result()
        if not goal_handle.accepted:
            print("goal rejected by the node (inactive, too many objects or goals, or invalid prompts: "
                  "see the node's log)", file=sys.stderr)
            return EXIT_FAILED
        if not args.json:
            print(f"goal accepted: {len(objects)} object(s), max_frames {args.frames or 'unlimited'} "
                  "(Ctrl-C cancels)", flush=True)
        result_future = goal_handle.get_result_async()
        interrupted = threading.Event()
        with _ctrl_c_sets(interrupted):
            ros.spin_until(result_future, None, stop=interrupted)
            if not result_future.done():
                print("\ncanceling the goal ...", file=sys.stderr, flush=True)
                cancel = goal_handle.cancel_goal_async()
                ros.spin_until(cancel, 10.0)
                if not ros.spin_until(result_future, 15.0):
                    print("error: no result after cancel", file=sys.stderr)
                    return EXIT_FAILED
        wrapped = result_future.result()
        res = wrapped.result
        status = _GOAL_STATUS.get(int(wrapped.status), str(wrapped.status))
        summary = {"status": status, "reason": res.reason, "frames_processed": int(res.frames_processed),
                   "object_ids": [int(i) for i in res.object_ids]}
        if args.json:
            print(json.dumps({"result": summary}))
        else:
            print(f"goal {status}: reason {res.reason!r}, {res.frames_processed} frames, objects "
                  f"{summary['object_ids']}")
        return EXIT_OK if status in ("succeeded", "canceled") else EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_FAILED
    finally:
        ros.close()


# ----------------------------------------------------------------------------------------------
# parser and entry point
# ----------------------------------------------------------------------------------------------
def _add_node_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--node", "-n", default="/sam2_node",
                        help="fully qualified node name (default /sam2_node)")
    parser.add_argument("--wait", type=float, default=10.0,
                        help="seconds to wait for the node's service / action server (default 10)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text}: must be >= 0")
    return value


def _score(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text}: must be in [0, 1]")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The ``anima-sam2`` argument parser (the delegated sub-commands parse their own arguments)."""
    parser = argparse.ArgumentParser(
        prog="anima-sam2", description="SAM 2.1 for ROS 2: prompt a running sam2_node, quantize, evaluate.",
        epilog="Run 'anima-sam2 COMMAND --help' for a command's options.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    seg = sub.add_parser("segment", help="segment an image (or the latest camera frame) with prompts",
                         description="Call the node's ~/segment service (like `ros2 service call`).")
    _add_node_arguments(seg)
    seg.add_argument("--image-file", "-i", default=None,
                     help="image to segment (PNG/JPEG, or .npy uint8 RGB/mono); default: the latest frame")
    _add_prompt_arguments(seg)
    seg.add_argument("--multimask", action="store_true", help="let the node pick the best of 3 masks")
    seg.add_argument("--out", default=None, help="write the masks as a label PNG (pixel = object id)")
    seg.add_argument("--overlay", default=None, help="write a colour overlay PNG (needs --image-file)")
    seg.add_argument("--timeout", type=float, default=60.0,
                     help="seconds to wait for the answer (default 60)")
    seg.set_defaults(func=run_segment)

    trk = sub.add_parser("track", help="track objects over the camera stream (Ctrl-C cancels)",
                         description="Send a ~/track goal and print its feedback (like `ros2 action "
                                     "send_goal --feedback`); Ctrl-C cancels the goal.")
    _add_node_arguments(trk)
    _add_prompt_arguments(trk)
    trk.add_argument("--frames", type=_non_negative_int, default=0, help="max_frames (0 = until cancelled)")
    trk.add_argument("--min-score", type=_score, default=0.0, help="min_score of the goal (0 = off)")
    trk.add_argument("--max-lost-frames", type=_non_negative_int, default=0,
                     help="end once all objects are lost this many frames (0 = never)")
    trk.set_defaults(func=run_track)

    for name, (_, _, text) in DELEGATED.items():
        # Listed for --help; the real parser is the sub-command's own (see main()).
        sub.add_parser(name, help=text, add_help=False)
    return parser


def _delegate(name: str, argv: Sequence[str]) -> int:
    modules, func_name, _ = DELEGATED[name]
    func = None
    for module_name in modules:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                continue  # this hook does not exist in this installation
            raise
        func = getattr(module, func_name, None)
        if func is not None:
            break
    if func is None:
        print(f"anima-sam2 {name}: not available in this installation (no {' or '.join(modules)}"
              f".{func_name})", file=sys.stderr)
        return EXIT_USAGE
    try:
        return int(func(list(argv)) or 0)
    except SystemExit as exc:  # the sub-command's argparse: --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_USAGE)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``anima-sam2``; returns the exit status.

    A missing optional dependency (torchao, ROS 2, OpenCV) ends in one line naming what to
    install and exit status 4, checked before any model is loaded, never in a traceback.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    sub = argv[0] if argv else ""
    wants_help = any(a in ("-h", "--help") for a in argv[1:])
    try:
        if sub in NEEDS and not wants_help:
            message = _check_needs(sub, argv[1:])
            if message:
                print(message, file=sys.stderr)
                return EXIT_MISSING
        if sub in DELEGATED:
            return _delegate(sub, argv[1:])
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help (0) or a usage error (2)
            return int(exc.code or 0)
        return int(args.func(args))
    except ModuleNotFoundError as exc:
        message = missing_dependency(exc.name, sub or "")
        if message is None:
            raise
        print(message, file=sys.stderr)
        return EXIT_MISSING


if __name__ == "__main__":
    sys.exit(main())

"""Long-stream growth benchmark: per-frame time and memory over 1000+ tracked frames.

Two trackers see the same frames (a deterministic synthetic scene), the same point prompts on
frame 0 and the same network weights (dummy, seeded), each in its own child process so their
memory does not mix:

* ``ours``: ``anima_sam2_ros.engine.Tracker.step`` (bounded state, objects batched);
* ``stock``: transformers' ``Sam2VideoModel`` streaming session (a ``Sam2VideoInferenceSession``
  without a video, frames added one by one: ``model(inference_session=s, frame=pixels)``), with
  the same per-frame work around it as ``Tracker.step`` does: preprocessing, and masks upsampled
  to the source size, thresholded and copied to numpy.

At each checkpoint frame (default 50, 500, 1000) it records the median per-frame time over the
preceding ``--window`` frames, the process RSS (after ``gc.collect``) and the bytes of tracking
state (``Tracker.state_nbytes`` / every tensor the session holds). Goals (issue 6): ours stays
within 10% of the first checkpoint at the last one, for time and for RSS; ours is not slower than
the stock session at equal work.

Equal work is measured apart (``--ab-frames``, default 60): both implementations in one process
on the same frames, taking turns which goes first on each frame, timed from frame 20 (memory bank
and object-pointer window full, the stock session not yet grown). The long runs happen at
different times in different processes, so on a shared machine their per-frame times carry the
machine's drift; the interleaved run cancels it.

``python -m anima_sam2_ros.bench.stream_bench [--frames 1000] [--json]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import subprocess
import sys
import tempfile
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
    parse_int_list,
    parse_resolution,
    ratio,
    rss_mb,
    write_report,
)

IMPLS = ("ours", "stock")
GROWTH_LIMIT = 0.10
AB_SKIP = 20  # frames before the equal-work timing: memory (7) and pointer window (16) full


def tensor_bytes(obj: Any, _seen: Optional[set] = None) -> int:
    """Bytes of every distinct torch tensor reachable through dicts, lists, tuples and ``__dict__``."""
    import torch

    seen = set() if _seen is None else _seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v, seen) for v in obj.values())
    if isinstance(obj, (list, tuple, set)):
        return sum(tensor_bytes(v, seen) for v in obj)
    if hasattr(obj, "__dict__") and not isinstance(obj, type) and not isinstance(obj, torch.nn.Module):
        return sum(tensor_bytes(v, seen) for v in vars(obj).values())
    return 0


class _Stock:
    """transformers' streaming session driven frame by frame (what its processor would do)."""

    def __init__(self, loaded: Any, height: int, width: int) -> None:
        import torch
        from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoInferenceSession

        self.loaded = loaded
        self.net = loaded.model
        self.size = loaded.image_size
        self.hw = (height, width)
        self.session = Sam2VideoInferenceSession(video_height=height, video_width=width,
                                                 inference_device=loaded.device,
                                                 inference_state_device=loaded.device,
                                                 video_storage_device=loaded.device, dtype=torch.float32)
        self.frame_idx = 0

    def prompt(self, prompts: Sequence[Any]) -> None:
        """Point prompts for the next frame, all objects in one call (as the processor adds them)."""
        import torch

        h, w = self.hw
        s = self.session
        for p in prompts:
            idx = s.obj_id_to_idx(p.object_id)
            c = torch.tensor(np.asarray(p.points, np.float32)).reshape(-1, 2).clone()
            c[:, 0] *= self.size / w
            c[:, 1] *= self.size / h
            labels = torch.tensor(np.asarray(p.labels), dtype=torch.int32)
            dev = self.loaded.device
            s.add_point_inputs(idx, self.frame_idx, {"point_coords": c[None, None].to(dev),
                                                     "point_labels": labels[None, None].to(dev)})
            s.remove_mask_inputs(idx, self.frame_idx)
        s.obj_with_new_inputs = [p.object_id for p in prompts]

    def step(self, image: np.ndarray, prompts: Optional[Sequence[Any]] = None) -> np.ndarray:
        """One frame: preprocess, stream it, source-size masks on the host (the tracker's work)."""
        from anima_sam2_ros.engine.position_cache import bypass_position_cache
        from anima_sam2_ros.engine.preprocess import preprocess_image, upsample_logits

        if prompts:
            self.prompt(prompts)
        lm = self.loaded
        # transformers' own code path: position encodings recomputed every frame (see position_cache).
        with lm.autocast(), bypass_position_cache(self.net):
            pixels = preprocess_image(image, lm.image_size, lm.device)
            out = self.net(inference_session=self.session, frame=pixels)
            masks = (upsample_logits(out.pred_masks[:, 0].float(), self.hw) > 0).cpu().numpy()
            _ = out.object_score_logits.float().cpu().numpy()
        self.frame_idx += 1
        return masks

    def state_nbytes(self) -> int:
        """Bytes of every tensor the session holds (frames, features cache, per-object outputs)."""
        return tensor_bytes(self.session)


def _stream_setup(model: str, weights: str, precision: str, device: str, resolution: Sequence[int],
                  objects: int, threads: int, seed: int
                  ) -> Tuple[Any, MovingScene, List[Any], Callable[[], None]]:
    """Model, scene, frame-0 point prompts and a device sync, as every stream run sets them up."""
    import torch

    from anima_sam2_ros.engine import Prompt, load_model

    torch.set_num_threads(int(threads))
    scene = MovingScene(int(resolution[0]), int(resolution[1]), seed=seed)
    lm = load_model(model, weights=weights, precision=precision, device=device, seed=seed)
    prompts = [Prompt(object_id=i + 1, points=np.array([xy], np.float32), labels=np.array([1], np.int64))
               for i, xy in enumerate(scene.object_points(int(objects), 0))]
    sync = (lambda: torch.cuda.synchronize(lm.device)) if lm.device.type == "cuda" else (lambda: None)
    return lm, scene, prompts, sync


def run_child(impl: str, model: str = "test-micro", weights: str = "dummy", precision: str = "fp32",
              device: str = "cpu", resolution: Sequence[int] = (320, 240), frames: int = 1000,
              checkpoints: Sequence[int] = (50, 500, 1000), window: int = 25, objects: int = 1,
              threads: int = 1, seed: int = 0, log: Optional[Callable[[str], None]] = None) -> Dict[str, Any]:
    """Track ``frames`` frames with one implementation in this process; per-checkpoint numbers."""
    import torch

    from anima_sam2_ros.engine import Tracker

    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    say = log or (lambda _msg: None)
    lm, scene, prompts, sync = _stream_setup(model, weights, precision, device, resolution, objects,
                                             threads, seed)
    runner: Any = Tracker(lm) if impl == "ours" else _Stock(lm, scene.height, scene.width)
    marks = sorted(set(int(c) for c in checkpoints if 0 < int(c) <= frames))
    times: List[float] = []
    points: Dict[str, Dict[str, Any]] = {}
    cuda = lm.device.type == "cuda"
    gc.collect()
    rss_start = rss_mb()
    t_all = time.perf_counter()
    for t in range(int(frames)):
        image = scene.frame(t)
        sync()
        t0 = time.perf_counter()
        runner.step(image, prompts if t == 0 else None)
        sync()
        times.append((time.perf_counter() - t0) * 1000.0)
        if t + 1 in marks:
            gc.collect()
            recent = times[max(1, t + 1 - int(window)):]  # frame 0 (prompting) is excluded
            points[str(t + 1)] = {
                "frame_ms_median": float(np.median(recent)) if recent else float("nan"),
                "frame_ms_p90": float(np.percentile(recent, 90)) if recent else float("nan"),
                "rss_mb": rss_mb(),
                "state_bytes": int(runner.state_nbytes()),
                "cuda_mb": torch.cuda.memory_allocated(lm.device) / 2**20 if cuda else None,
            }
            spent = time.perf_counter() - t_all
            left = f", ~{spent / (t + 1) * (frames - t - 1):.0f} s left" if t + 1 < frames else ""
            say(f"{impl}: frame {t + 1}/{frames}: {points[str(t + 1)]['frame_ms_median']:.2f} ms/frame, "
                f"RSS {points[str(t + 1)]['rss_mb']:.0f} MiB, state {points[str(t + 1)]['state_bytes']} B "
                f"({spent:.0f} s{left})")
    return {
        "impl": impl,
        "model": lm.name,
        "frames": int(frames),
        "total_s": time.perf_counter() - t_all,
        "rss_start_mb": rss_start,
        "first_frame_ms": times[0] if times else float("nan"),
        "checkpoints": points,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }


def run_equal_work(model: str = "test-micro", weights: str = "dummy", precision: str = "fp32",
                   device: str = "cpu", resolution: Sequence[int] = (320, 240), frames: int = 60,
                   objects: int = 1, threads: int = 1, seed: int = 0) -> Dict[str, Any]:
    """Ours and the stock session on the same frames in one process, alternating which goes first."""
    from anima_sam2_ros.engine import Tracker

    lm, scene, prompts, sync = _stream_setup(model, weights, precision, device, resolution, objects,
                                             threads, seed)
    runners = {"ours": Tracker(lm), "stock": _Stock(lm, scene.height, scene.width)}
    times: Dict[str, List[float]] = {impl: [] for impl in IMPLS}
    for t in range(int(frames)):
        image = scene.frame(t)
        for impl in (IMPLS if t % 2 == 0 else IMPLS[::-1]):
            sync()
            t0 = time.perf_counter()
            runners[impl].step(image, prompts if t == 0 else None)
            sync()
            if t >= AB_SKIP:
                times[impl].append((time.perf_counter() - t0) * 1000.0)
    med = {impl: float(np.median(v)) if v else float("nan") for impl, v in times.items()}
    return {"frames": int(frames), "timed_from": AB_SKIP, "ours_ms_median": med["ours"],
            "stock_ms_median": med["stock"], "time_ours_over_stock": ratio(med["ours"], med["stock"])}


def _spawn_child(impl: str, args: argparse.Namespace, quiet: bool) -> Dict[str, Any]:
    """Run one implementation in a fresh Python process; returns its result dict."""
    fd, path = tempfile.mkstemp(prefix=f"anima_stream_{impl}_", suffix=".json")
    os.close(fd)
    cmd = [sys.executable, "-m", "anima_sam2_ros.bench.stream_bench", "--child", impl, "--child-out", path,
           "--model", args.model, "--weights", args.weights, "--precision", args.precision,
           "--device", args.device, "--resolution", args.resolution, "--frames", str(args.frames),
           "--checkpoints", args.checkpoints, "--window", str(args.window), "--objects", str(args.objects),
           "--threads", str(args.threads), "--seed", str(args.seed), "--ab-frames", str(args.ab_frames)]
    if quiet:
        cmd.append("--json")
    # The child imports this package from where the parent did (source tree or installed workspace).
    import anima_sam2_ros

    env = dict(os.environ)
    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(anima_sam2_ros.__file__)))
    rest = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != pkg_parent]
    env["PYTHONPATH"] = os.pathsep.join([pkg_parent] + rest)
    try:
        proc = subprocess.run(cmd, env=env, stdout=sys.stderr if not quiet else subprocess.DEVNULL,
                              stderr=subprocess.PIPE if quiet else None, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{impl} child failed with exit code {proc.returncode}: "
                               f"{(proc.stderr or '')[-2000:]}")
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    finally:
        os.unlink(path)


def build_report(results: Dict[str, Dict[str, Any]], config: Dict[str, Any],
                 equal_work: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Growth ratios, ours-vs-stock ratios and goals from the children's results."""
    marks = sorted({int(k) for r in results.values() for k in r["checkpoints"]})
    first, last = (str(marks[0]), str(marks[-1])) if marks else ("", "")
    growth: Dict[str, Dict[str, Any]] = {}
    for impl, res in results.items():
        cp = res["checkpoints"]
        if first in cp and last in cp:
            growth[impl] = {
                "time_ratio": ratio(cp[last]["frame_ms_median"], cp[first]["frame_ms_median"]),
                "rss_ratio": ratio(cp[last]["rss_mb"], cp[first]["rss_mb"]),
                "rss_growth_mb": cp[last]["rss_mb"] - cp[first]["rss_mb"],
                "state_ratio": ratio(float(cp[last]["state_bytes"]), float(cp[first]["state_bytes"])),
            }
            for key in ("time", "rss"):
                within = abs(growth[impl][f"{key}_ratio"] - 1.0) <= GROWTH_LIMIT
                growth[impl][f"{key}_within_10pct"] = bool(within)
    compare: Dict[str, Dict[str, float]] = {}
    if "ours" in results and "stock" in results:
        for m in marks:
            o = results["ours"]["checkpoints"].get(str(m))
            s = results["stock"]["checkpoints"].get(str(m))
            if o and s:
                compare[str(m)] = {"time_ours_over_stock": ratio(o["frame_ms_median"], s["frame_ms_median"]),
                                   "rss_ours_minus_stock_mb": o["rss_mb"] - s["rss_mb"]}
    goals = []
    if "ours" in growth:
        g = growth["ours"]
        goals.append(goal(f"ours: frame time at {last} / at {first}", g["time_ratio"], 1.0 + GROWTH_LIMIT,
                          note="within 10%"))
        goals.append(goal(f"ours: RSS at {last} / at {first}", g["rss_ratio"], 1.0 + GROWTH_LIMIT,
                          note="within 10%"))
    if equal_work:
        span = f"frames {equal_work['timed_from']}-{equal_work['frames'] - 1}"
        goals.append(goal(f"ours / stock frame time, equal work ({span}, interleaved)",
                          equal_work["time_ours_over_stock"], 1.0, note="not slower than stock"))
    return {"bench": "stream", "schema": SCHEMA_VERSION, "config": config, "results": results,
            "growth": growth, "ours_vs_stock": compare, "equal_work": equal_work, "goals": goals}


def format_report(report: Dict[str, Any]) -> str:
    """The human-readable table of a stream report."""
    cfg = report["config"]
    lines = [f"stream bench: {cfg['model']} {cfg['precision']} on {cfg['device']}, {cfg['frames']} frames "
             f"{cfg['resolution'][0]}x{cfg['resolution'][1]}, {cfg['objects']} object(s), "
             f"{cfg['threads']} thread(s), median over {cfg['window']} frames, dummy weights"]
    rows = []
    for impl, res in report["results"].items():
        for k, cp in res["checkpoints"].items():
            rows.append([impl, int(k), cp["frame_ms_median"], cp["frame_ms_p90"], cp["rss_mb"],
                         cp["state_bytes"] / 2**20])
    lines.append(format_table(["impl", "frame", "ms/frame", "p90 ms", "RSS MiB", "state MiB"], rows))
    for impl, g in report["growth"].items():
        t_in = "within" if g["time_within_10pct"] else "OUTSIDE"
        r_in = "within" if g["rss_within_10pct"] else "OUTSIDE"
        lines.append(f"{impl}: time x{g['time_ratio']:.3f} ({t_in} 10%), RSS x{g['rss_ratio']:.3f} "
                     f"(+{g['rss_growth_mb']:.1f} MiB, {r_in} 10%), state x{g['state_ratio']:.2f}")
    for m, c in report["ours_vs_stock"].items():
        lines.append(f"frame {m}: ours/stock time {c['time_ours_over_stock']:.3f}, "
                     f"RSS ours-stock {c['rss_ours_minus_stock_mb']:+.1f} MiB (separate runs)")
    ew = report.get("equal_work")
    if ew:
        lines.append(f"equal work, interleaved in one process, frames {ew['timed_from']}-{ew['frames'] - 1}: "
                     f"ours {ew['ours_ms_median']:.2f} ms, stock {ew['stock_ms_median']:.2f} ms, "
                     f"ours/stock {ew['time_ours_over_stock']:.3f}")
    lines.append("goals:")
    lines.append(format_goals(report["goals"]))
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The stream bench options."""
    add_model_arguments(parser, model="test-micro", device="cpu")
    parser.add_argument("--resolution", default="320x240", help="camera frame WIDTHxHEIGHT")
    parser.add_argument("--frames", type=int, default=1000, help="frames to track")
    parser.add_argument("--checkpoints", default="50,500,1000", help="frames where time and memory are read")
    parser.add_argument("--window", type=int, default=25, help="frames of each per-frame-time median")
    parser.add_argument("--objects", type=int, default=1, help="objects prompted on frame 0")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: tiny tensors run fastest single-threaded)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the dummy weights and the scene")
    parser.add_argument("--impl", default="ours,stock", help="which to run: ours, stock or both")
    parser.add_argument("--ab-frames", type=int, default=60,
                        help=f"frames of the interleaved equal-work run (timed from frame {AB_SKIP}; "
                             "0: skip it; needs both implementations)")
    parser.add_argument("--json", action="store_true", help="print only the JSON report")
    parser.add_argument("--out", default=None, help="also write the JSON report to this file")
    parser.add_argument("--child", default=None, choices=IMPLS + ("equal_work",), help=argparse.SUPPRESS)
    parser.add_argument("--child-out", default=None, help=argparse.SUPPRESS)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m anima_sam2_ros.bench.stream_bench``."""
    parser = argparse.ArgumentParser(prog="anima-sam2 bench stream", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR if args.json else logging.WARNING)
    try:
        resolution = parse_resolution(args.resolution)
        checkpoints = parse_int_list(args.checkpoints)
        impls = [i.strip() for i in args.impl.split(",") if i.strip()]
        if not impls or any(i not in IMPLS for i in impls):
            raise ValueError(f"--impl {args.impl!r}: use ours, stock or ours,stock")
        if args.frames < 1 or args.window < 1 or args.objects < 1 or args.threads < 1:
            raise ValueError("--frames, --window, --objects and --threads must be >= 1")
        if args.ab_frames and args.ab_frames <= AB_SKIP:
            raise ValueError(f"--ab-frames must be 0 or more than {AB_SKIP}")
    except ValueError as exc:
        print(f"stream bench: {exc}", file=sys.stderr)
        return 2
    log = None if args.json else (lambda msg: print(msg, file=sys.stderr, flush=True))
    if args.child == "equal_work":
        result = run_equal_work(model=args.model, weights=args.weights, precision=args.precision,
                                device=args.device, resolution=resolution, frames=args.ab_frames,
                                objects=args.objects, threads=args.threads, seed=args.seed)
        write_report(result, args.child_out)
        return 0
    if args.child:
        result = run_child(args.child, model=args.model, weights=args.weights, precision=args.precision,
                           device=args.device, resolution=resolution, frames=args.frames,
                           checkpoints=checkpoints, window=args.window, objects=args.objects,
                           threads=args.threads, seed=args.seed, log=log)
        write_report(result, args.child_out)
        return 0
    import torch

    from anima_sam2_ros.progress import Progress

    ab = bool(args.ab_frames and set(impls) == set(IMPLS))
    progress = Progress(len(impls) + int(ab), enabled=not args.json)
    results = {}
    for impl in impls:
        progress.stage(f"{impl}: {args.frames} frames in a fresh process")
        results[impl] = _spawn_child(impl, args, quiet=args.json)
    equal_work = None
    if ab:
        progress.stage(f"equal work: both in one process, taking turns on {args.ab_frames} frames")
        equal_work = _spawn_child("equal_work", args, quiet=args.json)
    progress.done()
    config = {"model": args.model, "weights": args.weights, "precision": args.precision,
              "device": args.device, "resolution": list(resolution), "frames": args.frames,
              "checkpoints": checkpoints,
              "window": args.window, "objects": args.objects, "threads": args.threads, "seed": args.seed,
              "ab_frames": args.ab_frames}
    report = build_report(results, config, equal_work)
    report["machine"] = machine_info(torch, args.device)
    return emit_report(report, args, format_report)


if __name__ == "__main__":
    sys.exit(main())

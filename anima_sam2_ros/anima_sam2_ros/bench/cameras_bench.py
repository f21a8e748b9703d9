"""Several cameras on one model (issue 16): 1 vs 2 vs 4 cameras per frame, batched encoder.

For each camera count N (``--cameras``, default 1,2,4): N trackers on one ``LoadedModel``, one
object each (prompted on frame 0), then ``--runs`` timed rounds after ``--warmup`` rounds; a
round is one frame of every camera:

* ``batched``: ``step_cameras`` (one image-encoder pass on the N frames, then each camera's
  memory attention / decoder / memory encoder);
* ``sequential``: each camera's own ``Tracker.step`` in turn (N encoder passes);
* ``encoder``: the image-encoder pass alone, on N frames at once and on one frame N times.

Reported: median ms per round, per camera, and the ratio of a round to N x one camera's round
(below 1: sharing pays). On a CPU the encoder's work grows ~linearly with the batch, so expect
ratios near 1 there; the batched pass is for GPUs, where one camera's frame does not fill the
device. ``--weights dummy`` (the default) times the real computation; masks are meaningless.

    anima-sam2 bench cameras [--model sam2.1-hiera-tiny] [--cameras 1,2,4] [--json]
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from anima_sam2_ros.progress import Progress, callback

from . import (
    SCHEMA_VERSION,
    add_model_arguments,
    emit_report,
    format_table,
    machine_info,
    parse_int_list,
    parse_resolution,
    ratio,
    time_calls,
)


def _frame(camera: int, t: int, width: int, height: int) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width]
    img = np.zeros((height, width, 3), np.uint8)
    img[..., 0] = (xx + 7 * t + 50 * camera) % 256
    img[..., 1] = (yy + 30 * camera) % 256
    x0 = width // 4 + 3 * t
    img[height // 3:2 * height // 3, x0:x0 + width // 4] = (220, 40, 40)
    return img


def _prompt(width: int, height: int) -> Any:
    from anima_sam2_ros.engine import Prompt

    return Prompt(box=np.array([width / 4, height / 3, width / 2, 2 * height / 3], np.float64), object_id=1)


def _measure(lm: Any, n: int, width: int, height: int, runs: int, warmup: int,
             progress: Optional[Progress] = None) -> Dict[str, Any]:
    """One camera count: batched and sequential rounds, and the encoder alone."""
    import torch

    from anima_sam2_ros.engine import Tracker, step_cameras

    state = {"t": 1}
    batched = [Tracker(lm) for _ in range(n)]
    alone = [Tracker(lm) for _ in range(n)]
    step_cameras([(trk, _frame(c, 0, width, height), [_prompt(width, height)], "rgb8")
                  for c, trk in enumerate(batched)])
    for c, trk in enumerate(alone):
        trk.step(_frame(c, 0, width, height), [_prompt(width, height)])

    def round_batched() -> None:
        t = state["t"]
        step_cameras([(trk, _frame(c, t, width, height), [], "rgb8") for c, trk in enumerate(batched)])
        state["t"] += 1

    def round_sequential() -> None:
        t = state["t"]
        for c, trk in enumerate(alone):
            trk.step(_frame(c, t, width, height))
        state["t"] += 1

    # The encoder's input for each camera (its tracker holds an object, so prepare gives a job).
    pixels = [alone[c].pixels(alone[c].prepare(_frame(c, 0, width, height))) for c in range(n)]
    batch = torch.cat(pixels, 0)

    def encode_batched() -> None:
        with lm.autocast():
            lm.model.get_image_features(batch, return_dict=True)

    def encode_one_by_one() -> None:
        with lm.autocast():
            for p in pixels:
                lm.model.get_image_features(p, return_dict=True)

    kinds = {"batched_ms": (round_batched, "batched round"),
             "sequential_ms": (round_sequential, "sequential round"),
             "encoder_batched_ms": (encode_batched, "encoder batch"),
             "encoder_one_by_one_ms": (encode_one_by_one, "encoder one by one")}
    out: Dict[str, Any] = {"cameras": n}
    for key, (fn, what) in kinds.items():
        out[key] = time_calls(fn, runs, warmup, callback(progress, what))
    return out


def run(lm: Any, counts: List[int], width: int, height: int, runs: int, warmup: int,
        progress: Optional[Progress] = None) -> List[Dict[str, Any]]:
    """The measurements for every camera count, with the ratios (a progress stage per count)."""
    rows = []
    for n in counts:
        if progress is not None:
            progress.stage(f"{n} camera(s): {warmup} + {runs} rounds of each kind at {width}x{height}")
        rows.append(_measure(lm, n, width, height, runs, warmup, progress))
    one = next((r for r in rows if r["cameras"] == 1), None)
    for row in rows:
        n = row["cameras"]
        med = row["batched_ms"]["median"]
        row["batched_per_camera_ms"] = med / n
        row["batched_over_sequential"] = ratio(med, row["sequential_ms"]["median"])
        row["batched_over_n_x_one_camera"] = ratio(med, n * one["batched_ms"]["median"]) if one else None
        row["encoder_batched_over_one_by_one"] = ratio(row["encoder_batched_ms"]["median"],
                                                       row["encoder_one_by_one_ms"]["median"])
    return rows


def format_report(report: Dict[str, Any]) -> str:
    """The table of a report."""
    cfg = report["config"]
    head = (f"{cfg['model']} ({cfg['precision']}, {cfg['device']}, {cfg['resolution'][0]}x"
            f"{cfg['resolution'][1]} frames, 1 object per camera, median of {cfg['runs']} rounds)")
    rows = [(r["cameras"], r["batched_ms"]["median"], r["batched_per_camera_ms"],
             r["sequential_ms"]["median"], r["batched_over_sequential"], r["batched_over_n_x_one_camera"],
             r["encoder_batched_ms"]["median"], r["encoder_one_by_one_ms"]["median"])
            for r in report["results"]]
    return head + "\n" + format_table(
        ("cameras", "round ms (batched)", "per camera ms", "round ms (sequential)", "batched/sequential",
         "round / (N x 1 camera)", "encoder ms (batch)", "encoder ms (one by one)"), rows)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``anima-sam2 bench cameras``."""
    parser = argparse.ArgumentParser(prog="anima-sam2 bench cameras", description=__doc__.split("\n\n")[0])
    add_model_arguments(parser, model="test-micro", device="auto")
    parser.add_argument("--cameras", default="1,2,4", help="camera counts (default 1,2,4)")
    parser.add_argument("--resolution", default="640x480", help="WIDTHxHEIGHT of every camera")
    parser.add_argument("--runs", type=int, default=10, help="timed rounds per camera count")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--json", action="store_true", help="print only the JSON report")
    parser.add_argument("--out", default=None, help="also write the JSON report to this file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR if args.json else logging.WARNING)
    try:
        counts = parse_int_list(args.cameras)
        width, height = parse_resolution(args.resolution)
    except ValueError as exc:
        print(f"cameras bench: {exc}", file=sys.stderr)
        return 2
    import torch

    from anima_sam2_ros.engine import load_model

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    progress = Progress(1 + len(counts))  # stderr: stdout stays the table / JSON
    progress.stage(f"loading {args.model} ({args.precision})")
    lm = load_model(args.model, weights=args.weights, precision=args.precision, device=args.device)
    rows = run(lm, counts, width, height, max(1, args.runs), max(0, args.warmup), progress)
    progress.done()
    report: Dict[str, Any] = {
        "schema": SCHEMA_VERSION, "bench": "cameras", "machine": machine_info(torch, lm.device),
        "config": {"model": lm.name, "weights": lm.weights_source, "dummy": lm.is_dummy,
                   "precision": lm.precision, "device": str(lm.device), "resolution": [width, height],
                   "runs": max(1, args.runs), "warmup": max(0, args.warmup)},
        "results": rows}
    return emit_report(report, args, format_report)


if __name__ == "__main__":
    raise SystemExit(main())

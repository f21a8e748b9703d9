"""Engine-level benchmark (``anima-sam2 bench``): latency and memory of the SAM 2.1 engine.

For one model / weights / precision / device / camera resolution it measures, after ``--warmup``
untimed calls, ``--runs`` timed calls of:

* ``load``: ``load_model`` (build or read weights, INT8 quantisation, move to the device);
* ``encoder``: ``Segmenter.set_image`` on one camera frame (preprocessing + image encoder);
* ``decoder_1`` / ``decoder_8_batched`` / ``decoder_8_sequential``: the prompt encoder + mask
  decoder (``Segmenter.predict_logits``) for 1 point prompt, 8 prompts in one call, and 8 calls of
  one prompt; ``segment_1`` / ``segment_8_batched`` add what a caller of ``Segmenter.segment``
  also pays (source-size masks, host copies, results). One call runs the decoder on chunks of
  ``Segmenter.decoder_batch`` prompts (2 on a CPU); where that is below 8, ``decoder_8_one_forward``
  also times all 8 in a single decoder forward;
* ``track_N``: one ``Tracker.step`` (encoder + memory attention + decoder + memory encoder for
  every object, source-size masks) with N objects, prompted on frame 0, measured once the memory
  bank is full (``--track-fill`` propagated frames first, default 7 = the memory slots);
* memory: peak RSS of the process and, on CUDA, peak allocated device memory.

Every entry gives median, p90, min, mean (ms) and the run count. The table goes to stdout, then
the JSON (``--json`` prints only the JSON; ``--out`` writes it to a file). Goal checked here:
8 batched prompts cost at most 2x one prompt in the decoder.

``--compile`` wraps the vision encoder, mask decoder, memory attention and memory encoder in
``torch.compile`` (the warm-up calls then include compilation; ``first_call_ms`` shows it).

This module never imports rclpy. ``python -m anima_sam2_ros.bench.engine_bench --help``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

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
    peak_rss_mb,
    ratio,
    rss_mb,
    summarize,
)

LOG = logging.getLogger("anima_sam2_ros.bench")

COMPILED_MODULES = ("vision_encoder", "mask_decoder", "memory_attention", "memory_encoder")


def _sync(torch: Any, device: Any) -> None:
    if getattr(device, "type", str(device)) == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn: Callable[[], Any], runs: int, warmup: int, sync: Callable[[], None]) -> Dict[str, Any]:
    """Call ``fn`` ``warmup`` times untimed, then ``runs`` times timed; summary in ms.

    ``first_call_ms`` is the first warm-up call (or the first timed call without warm-up): it
    shows one-off costs such as ``torch.compile``.
    """
    first = None
    for _ in range(warmup):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        if first is None:
            first = (time.perf_counter() - t0) * 1000.0
    times: List[float] = []
    for _ in range(runs):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t0) * 1000.0)
    out = summarize(times)
    out["first_call_ms"] = first if first is not None else (times[0] if times else float("nan"))
    return out


def compile_model(loaded: Any, mode: str = "default") -> List[str]:
    """Wrap the heavy submodules of ``loaded.model`` in ``torch.compile``; returns their names."""
    import torch

    net = loaded.model
    done = []
    for name in COMPILED_MODULES:
        module = getattr(net, name, None)
        if module is None:
            continue
        setattr(net, name, torch.compile(module, mode=None if mode == "default" else mode))
        done.append(name)
    return done


def _prompts(scene: MovingScene, n: int, t: int = 0) -> List[Any]:
    from anima_sam2_ros.engine import Prompt

    return [Prompt(object_id=i + 1, points=np.array([xy], np.float32), labels=np.array([1], np.int64))
            for i, xy in enumerate(scene.object_points(n, t))]


def run_engine_bench(model: str = "sam2.1-hiera-small", weights: Optional[str] = "dummy",
                     precision: str = "fp32", device: str = "auto",
                     resolution: Optional[Sequence[int]] = None,
                     runs: int = 10, warmup: int = 2, objects: Sequence[int] = (1, 4, 16),
                     track_runs: Optional[int] = None, track_warmup: Optional[int] = None,
                     track_fill: int = 7, batch: int = 8, use_compile: bool = False,
                     compile_mode: str = "default", threads: Optional[int] = None, seed: int = 0,
                     log: Optional[Callable[[str], None]] = None) -> Dict[str, Any]:
    """Run the engine benchmark; returns the report (see the module docstring).

    Args:
        resolution: camera frame ``(width, height)``; None = the model's square input size.
        objects: object counts for the tracking step (empty: no tracking measurement).
        track_runs / track_warmup: timed / untimed tracking steps (default ``runs`` / ``warmup``).
        track_fill: propagated frames before the tracking warm-up (fills the memory bank).
        batch: prompts of the batched / sequential decoder measurement.
    """
    say = log or (lambda _msg: None)
    say(f"importing torch and transformers, loading {model} ({precision}, weights {weights})")
    import torch

    from anima_sam2_ros.engine import Segmenter, Tracker, load_model
    from anima_sam2_ros.engine.hf_import import transformers_sam2
    from anima_sam2_ros.engine.validation import validate_prompt

    # transformers' SAM 2 classes (a lazy module) imported before the load is timed, without torchao.
    _ = transformers_sam2().Sam2VideoModel
    if threads:
        torch.set_num_threads(int(threads))
    runs, warmup = max(1, int(runs)), max(0, int(warmup))
    track_runs = runs if track_runs is None else max(1, int(track_runs))
    track_warmup = warmup if track_warmup is None else max(0, int(track_warmup))

    if str(device).startswith("cuda") or (device == "auto" and torch.cuda.is_available()):
        torch.cuda.reset_peak_memory_stats()
    rss_before = rss_mb()
    t0 = time.perf_counter()
    lm = load_model(model, weights=weights, precision=precision, device=device, seed=seed)
    dev = lm.device
    _sync(torch, dev)
    load_s = time.perf_counter() - t0
    say(f"  loaded {lm!r} in {load_s:.2f} s")
    cuda = dev.type == "cuda"
    compiled: List[str] = []
    if use_compile:
        compiled = compile_model(lm, compile_mode)
    rss_after_load = rss_mb()
    cuda_after_load = torch.cuda.memory_allocated(dev) / 2**20 if cuda else None

    width, height = (int(resolution[0]), int(resolution[1])) if resolution else (lm.image_size, lm.image_size)
    scene = MovingScene(width, height, seed=seed)
    image = scene.frame(0)
    hw = (height, width)

    def sync() -> None:
        _sync(torch, dev)

    timings: Dict[str, Dict[str, Any]] = {}
    seg = Segmenter(lm)
    say(f"image encoder: {warmup} + {runs} runs")
    timings["encoder"] = time_calls(lambda: seg.set_image(image), runs, warmup, sync)

    one = [validate_prompt(p, hw) for p in _prompts(scene, 1)]
    many = [validate_prompt(p, hw) for p in _prompts(scene, batch)]
    say(f"mask decoder: 1 / {batch} prompts, {warmup} + {runs} runs each")
    timings["decoder_1"] = time_calls(lambda: seg.predict_logits(one), runs, warmup, sync)
    timings[f"decoder_{batch}_batched"] = time_calls(lambda: seg.predict_logits(many), runs, warmup, sync)

    def sequential() -> None:
        for p in many:
            seg.predict_logits([p])

    timings[f"decoder_{batch}_sequential"] = time_calls(sequential, runs, warmup, sync)
    default_chunk = seg.decoder_batch
    if default_chunk < batch:
        seg.decoder_batch = batch
        timings[f"decoder_{batch}_one_forward"] = time_calls(
            lambda: seg.predict_logits(many), runs, warmup, sync)
        seg.decoder_batch = default_chunk
    timings["segment_1"] = time_calls(lambda: seg.segment(one), runs, warmup, sync)
    timings[f"segment_{batch}_batched"] = time_calls(lambda: seg.segment(many), runs, warmup, sync)

    track_state: Dict[str, int] = {}
    frames = [scene.frame(t) for t in range(16)]
    for n in objects:
        say(f"tracking step, {n} objects: {track_fill} frames to fill the memory, {track_warmup} + "
            f"{track_runs} runs")
        trk = Tracker(lm)
        trk.step(frames[0], _prompts(scene, int(n)))
        for t in range(1, 1 + max(0, int(track_fill))):
            trk.step(frames[t % len(frames)])
        counter = [1 + max(0, int(track_fill))]

        def step(trk: Any = trk, counter: List[int] = counter) -> None:
            trk.step(frames[counter[0] % len(frames)])
            counter[0] += 1

        timings[f"track_{n}"] = time_calls(step, track_runs, track_warmup, sync)
        track_state[f"track_{n}"] = int(trk.state_nbytes())
        del trk

    memory = {
        "rss_before_load_mb": rss_before,
        "rss_after_load_mb": rss_after_load,
        "rss_end_mb": rss_mb(),
        "peak_rss_mb": peak_rss_mb(),
        "cuda_after_load_mb": cuda_after_load,
        "peak_cuda_mb": torch.cuda.max_memory_allocated(dev) / 2**20 if cuda else None,
        "peak_cuda_reserved_mb": torch.cuda.max_memory_reserved(dev) / 2**20 if cuda else None,
        "tracker_state_bytes": track_state,
    }
    d1 = timings["decoder_1"]["median"]
    db = timings[f"decoder_{batch}_batched"]["median"]
    ds = timings[f"decoder_{batch}_sequential"]["median"]
    derived = {
        f"decoder_{batch}_batched_over_1": ratio(db, d1),
        f"decoder_{batch}_sequential_over_batched": ratio(ds, db),
    }
    if f"decoder_{batch}_one_forward" in timings:
        one_forward = timings[f"decoder_{batch}_one_forward"]["median"]
        derived[f"decoder_{batch}_one_forward_over_1"] = ratio(one_forward, d1)
    for n in objects:
        derived[f"track_{n}_per_object_ms"] = ratio(timings[f"track_{n}"]["median"], float(n))
    goals = [goal(f"decoder: {batch} prompts batched / 1 prompt", derived[f"decoder_{batch}_batched_over_1"],
                  2.0, note="issue 6: <= 2x")]
    report = {
        "bench": "engine",
        "schema": SCHEMA_VERSION,
        "config": {
            "model": lm.name, "weights": str(weights), "dummy_weights": lm.is_dummy,
            "precision": lm.precision, "device": str(dev), "image_size": lm.image_size,
            "resolution": [width, height],
            "runs": runs, "warmup": warmup, "track_runs": track_runs, "track_warmup": track_warmup,
            "track_fill": int(track_fill), "objects": [int(n) for n in objects], "batch": int(batch),
            "decoder_batch": default_chunk,
            "compile": bool(use_compile), "compile_mode": compile_mode if use_compile else None,
            "compiled_modules": compiled, "threads": torch.get_num_threads(), "seed": seed,
        },
        "machine": machine_info(torch, dev),
        "load_s": load_s,
        "timings_ms": timings,
        "derived": derived,
        "memory": memory,
        "goals": goals,
    }
    lm.release()
    return report


def format_report(report: Dict[str, Any]) -> str:
    """The human-readable table of an engine report."""
    cfg = report["config"]
    mach = report["machine"]
    head = (f"engine bench: {cfg['model']} {cfg['precision']} on {cfg['device']}"
            f"{' (' + mach['gpu'] + ')' if mach.get('gpu') else ''}, frame {cfg['resolution'][0]}x"
            f"{cfg['resolution'][1]} -> {cfg['image_size']}px, {cfg['threads']} threads"
            f"{', torch.compile' if cfg['compile'] else ''}"
            f"{', DUMMY weights' if cfg['dummy_weights'] else ''}")
    rows = [["load", report["load_s"] * 1000.0, float("nan"), float("nan"), 1]]
    for name, t in report["timings_ms"].items():
        rows.append([name, t["median"], t["p90"], t["first_call_ms"], t["runs"]])
    table = format_table(["op", "median ms", "p90 ms", "first ms", "runs"], rows)
    mem = report["memory"]
    lines = [head, f"machine: {mach['cpu']}, {mach['usable_cpus']} usable CPUs, torch {mach.get('torch')}",
             table,
             f"memory: peak RSS {mem['peak_rss_mb']:.0f} MiB (after load {mem['rss_after_load_mb']:.0f} MiB)"
             + (f", peak CUDA {mem['peak_cuda_mb']:.0f} MiB" if mem.get("peak_cuda_mb") is not None else "")]
    lines.append("derived: " + ", ".join(f"{k} {v:.2f}" for k, v in report["derived"].items()))
    lines.append("goals:")
    lines.append(format_goals(report["goals"]))
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------------------------
def add_bench_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the engine bench options to ``parser``."""
    add_model_arguments(parser, model="sam2.1-hiera-small", device="auto")
    parser.add_argument("--resolution", default=None,
                        help="camera frame WIDTHxHEIGHT (default: the model's square input size)")
    parser.add_argument("--runs", type=int, default=10, help="timed runs per measurement")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs before the timed ones")
    parser.add_argument("--objects", default="1,4,16",
                        help="object counts of the tracking step, comma-separated; 0 = skip tracking")
    parser.add_argument("--track-runs", type=int, default=None, help="timed tracking steps (default --runs)")
    parser.add_argument("--track-warmup", type=int, default=None,
                        help="untimed tracking steps (default --warmup)")
    parser.add_argument("--track-fill", type=int, default=7,
                        help="propagated frames before timing the tracking step (fills the memory bank)")
    parser.add_argument("--batch", type=int, default=8, help="prompts of the batched decoder measurement")
    parser.add_argument("--compile", action="store_true", help="torch.compile the heavy submodules")
    parser.add_argument("--compile-mode", default="default",
                        help="torch.compile mode (default, reduce-overhead, max-autotune)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of dummy weights and frames")
    parser.add_argument("--json", action="store_true", help="print only the JSON report")
    parser.add_argument("--out", default=None, help="also write the JSON report to this file")
    return parser


def add_bench_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``bench`` sub-command to an argparse ``subparsers``; sets ``func=run_bench``."""
    parser = subparsers.add_parser("bench", help="engine benchmark: latency and memory (table + JSON)",
                                   description=__doc__.split("\n\n")[0])
    add_bench_arguments(parser)
    parser.set_defaults(func=run_bench)
    return parser


def run_bench(args: argparse.Namespace) -> int:
    """Run the bench for parsed arguments; prints the table and/or the JSON; returns an exit code."""
    from anima_sam2_ros.engine.errors import EngineError

    try:
        resolution = parse_resolution(args.resolution) if args.resolution else None
        objects = [] if str(args.objects).strip() in ("", "0") else parse_int_list(args.objects)
    except ValueError as exc:
        print(f"anima-sam2 bench: {exc}", file=sys.stderr)
        return 2
    from anima_sam2_ros.progress import Progress

    # Stages: load, encoder, decoder, one per object count; "  " lines are details of a stage.
    progress = Progress(3 + len(objects))
    log = None if args.json else (lambda msg: progress._print("      " + msg.strip()) if msg.startswith("  ")
                                  else progress.stage(msg))
    try:
        report = run_engine_bench(
            model=args.model, weights=args.weights, precision=args.precision, device=args.device,
            resolution=resolution, runs=args.runs, warmup=args.warmup, objects=objects,
            track_runs=args.track_runs, track_warmup=args.track_warmup, track_fill=args.track_fill,
            batch=args.batch, use_compile=args.compile, compile_mode=args.compile_mode, threads=args.threads,
            seed=args.seed, log=log)
    except EngineError as exc:
        print(f"anima-sam2 bench: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    return emit_report(report, args, format_report)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m anima_sam2_ros.bench.engine_bench``."""
    parser = argparse.ArgumentParser(prog="anima-sam2 bench", description=__doc__.split("\n\n")[0])
    add_bench_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR if args.json else logging.WARNING)
    return run_bench(args)


if __name__ == "__main__":
    sys.exit(main())

"""Benchmarks: engine level, long-stream growth and node level (issue 6).

Modules: ``engine_bench`` (``anima-sam2 bench``), ``stream_bench`` (1000+ frames, ours vs
transformers' streaming session), ``node_bench`` (the ROS node across processes).

Every bench prints a table and a JSON document (``--json`` prints only the JSON; ``--out FILE``
writes it). Targets of issue 6 are checked in the output (``goals``), never in the tests.

This module holds the helpers they share; it imports only the standard library and numpy (no
torch, no rclpy), so importing it is cheap.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import resource
import statistics
import sys
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

SCHEMA_VERSION = 1


# ----------------------------------------------------------------------------------------------
# statistics
# ----------------------------------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float:
    """``q``-th percentile (0..100) with linear interpolation (numpy's default definition)."""
    if not values:
        return float("nan")
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def summarize(times_ms: Sequence[float]) -> Dict[str, Any]:
    """Median, p90, min, mean and count of a list of durations in milliseconds."""
    vals = [float(v) for v in times_ms]
    if not vals:
        return {"median": float("nan"), "p90": float("nan"), "min": float("nan"), "mean": float("nan"),
                "runs": 0}
    return {"median": float(statistics.median(vals)), "p90": percentile(vals, 90.0), "min": min(vals),
            "mean": float(statistics.fmean(vals)), "runs": len(vals)}


def time_calls(fn: Callable[[], Any], runs: int, warmup: int = 1,
               step: Optional[Callable[[int, int], None]] = None) -> Dict[str, Any]:
    """``summarize`` of ``runs`` timed calls of ``fn`` (ms) after ``warmup`` untimed ones.

    ``step(done, total)`` after each call (progress lines), warm-up included.
    """
    import time

    total = warmup + runs
    for i in range(warmup):
        fn()
        if step is not None:
            step(i + 1, total)
    times = []
    for i in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000.0)
        if step is not None:
            step(warmup + i + 1, total)
    return summarize(times)


def ratio(num: float, den: float) -> float:
    """``num / den`` or NaN when undefined."""
    if den is None or num is None or not math.isfinite(den) or den == 0.0:
        return float("nan")
    return float(num) / float(den)


def goal(name: str, value: float, target: float, met: Optional[bool] = None, *,
         rule: str = "<=", note: str = "") -> Dict[str, Any]:
    """One checked target: ``value`` compared with ``target`` under ``rule`` (``<=`` or ``>=``)."""
    if met is None:
        if not math.isfinite(value):
            met = False
        elif rule == "<=":
            met = value <= target
        else:
            met = value >= target
    return {"name": name, "value": float(value), "target": float(target), "rule": rule, "met": bool(met),
            "note": note}


# ----------------------------------------------------------------------------------------------
# memory
# ----------------------------------------------------------------------------------------------
def _proc_status_kb(field: str) -> Optional[int]:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def rss_mb() -> float:
    """Current resident set size of this process in MiB (``VmRSS``; peak RSS where unavailable)."""
    kb = _proc_status_kb("VmRSS")
    if kb is None:
        return peak_rss_mb()
    return kb / 1024.0


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (``ru_maxrss``)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


# ----------------------------------------------------------------------------------------------
# machine description
# ----------------------------------------------------------------------------------------------
def cpu_model() -> str:
    """CPU model name (``/proc/cpuinfo``), or ``platform.processor()``."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(torch_mod: Any = None, device: Any = None) -> Dict[str, Any]:
    """Where the numbers come from: CPU, cores, OS, Python, library versions, GPU name."""
    info: Dict[str, Any] = {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    if torch_mod is not None:
        info["torch"] = torch_mod.__version__
        info["torch_threads"] = torch_mod.get_num_threads()
        try:
            import transformers

            info["transformers"] = transformers.__version__
        except ImportError:  # pragma: no cover - a dependency of the engine
            info["transformers"] = None
        gpu = None
        if device is not None and str(device).startswith("cuda") and torch_mod.cuda.is_available():
            dev = torch_mod.device(device)
            gpu = torch_mod.cuda.get_device_name(dev)
            info["cuda"] = torch_mod.version.cuda
        info["gpu"] = gpu
    return info


# ----------------------------------------------------------------------------------------------
# synthetic frames (numpy only, deterministic)
# ----------------------------------------------------------------------------------------------
class MovingScene:
    """Deterministic frames: textured background, a bright square and a dark disc that move.

    ``frame(t)`` is (H, W, 3) uint8 RGB; ``object_points(n, t)`` gives ``n`` points spread over
    the image for prompts (the first two on the square and the disc).
    """

    def __init__(self, width: int, height: int, seed: int = 0) -> None:
        if width < 16 or height < 16:
            raise ValueError(f"frame too small: {width}x{height}")
        self.width, self.height = int(width), int(height)
        rng = np.random.default_rng(seed)
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        bg = np.empty((height, width, 3), np.float32)
        bg[..., 0] = 60 + 50 * xx / width
        bg[..., 1] = 70 + 40 * yy / height
        bg[..., 2] = 90
        bg += rng.normal(0.0, 8.0, (height, width, 1)).astype(np.float32)
        self._bg = np.clip(bg, 0, 255).astype(np.uint8)
        self._yy, self._xx = np.mgrid[0:height, 0:width]
        self.side = max(4, min(width, height) // 6)
        self.radius = max(3, min(width, height) // 10)
        self.period = 240

    def square_center(self, t: int) -> Tuple[float, float]:
        """Centre (x, y) of the square on frame ``t``."""
        u = (t % self.period) / self.period
        tri = 2 * u if u < 0.5 else 2 - 2 * u
        x = self.side + tri * (self.width - 3 * self.side)
        return float(x + self.side / 2), float(self.height / 3)

    def disc_center(self, t: int) -> Tuple[float, float]:
        """Centre (x, y) of the disc on frame ``t``."""
        phase = 2 * math.pi * (t % self.period) / self.period
        return float(2 * self.width / 3), float(self.height * (0.62 + 0.2 * math.sin(phase)))

    def frame(self, t: int) -> np.ndarray:
        """Frame ``t`` as a new (H, W, 3) uint8 RGB array."""
        img = self._bg.copy()
        sx, sy = self.square_center(t)
        h = self.side // 2
        x0, y0 = int(sx) - h, int(sy) - h
        img[max(0, y0):y0 + self.side, max(0, x0):x0 + self.side] = (235, 225, 200)
        dx, dy = self.disc_center(t)
        img[(self._yy - dy) ** 2 + (self._xx - dx) ** 2 < self.radius ** 2] = (20, 20, 130)
        return img

    def object_points(self, n: int, t: int = 0) -> List[Tuple[float, float]]:
        """``n`` prompt points: the square, the disc, then a grid over the rest of the image."""
        pts = [self.square_center(t), self.disc_center(t)][:n]
        cols = max(1, int(math.ceil(math.sqrt(n))))
        k = 0
        while len(pts) < n:
            r, c = divmod(k, cols)
            pts.append(((c + 0.5) * self.width / cols, ((r % cols) + 0.5) * self.height / cols))
            k += 1
        return [(min(max(x, 0.0), self.width - 1.0), min(max(y, 0.0), self.height - 1.0)) for x, y in pts]


# ----------------------------------------------------------------------------------------------
# output
# ----------------------------------------------------------------------------------------------
def add_model_arguments(parser: Any, model: str, device: str) -> None:
    """The model options every bench takes (``--model --weights --precision --device``)."""
    parser.add_argument("--model", default=model,
                        help=f"registry name (sam2.1-hiera-{{tiny,small,base-plus,large}}[-int8], "
                             f"test-micro; default {model})")
    parser.add_argument("--weights", default="dummy",
                        help="'dummy' (default, seeded random), a local directory, an INT8 artifact or an "
                             "HF id in the local cache")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16", "int8"))
    parser.add_argument("--device", default=device, help=f"auto | cpu | cuda | cuda:N (default {device})")


def parse_resolution(text: str) -> Tuple[int, int]:
    """``"640x480"`` -> ``(640, 480)`` (width, height); a single number means a square."""
    parts = str(text).lower().replace("×", "x").split("x")
    try:
        if len(parts) == 1:
            w = h = int(parts[0])
        elif len(parts) == 2:
            w, h = int(parts[0]), int(parts[1])
        else:
            raise ValueError
    except ValueError:
        raise ValueError(f"resolution {text!r}: expected WIDTHxHEIGHT, e.g. 640x480") from None
    if w < 16 or h < 16:
        raise ValueError(f"resolution {text!r}: each side must be >= 16")
    return w, h


def parse_int_list(text: str) -> List[int]:
    """``"1,4,16"`` -> ``[1, 4, 16]`` (positive integers)."""
    try:
        vals = [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{text!r}: expected comma-separated integers") from None
    if not vals or any(v < 1 for v in vals):
        raise ValueError(f"{text!r}: expected positive integers")
    return vals


def _clean(value: Any) -> Any:
    """JSON-safe copy: NaN/inf become None, numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return v if math.isfinite(v) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def to_json(report: Dict[str, Any]) -> str:
    """The report as indented JSON (non-finite numbers as null)."""
    return json.dumps(_clean(report), indent=2, sort_keys=False)


def write_report(report: Dict[str, Any], out: Optional[str]) -> None:
    """Write the JSON report to ``out`` (no-op for None/empty)."""
    if not out:
        return
    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    with open(out, "w", encoding="utf-8") as fh:
        fh.write(to_json(report) + "\n")


def emit_report(report: Dict[str, Any], args: Any, format_report: Callable[[Dict[str, Any]], str]) -> int:
    """Finish a bench: record argv, write ``args.out``, print the table (unless ``--json``) and the JSON."""
    report["argv"] = list(sys.argv)
    write_report(report, args.out)
    if not args.json:
        print(format_report(report))
        print()
    print(to_json(report))
    return 0


def format_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A plain-text table (numbers with 2 decimals below 100, else 1)."""
    def fmt(v: Any) -> str:
        if isinstance(v, bool):
            return "yes" if v else "NO"
        if isinstance(v, (int, np.integer)):
            return str(int(v))
        if isinstance(v, (float, np.floating)):
            if not math.isfinite(float(v)):
                return "-"
            return f"{v:.2f}" if abs(v) < 100 else f"{v:.1f}"
        return "-" if v is None else str(v)

    cells = [[fmt(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=False)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)),
             "  ".join("-" * w for w in widths)]
    for row in cells:
        pairs = enumerate(zip(row, widths, strict=True))
        lines.append("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in pairs))
    return "\n".join(lines)


def format_goals(goals: Sequence[Dict[str, Any]]) -> str:
    """Goal lines: ``[met] name: value rule target (note)``."""
    lines = []
    for g in goals:
        mark = "MET " if g["met"] else "MISS"
        val = g["value"]
        val_s = f"{val:.3f}" if isinstance(val, float) and math.isfinite(val) else str(val)
        note = f"  ({g['note']})" if g.get("note") else ""
        lines.append(f"  [{mark}] {g['name']}: {val_s} {g['rule']} {g['target']:g}{note}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# command line: `anima-sam2 bench [engine|stream|node] ...`
# ----------------------------------------------------------------------------------------------
_SUBCOMMANDS = {
    "engine": "anima_sam2_ros.bench.engine_bench",
    "stream": "anima_sam2_ros.bench.stream_bench",
    "node": "anima_sam2_ros.bench.node_bench",
    "perception": "anima_sam2_ros.bench.perception_bench",
    "cameras": "anima_sam2_ros.bench.cameras_bench",
}

_USAGE = """usage: anima-sam2 bench [engine] [OPTIONS]   engine latency + memory (the default)
       anima-sam2 bench stream [OPTIONS]         1000+ frames: growth, ours vs transformers' session
       anima-sam2 bench node [OPTIONS]           the ROS node across processes (needs the workspace)
       anima-sam2 bench perception [OPTIONS]     per-object 3D cost; detections -> masks latency (node)
       anima-sam2 bench cameras [OPTIONS]        1 vs 2 vs 4 cameras on one model (batched encoder)
Each prints a table and a JSON report (--json: only the JSON; --out FILE: write it). --help per bench."""


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``anima-sam2 bench``: dispatch to the engine (default), stream or node bench."""
    import importlib

    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("help", "-h", "--help") and len(args) == 1:
        print(_USAGE)
        return 0
    name = "engine"
    if args and args[0] in _SUBCOMMANDS:
        name = args.pop(0)
    module = importlib.import_module(_SUBCOMMANDS[name])
    return int(module.main(args) or 0)

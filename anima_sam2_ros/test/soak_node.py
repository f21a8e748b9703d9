"""Soak sam2_node: track through the node for many frames, report its RSS and thread count.

Runnable (inside the built workspace, e.g. ``scripts/ws.sh env python test/soak_node.py --frames
10000``): starts the node (tiny ``test-micro`` model, dummy weights, CPU), publishes small camera
frames, runs one track goal with ``max_frames = --frames`` and samples ``/proc/<pid>/status``
(VmRSS, Threads) of the node process every ``--interval`` frames. The test suite runs a short
version through ``run_soak`` (test/test_reliability_soak.py).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import tempfile
import time
from typing import Dict, List

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def proc_status(pid: int) -> Dict[str, int]:
    """``{"rss_kib": VmRSS, "threads": Threads}`` of a process."""
    out = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                out["rss_kib"] = int(line.split()[1])
            elif line.startswith("Threads:"):
                out["threads"] = int(line.split()[1])
    return out


def run_soak(client, pid: int, frames: int, interval: int, width: int = 64, height: int = 48,
             rate: float = 60.0, log=print) -> List[Dict[str, float]]:
    """One track goal of ``frames`` frames through ``client``; samples every ``interval`` frames."""
    from sam2_client import point_prompt

    client.start_camera(rate=rate, width=width, height=height)
    samples: List[Dict[str, float]] = []
    try:
        handle, feedback = client.send_goal([point_prompt(width / 2, height / 2),
                                             point_prompt(width / 4, height / 4)], max_frames=frames)
        assert handle.accepted, "soak goal rejected"
        result = handle.get_result_async()
        t0 = time.monotonic()
        next_mark = 0
        seen = 0
        while not result.done():
            k = len(feedback)
            del feedback[:k]  # keep the client's own memory flat on long runs
            seen += k
            if seen >= next_mark:
                s = {"frame": seen, "t": round(time.monotonic() - t0, 2), **proc_status(pid)}
                samples.append(s)
                log(json.dumps(s))
                next_mark = seen + interval
            time.sleep(0.05)
        res = result.result()
        samples.append({"frame": int(res.result.frames_processed), "t": round(time.monotonic() - t0, 2),
                        **proc_status(pid)})
        log(json.dumps(samples[-1]) + f"  ended: {res.result.reason}")
        assert res.result.reason == "max_frames", res.result.reason
    finally:
        client.stop_camera()
    return samples


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=10000)
    ap.add_argument("--interval", type=int, default=500, help="frames between samples")
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--height", type=int, default=48)
    ap.add_argument("--rate", type=float, default=60.0, help="camera publish rate (Hz)")
    args = ap.parse_args(argv)
    import conftest  # noqa: F401 - loopback DDS, test domain, offline hub
    from sam2_client import Sam2Client, start_node

    name = "sam2_soak"
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="sam2_soak_"))
    node = start_node(tmp, name, overrides={"camera_timeout": 30.0, "output.overlay": False})
    client = Sam2Client(name)
    try:
        client.wait_active()
        samples = run_soak(client, node.proc.pid, args.frames, args.interval, args.width, args.height,
                           args.rate)
    finally:
        client.close()
        node.stop()
    first, last = samples[len(samples) // 2], samples[-1]
    print(f"RSS {samples[0]['rss_kib'] / 1024:.1f} -> {last['rss_kib'] / 1024:.1f} MiB "
          f"(second half {(last['rss_kib'] - first['rss_kib']) / 1024:+.1f} MiB), threads "
          f"{samples[0]['threads']} -> {last['threads']}, {last['frame'] / max(last['t'], 1e-9):.1f} fps; "
          f"node log: {node.log_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

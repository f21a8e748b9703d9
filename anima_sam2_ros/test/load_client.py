"""A load-generating client process for sam2_node (issue 13 load tests and node_bench).

Sends bursts of concurrent ``~/segment`` calls (all sent at once, each with its own image, so
none shares the encoder cache) and waits for every answer; prints one JSON line per burst:
``{"burst": N, "sent": N, "answered": N, "success": N, "busy": N, "timed_out": N, "other": [...],
"max_s": ...}``. The client's QoS is deep enough (1000) that answers are never dropped on this
side, so a missing answer is the node's.

    python load_client.py --node /sam2_node --bursts 16,30,50 --size 320x240 --prompts 4
"""

from __future__ import annotations

import argparse
import array
import json
import sys
import time

import numpy as np


def _image(width: int, height: int, seed: int):
    from sensor_msgs.msg import Image

    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    msg = Image(width=width, height=height, encoding="rgb8", step=width * 3,
                data=array.array("B", arr.tobytes()))
    msg.header.frame_id = f"load_{seed}"
    return msg


def _request(width: int, height: int, prompts: int, seed: int):
    from geometry_msgs.msg import Point

    from anima_sam2_msgs.msg import Prompt
    from anima_sam2_msgs.srv import Segment

    req = Segment.Request()
    req.image = _image(width, height, seed)
    for i in range(prompts):
        p = Prompt()
        p.points = [Point(x=float((17 * (i + 1)) % width), y=float((11 * (i + 1)) % height), z=0.0)]
        p.labels = [1]
        req.prompts.append(p)
    return req


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--node", default="/sam2_node")
    ap.add_argument("--bursts", default="16,30,50", help="comma-separated burst sizes")
    ap.add_argument("--size", default="320x240", help="request image WxH")
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for a burst's answers")
    ap.add_argument("--pause", type=float, default=0.5, help="seconds between bursts")
    args = ap.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))

    import rclpy
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

    from anima_sam2_msgs.srv import Segment

    rclpy.init()
    node = rclpy.create_node(f"sam2_load_client_{int(time.time() * 1000) % 100000}")
    qos = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
    client = node.create_client(Segment, f"{args.node}/segment", qos_profile=qos)
    executor = MultiThreadedExecutor(num_threads=2)
    executor.add_node(node)
    import threading

    threading.Thread(target=executor.spin, daemon=True).start()
    code = 0
    try:
        if not client.wait_for_service(timeout_sec=60.0):
            print(json.dumps({"error": "segment service not available"}), flush=True)
            return 2
        seed = 0
        for burst in (int(b) for b in args.bursts.split(",") if b):
            requests = []
            for _ in range(burst):
                seed += 1
                requests.append(_request(width, height, args.prompts, seed))
            t0 = time.monotonic()
            futures = [client.call_async(r) for r in requests]
            done_at = {}
            deadline = t0 + args.timeout
            while time.monotonic() < deadline and len(done_at) < burst:
                for i, f in enumerate(futures):
                    if i not in done_at and f.done():
                        done_at[i] = time.monotonic() - t0
                time.sleep(0.005)
            answers = [f.result() for f in futures if f.done()]
            refused = [a.message for a in answers if not a.success]
            report = {"burst": burst, "sent": burst, "answered": len(answers),
                      "success": sum(a.success for a in answers),
                      "busy": sum(m.startswith("busy") for m in refused),
                      "timed_out": sum(m.startswith("timed out") for m in refused),
                      "other": sorted({m for m in refused if not m.startswith(("busy", "timed out"))}),
                      "max_s": round(max(done_at.values(), default=0.0), 3),
                      "examples": sorted({m[:120] for m in refused})[:3]}
            print(json.dumps(report), flush=True)
            if report["answered"] != burst:
                code = 1
            time.sleep(args.pause)
    finally:
        executor.shutdown(timeout_sec=2.0)
        node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())

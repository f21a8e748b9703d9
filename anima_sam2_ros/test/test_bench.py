"""The benchmarks in tiny smoke configurations: JSON structure, positive finite numbers.

No timing thresholds here: the targets of issue 6 are checked in each bench's output (``goals``).
The node bench needs the built workspace (``ros`` marker); the others run from the source tree.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from ros_helpers import require_workspace

TINY_ENGINE = ["--model", "test-micro", "--weights", "dummy", "--device", "cpu", "--resolution", "64x48",
               "--runs", "2", "--warmup", "1", "--objects", "1,2", "--track-fill", "1", "--batch", "3",
               "--threads", "1"]


def _positive(value, what):
    assert isinstance(value, (int, float)) and not isinstance(value, bool), f"{what}: {value!r}"
    assert math.isfinite(value) and value > 0, f"{what}: {value!r}"


def _finite(value, what):
    assert isinstance(value, (int, float)) and math.isfinite(value), f"{what}: {value!r}"


def _check_summary(s, what, runs=None):
    for key in ("median", "p90", "min", "mean"):
        _positive(s[key], f"{what}.{key}")
    assert s["min"] <= s["median"] <= s["p90"] * (1 + 1e-9), what
    if runs is not None:
        assert s["runs"] == runs, what


def _check_goals(goals):
    assert goals, "no goals"
    for g in goals:
        assert set(g) >= {"name", "value", "target", "rule", "met", "note"}
        assert isinstance(g["met"], bool)
        _finite(g["value"], g["name"])


def _last_json(text):
    """The JSON document that ends the output (after the optional table)."""
    start = text.index("\n{") + 1 if not text.lstrip().startswith("{") else text.index("{")
    return json.loads(text[start:])


# ------------------------------------------------------------------ helpers
def test_helpers():
    from anima_sam2_ros.bench import (
        MovingScene,
        format_table,
        goal,
        parse_int_list,
        parse_resolution,
        peak_rss_mb,
        rss_mb,
        summarize,
        to_json,
    )

    s = summarize([3.0, 1.0, 2.0, 10.0])
    assert s["median"] == 2.5 and s["min"] == 1.0 and s["runs"] == 4 and 2.5 < s["p90"] <= 10.0
    assert math.isnan(summarize([])["median"])
    assert parse_resolution("640x480") == (640, 480) and parse_resolution("128") == (128, 128)
    for bad in ("x", "8x8", "1x2x3"):
        with pytest.raises(ValueError):
            parse_resolution(bad)
    assert parse_int_list("1,4,16") == [1, 4, 16]
    with pytest.raises(ValueError):
        parse_int_list("0")
    assert goal("g", 1.5, 2.0)["met"] and not goal("g", float("nan"), 2.0)["met"]
    assert not goal("g", 0.5, 1.0, rule=">=")["met"]
    assert json.loads(to_json({"a": float("nan"), "b": [1.0]})) == {"a": None, "b": [1.0]}
    assert "op" in format_table(["op", "ms"], [["x", 1.234], ["y", float("nan")]])
    _positive(rss_mb(), "rss")
    assert peak_rss_mb() >= rss_mb() * 0.5
    scene = MovingScene(64, 48)
    f0, f5 = scene.frame(0), scene.frame(5)
    assert f0.shape == (48, 64, 3) and f0.dtype.name == "uint8" and (f0 != f5).any()
    pts = scene.object_points(16)
    assert len(pts) == 16 and all(0 <= x < 64 and 0 <= y < 48 for x, y in pts)


# ------------------------------------------------------------------ engine bench
def test_engine_bench_cli_json_without_rclpy(tmp_path):
    """``anima-sam2 bench`` through the CLI, in a fresh process: JSON report, no rclpy imported."""
    out = tmp_path / "engine.json"
    code = ("import sys, anima_sam2_ros.cli as c; rc = c.main(['bench', *sys.argv[1:]]); "
            "print('RCLPY_IMPORTED' if 'rclpy' in sys.modules else 'NO_RCLPY', file=sys.stderr); "
            "sys.exit(rc)")
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", code, *TINY_ENGINE, "--json", "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "NO_RCLPY" in proc.stderr, "the engine bench imported rclpy"
    report = json.loads(proc.stdout)
    assert json.loads(out.read_text()) == report

    assert report["bench"] == "engine" and report["schema"] == 1
    cfg = report["config"]
    assert cfg["model"] == "test-micro" and cfg["precision"] == "fp32" and cfg["device"] == "cpu"
    assert cfg["resolution"] == [64, 48] and cfg["objects"] == [1, 2] and cfg["batch"] == 3
    assert cfg["dummy_weights"] is True and cfg["compile"] is False
    _positive(report["load_s"], "load_s")
    assert cfg["decoder_batch"] == 2  # the CPU default chunk, below the batch of 3
    expected = {"encoder", "decoder_1", "decoder_3_batched", "decoder_3_sequential", "decoder_3_one_forward",
                "segment_1", "segment_3_batched", "track_1", "track_2"}
    assert set(report["timings_ms"]) == expected
    for name, s in report["timings_ms"].items():
        _check_summary(s, name, runs=2)
        _positive(s["first_call_ms"], f"{name}.first_call_ms")
    mem = report["memory"]
    for key in ("rss_before_load_mb", "rss_after_load_mb", "rss_end_mb", "peak_rss_mb"):
        _positive(mem[key], key)
    assert mem["peak_rss_mb"] >= mem["rss_after_load_mb"] * 0.99
    assert mem["peak_cuda_mb"] is None  # CPU run
    assert set(mem["tracker_state_bytes"]) == {"track_1", "track_2"}
    for v in mem["tracker_state_bytes"].values():
        _positive(v, "tracker state bytes")
    for name, v in report["derived"].items():
        _positive(v, name)
    _check_goals(report["goals"])
    mach = report["machine"]
    assert mach["cpu"] and mach["torch"] and mach["transformers"] and mach["gpu"] is None


def test_engine_bench_table_and_errors(capsys):
    from anima_sam2_ros.bench import engine_bench

    rc = engine_bench.main([*TINY_ENGINE, "--objects", "0"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "engine bench: test-micro fp32 on cpu" in out and "decoder_3_batched" in out and "goals:" in out
    report = _last_json(out)
    assert "track_1" not in report["timings_ms"]
    assert engine_bench.main(["--model", "test-micro", "--resolution", "abc"]) == 2
    assert engine_bench.main(["--model", "no-such-model", "--json"]) == 2


# ------------------------------------------------------------------ stream bench
def test_cameras_bench_smoke(tmp_path, capsys):
    from anima_sam2_ros.bench import main

    out = tmp_path / "cameras.json"
    rc = main(["cameras", "--model", "test-micro", "--device", "cpu", "--cameras", "1,2", "--runs", "2",
               "--warmup", "1", "--resolution", "96x64", "--threads", "1", "--json", "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err[-3000:]
    report = json.loads(captured.out)
    assert json.loads(out.read_text()) == report and report["bench"] == "cameras"
    assert report["config"]["dummy"] and report["config"]["resolution"] == [96, 64]
    assert [r["cameras"] for r in report["results"]] == [1, 2]
    for r in report["results"]:
        for key in ("batched_ms", "sequential_ms", "encoder_batched_ms", "encoder_one_by_one_ms"):
            _check_summary(r[key], f"{r['cameras']}.{key}", runs=2)
        for key in ("batched_per_camera_ms", "batched_over_sequential", "batched_over_n_x_one_camera",
                    "encoder_batched_over_one_by_one"):
            _positive(r[key], f"{r['cameras']}.{key}")
    assert report["results"][0]["batched_over_n_x_one_camera"] == 1.0
    # Progress on stderr (stdout is only the JSON): a stage per camera count, every round counted.
    err = captured.err
    assert "[1/3] loading test-micro" in err and "[2/3] 1 camera(s)" in err, err
    assert "[3/3] 2 camera(s)" in err, err
    assert err.count("batched round 3/3") == 2 and "encoder one by one 3/3" in err, err
    assert "done in" in err.splitlines()[-1], err
    assert main(["cameras", "--cameras", "1,x"]) == 2


@pytest.mark.slow
def test_stream_bench_smoke(tmp_path, capsys):
    from anima_sam2_ros.bench import main

    out = tmp_path / "stream.json"
    rc = main(["stream", "--frames", "20", "--checkpoints", "4,18,20", "--window", "3", "--resolution",
               "64x48", "--objects", "2", "--ab-frames", "30", "--json", "--out", str(out)])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert json.loads(out.read_text()) == report
    assert report["bench"] == "stream" and report["config"]["frames"] == 20
    assert set(report["results"]) == {"ours", "stock"}
    for impl, res in report["results"].items():
        assert res["frames"] == 20
        assert set(res["checkpoints"]) == {"4", "18", "20"}
        for k, cp in res["checkpoints"].items():
            for key in ("frame_ms_median", "frame_ms_p90", "rss_mb", "state_bytes"):
                _positive(cp[key], f"{impl}@{k}.{key}")
        g = report["growth"][impl]
        for key in ("time_ratio", "rss_ratio", "state_ratio"):
            _positive(g[key], f"{impl}.{key}")
        assert isinstance(g["time_within_10pct"], bool) and isinstance(g["rss_within_10pct"], bool)
    # Bounded state: ours holds the same bytes at 18 and 20 frames (memory and the 16-frame pointer
    # window full); the stock session keeps every frame.
    ours = report["results"]["ours"]["checkpoints"]
    stock = report["results"]["stock"]["checkpoints"]
    assert ours["20"]["state_bytes"] == ours["18"]["state_bytes"]
    assert stock["20"]["state_bytes"] > stock["18"]["state_bytes"] > stock["4"]["state_bytes"]
    for m, c in report["ours_vs_stock"].items():
        _positive(c["time_ours_over_stock"], f"ours/stock@{m}")
    ew = report["equal_work"]
    assert ew["frames"] == 30 and ew["timed_from"] == 20
    for key in ("ours_ms_median", "stock_ms_median", "time_ours_over_stock"):
        _positive(ew[key], f"equal_work.{key}")
    assert ew["time_ours_over_stock"] == pytest.approx(ew["ours_ms_median"] / ew["stock_ms_median"])
    _check_goals(report["goals"])
    assert len(report["goals"]) == 3


# ------------------------------------------------------------------ node bench
@pytest.mark.ros
@pytest.mark.slow
def test_node_bench_smoke(tmp_path, capsys):
    require_workspace()
    from anima_sam2_ros.bench import main

    out = tmp_path / "node.json"
    rc = main(["node", "--resolutions", "96x64,128x96", "--runs", "2", "--warmup", "1", "--track-frames", "3",
               "--json", "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err[-4000:]
    report = json.loads(captured.out)
    assert json.loads(out.read_text()) == report
    assert report["bench"] == "node"
    assert report["config"]["discovery_range"] == "LOCALHOST" and report["config"]["domain_id"]
    assert set(report["results"]) == {"96x64", "128x96"}
    for key, r in report["results"].items():
        for kind in ("segment_request", "segment_latest"):
            s = r[kind]
            _check_summary(s["round_trip_ms"], f"{key}.{kind}.round_trip", runs=2)
            _check_summary(s["inference_ms"], f"{key}.{kind}.inference", runs=2)
            _positive(s["overhead_ms"]["median"], f"{key}.{kind}.overhead")
            _positive(s["overhead_ratio"], f"{key}.{kind}.overhead_ratio")
        t = r["track"]
        assert t["reason"] == "max_frames" and t["frames_processed"] == 5
        # The latency trace of every timed frame: camera stamp <= received <= step start <= step
        # end <= published <= receipt here, one clock; the probe process saw frames too (its first
        # can come before its subscriptions are matched: Jazzy's CI lane missed one).
        d = t["delivery"]
        assert d["frames"] == 3 and 1 <= d["probe_frames"] <= 3, d
        for hop in ("camera_to_node", "wait", "inference", "handoff", "delivery_feedback", "delivery_masks",
                    "probe_delivery_feedback", "probe_delivery_masks", "beyond_inference"):
            h = d[hop]
            assert (1 <= h["n"] <= 3 if hop.startswith("probe") else h["n"] == 3), (hop, h)
            assert 0.0 <= h["p50"] <= h["p99"] <= h["max"], (hop, h)
        _positive(d["inference"]["p50"], f"{key}.delivery.inference")
        assert t["masks_received"] == t["frames_processed"]
        for name in ("e2e_ms", "node_ms", "overhead_ms"):
            _check_summary(t[name], f"{key}.track.{name}", runs=3)
        _positive(t["overhead_ratio"], f"{key}.track.overhead_ratio")
        _positive(t["camera_rate_hz"], "camera rate")
        for name in ("segment", "track_step"):
            _check_summary(r["engine"][name], f"{key}.engine.{name}")
    _check_goals(report["goals"])
    from anima_sam2_ros.bench.node_bench import format_report

    table = format_report(report)  # what the bench prints without --json
    assert "tracking latency trace per frame" in table and "probe_delivery_masks" in table, table
    assert "p50" in table and "p99" in table and "max" in table


# ------------------------------------------------------------------ GPU script, run on the CPU
@pytest.mark.slow
def test_gpu_bench_script_runs_end_to_end_on_cpu(tmp_path):
    """``scripts/gpu_bench.sh`` runs end to end with ``DEVICE=cpu``.

    Every precision, with and without torch.compile, gives a report; the README table and the
    JSON come out. A lent GPU runs the same code.
    """
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # repository
    out = tmp_path / "out"
    env = dict(os.environ, OUT=str(out), PYTHON=sys.executable, DEVICE="cpu", MODEL="test-micro",
               RESOLUTION="64x48", RUNS="1", WARMUP="0", OBJECTS="1,2", TRACK_FILL="1",
               PRECISIONS="fp32 int8", COMPILE="0 1", OMP_NUM_THREADS="1",
               TORCHINDUCTOR_CACHE_DIR=str(tmp_path / "inductor"))
    proc = subprocess.run(["bash", os.path.join(root, "scripts", "gpu_bench.sh")], capture_output=True,
                          text=True, env=env, timeout=1800)
    log = (out / "gpu_bench.log").read_text() if (out / "gpu_bench.log").exists() else ""
    assert proc.returncode == 0, proc.stderr[-3000:] + log[-3000:]
    result = json.loads((out / "gpu_bench.json").read_text())
    assert result["failures"] == {}, result["failures"]
    assert set(result["runs"]) == {"fp32", "fp32_compile", "int8", "int8_compile"}
    for name, rep in result["runs"].items():
        assert rep["config"]["device"] == "cpu" and rep["config"]["compile"] == name.endswith("_compile")
        if rep["config"]["compile"]:
            assert rep["config"]["compiled_modules"], name
        assert "engine_bench" in rep["command"]
        for op in ("encoder", "decoder_1", "track_1", "track_2"):
            _check_summary(rep["timings_ms"][op], f"{name}.{op}", runs=1)
    table = (out / "gpu_bench.md").read_text()
    assert table.count("\n| fp32 |") == 2 and table.count("\n| int8 |") == 2
    assert "int8 / fp32 encoder time:" in table and "FAILED" not in table

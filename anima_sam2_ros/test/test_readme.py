"""The README's commands that need no robot run as written, in the environment the README names.

The lines come out of README.md (``readme_commands``), so text and test cannot drift apart:

* "Quick start": the ``.venv/bin/...`` lines, from the repository root, with nothing sourced and
  no ``PYTHONPATH`` (the ``make`` venv has the engine and ``anima-sam2`` by itself);
* "The engine without ROS": the Python example, in a folder outside the checkout, with the one
  substitution its comment documents (``sam2.1-hiera-tiny`` -> ``test-micro``: seconds, not a
  minute);
* "INT8 artifact": the ``anima-sam2 quantize`` / ``evaluate`` lines, which need real weights, with
  the substitutions the README documents under them (test-micro, dummy weights, fewer scenes) and
  ``HOME`` in a temporary folder.

* "Performance": every bench line is parsed by that bench's own argument parser.

The README's ROS sections ("Using the node", "Prompting", "Pipelines") are run by test_readme_ros.py.
"""

from __future__ import annotations

import os
import pathlib
import shlex
import subprocess
import sys

import pytest
from readme_commands import README, blocks, commands

ROOT = README.parent
VENV_BIN = pathlib.Path(sys.executable).parent


def _plain_env(home: pathlib.Path = None) -> dict:
    """The environment of a fresh shell with only the venv on PATH: nothing sourced, no PYTHONPATH."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "AMENT_PREFIX_PATH", "COLCON_PREFIX_PATH", "CMAKE_PREFIX_PATH",
                        "LD_LIBRARY_PATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{VENV_BIN}:/usr/bin:/bin"
    env.setdefault("OMP_NUM_THREADS", "2")
    if home is not None:
        env["HOME"] = str(home)
    return env


def _run(cmd: str, cwd: pathlib.Path, env: dict, timeout: float = 300.0) -> subprocess.CompletedProcess:
    proc = subprocess.run(["bash", "-c", cmd], cwd=str(cwd), env=env, capture_output=True, text=True,
                          timeout=timeout)
    tail = f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert proc.returncode == 0, f"{cmd}\nexit {proc.returncode}\n{tail}"
    return proc


def _stderr_is_only_the_dummy_warning(stderr: str) -> None:
    """Quiet start: stderr holds the dummy-weights warning exactly once and nothing else."""
    assert stderr.count("DUMMY (RANDOM) WEIGHTS") == 1, stderr
    others = [ln for ln in stderr.splitlines()
              if ln.strip() and "DUMMY (RANDOM) WEIGHTS" not in ln and not set(ln.split()[-1]) <= {"="}]
    assert not others, "unexpected stderr:\n" + "\n".join(others)


def test_quick_start_venv_lines_run_as_written():
    lines = [c for c in commands("Quick start") if c.startswith(".venv/bin/")]
    assert any("anima-sam2 --help" in c for c in lines) and any("python -c" in c for c in lines), lines
    assert (ROOT / ".venv" / "bin").resolve() == VENV_BIN.resolve(), "run me with the make venv's python"
    for cmd in lines:
        proc = _run(cmd, ROOT, _plain_env(), timeout=180)
        if "anima-sam2 --help" in cmd:
            assert "quantize" in proc.stdout and "segment" in proc.stdout
        else:
            assert "test-micro" in proc.stdout
            _stderr_is_only_the_dummy_warning(proc.stderr)


@pytest.mark.slow
def test_engine_example_runs_in_the_make_venv(tmp_path):
    (code,) = blocks("The engine without ROS", "python")
    assert 'load_model("sam2.1-hiera-tiny", weights="dummy"' in code and "the test uses it" in code
    script = tmp_path / "example.py"
    script.write_text(code.replace('"sam2.1-hiera-tiny"', '"test-micro"'))
    # Outside the checkout, nothing sourced: the import comes from the venv's editable install.
    proc = _run(f"python {shlex.quote(str(script))}", tmp_path, _plain_env(), timeout=300)
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 4, proc.stdout
    first = lines[0].split()
    assert first[0] == "0" and 0.0 <= float(first[1]) <= 1.0 and int(first[2]) >= 0
    assert [ln.split()[:2] for ln in lines[1:]] == [["0", "1"], ["1", "1"], ["2", "1"]]
    _stderr_is_only_the_dummy_warning(proc.stderr)


# The substitutions documented under the README's "INT8 artifact" lines.
INT8_SUBSTITUTIONS = [
    ("--model sam2.1-hiera-small --weights facebook/sam2.1-hiera-small",
     "--model test-micro --weights dummy --eval-scenes 1 --eval-frames 2"),
    ("--b sam2.1-hiera-small", "--b test-micro --b-weights dummy --scenes 1 --frames 2"),
]


@pytest.mark.slow
def test_int8_artifact_lines_with_documented_substitutions(tmp_path):
    lines = commands("INT8 artifact")
    assert [c.split()[:2] for c in lines] == [["anima-sam2", "quantize"], ["anima-sam2", "evaluate"]], lines
    section = README.read_text().split("### INT8 artifact", 1)[1]
    for _, new in INT8_SUBSTITUTIONS:  # the README documents every substitution made here
        for flag in new.split(" --")[1:]:
            assert f"--{flag.split()[0]}" in section, flag
    home = tmp_path / "home"
    home.mkdir()
    outputs = []
    for cmd in lines:
        for old, new in INT8_SUBSTITUTIONS:
            cmd = cmd.replace(old, new)
        assert "sam2.1-hiera-small " not in cmd + " " and "facebook/" not in cmd, cmd
        outputs.append(_run(cmd, tmp_path, _plain_env(home), timeout=600))
    artifact = home / ".cache" / "anima_sam2" / "sam2.1-hiera-small-int8"
    for name in ("model.safetensors", "config.json", "quantization.json", "README.md"):
        assert (artifact / name).is_file(), name
    quantize, evaluate = outputs
    assert f"wrote {artifact}" in quantize.stdout
    assert "IoU mean" in evaluate.stdout and "point" in evaluate.stdout
    for proc in outputs:
        assert "Traceback" not in proc.stderr
    # Dummy weights are said once per model, and the fidelity caveat once per report.
    assert (quantize.stdout + quantize.stderr).count("HAS DUMMY (RANDOM) WEIGHTS") == 1
    for proc in outputs:
        assert (proc.stdout + proc.stderr).count("fidelity numbers say little") == 1
    # Progress on stderr: numbered stages with elapsed time, scenes counted.
    for stage in ("[1/4] loading test-micro", "[2/4] quantizing", "[3/4] writing the artifact",
                  "[4/4] INT8 vs FP32 fidelity", "scene 1/1", "done in"):
        assert stage in quantize.stderr, (stage, quantize.stderr)
    for stage in ("[1/3] loading A", "[2/3] loading B", "[3/3] comparing", "scene 1/1", "done in"):
        assert stage in evaluate.stderr, (stage, evaluate.stderr)


def test_int8_lines_without_real_weights_say_so(tmp_path):
    """The README's quantize line as written, on a machine without the weights: one clear error line."""
    (quantize, _) = commands("INT8 artifact")
    home = tmp_path / "home"
    home.mkdir()
    env = dict(_plain_env(home), HF_HOME=str(tmp_path / "hf"))
    proc = subprocess.run(["bash", "-c", quantize], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "hf download facebook/sam2.1-hiera-small" in errors[0] and "real weights" in errors[0]
    assert "--weights dummy" in errors[0]


def test_missing_optional_dependencies_are_one_line(tmp_path):
    """What a `pip install .` venv lacks: torchao (quantize) and the ROS interfaces (segment, track)."""
    env = _plain_env()
    # Interfaces: the make venv without install/setup.bash sourced has rclpy but no anima_sam2_msgs.
    for sub in ("segment", "track"):
        proc = subprocess.run([str(VENV_BIN / "anima-sam2"), sub, "--point", "5,5"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 4, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
        assert "needs ROS 2" in proc.stderr and "install/setup.bash" in proc.stderr
    # torchao absent (hidden from the import system: it is installed here): one line, before any load.
    proc = _cli_without("torchao", ["quantize", "--model", "test-micro", "--weights", "dummy", "--out", "x"],
                        tmp_path, env)
    assert proc.stderr.strip() == ('error: anima-sam2 quantize needs torchao: pip install "anima-sam2[int8]" '
                                   '(in a checkout: pip install ".[int8]"; on a robot the torchao release '
                                   'matching its torch)')
    assert not (tmp_path / "x").exists() and "loaded" not in proc.stdout
    # OpenCV absent: `segment --out` (writes a PNG) says so before it contacts a node.
    proc = _cli_without("cv2", ["segment", "--point", "5,5", "--out", "mask.png"], tmp_path, env)
    assert proc.stderr.strip() == ('error: anima-sam2 segment needs OpenCV: pip install "anima-sam2[images]" '
                                   '(or opencv-python-headless)')


def _cli_without(module: str, argv: list, cwd: pathlib.Path, env: dict) -> subprocess.CompletedProcess:
    """``anima-sam2 ARGV`` in a fresh process where ``module`` cannot be imported; must exit 4."""
    code = (f"import sys; sys.modules[{module!r}] = None\n"
            "from anima_sam2_ros.cli import main\n"
            f"sys.exit(main({argv!r}))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 4, proc.stdout + proc.stderr
    return proc


class _ParsedError(Exception):
    """Raised instead of running a bench once its own parser accepted the README's arguments."""


def _performance_bench_lines() -> list:
    """Every bench command line of "Performance": ``(module or 'cli', argv)``, continuations joined."""
    from readme_commands import _sections

    body = "".join(text for title, text in _sections(README.read_text()) if title.startswith("Performance"))
    joined = body.replace("\\\n", " ")
    out = []
    for line in joined.splitlines():
        line = line.strip().strip("`").rstrip("'")
        if "-m anima_sam2_ros.bench." in line:
            module, _, rest = line.partition("-m anima_sam2_ros.bench.")[2].partition(" ")
            out.append((module.rstrip("'"), shlex.split(rest)))
        elif line.startswith(".venv/bin/anima-sam2 bench"):
            out.append(("cli", shlex.split(line)[1:]))
    return out


def test_performance_bench_lines_parse_with_the_benches_own_parsers(monkeypatch):
    """Each README bench line's flags are the bench's flags (running them takes minutes to hours).

    The bench's own ``main`` runs until its parser has accepted the arguments (a flag renamed in
    the code fails here: argparse exits 2), then stops.
    """
    import argparse
    import importlib

    lines = _performance_bench_lines()
    benches = {"engine_bench", "stream_bench", "node_bench", "perception_bench", "cli"}
    assert {m for m, _ in lines} >= benches, lines
    original = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, args=None, namespace=None):
        ns = original(self, args, namespace)
        if self.prog.startswith("anima-sam2 bench"):
            raise _ParsedError(ns)
        return ns

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
    for module, argv in lines:
        if module == "cli":
            from anima_sam2_ros.cli import main
        else:
            main = importlib.import_module(f"anima_sam2_ros.bench.{module}").main
        with pytest.raises(_ParsedError):
            main(argv)

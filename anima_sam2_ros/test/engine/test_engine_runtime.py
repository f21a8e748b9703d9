"""The engine owns its runtime: it imports no tooling, and starts without a word on stderr.

Real subprocesses (a fresh interpreter each, as a robot's process starts) and the real source
files of the package; nothing is mocked.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "anima_sam2_ros"
REPO = PKG.parent
FORBIDDEN = ("anima_sam2_ros.quant", "anima_sam2_ros.node", "anima_sam2_ros.bench",
             "anima_sam2_ros.cli", "anima_sam2_ros.demo", "rclpy")


def _imports(path: Path) -> list[tuple[int, str]]:
    """Absolute module names imported by a file (relative imports resolved against engine/)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ["anima_sam2_ros", "engine"][: max(0, 3 - node.level)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.append((node.lineno, name))
            found += [(node.lineno, f"{name}.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module":
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                found.append((node.lineno, node.args[0].value))
    return found


def test_engine_imports_no_tooling():
    """No module of engine/ imports quant/, node/, bench/, the CLI, the demo or rclpy."""
    files = sorted((PKG / "engine").rglob("*.py"))
    assert len(files) >= 10
    bad = [f"{f.relative_to(PKG)}:{line}: {name}" for f in files for line, name in _imports(f)
           if any(name == m or name.startswith(m + ".") for m in FORBIDDEN)]
    assert not bad, bad


def test_quant_uses_the_engine_reader():
    """quant/ has no artifact reader of its own: it imports the engine's."""
    text = "\n".join(p.read_text(encoding="utf-8") for p in (PKG / "quant").glob("*.py"))
    assert "anima_sam2_ros.engine.int8_loader" in text
    assert "def load_int8_artifact" not in text and "class Int8Linear" not in text
    assert not (PKG / "quant" / "artifact.py").exists()


def _run(code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env.pop("PYTHONWARNINGS", None)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=300)


def test_engine_import_prints_nothing():
    res = _run("import sys, anima_sam2_ros.engine as e; e.Prompt; e.ObjectResult; "
               "print('torch' in sys.modules, 'torchao' in sys.modules)")
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
    assert res.stdout.split() == ["False", "False"]


@pytest.fixture(scope="module")
def micro_fp32_dir(tmp_path_factory):
    from anima_sam2_ros.engine import load_model

    path = tmp_path_factory.mktemp("micro_fp32")
    load_model("test-micro", weights="dummy", device="cpu").model.save_pretrained(str(path))
    return str(path)


_SEGMENT_AND_TRACK = """
import sys
import numpy as np
from anima_sam2_ros.engine import Prompt, Segmenter, Tracker, load_model
m = load_model("test-micro", weights={path!r}, precision={precision!r}, device="cpu")
img = np.zeros((48, 64, 3), np.uint8); img[10:30, 20:40] = 200
(r,) = Segmenter(m).segment_image(img, [Prompt(points=np.array([[30.0, 20.0]]))])
t = Tracker(m)
t.step(img, [Prompt(object_id=1, box=np.array([20.0, 10.0, 40.0, 30.0]))]); t.step(img)
print("torchao" in sys.modules, m.precision)
"""


def test_fp32_load_segment_track_prints_nothing_and_skips_torchao(micro_fp32_dir):
    """A saved FP32 model loads, segments and tracks in a fresh process: stderr empty, no torchao."""
    res = _run(_SEGMENT_AND_TRACK.format(path=micro_fp32_dir, precision="fp32"))
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
    assert res.stdout.split() == ["False", "fp32"]


def test_int8_imports_torchao_quietly(micro_fp32_dir):
    """Precision int8 needs torchao: imported then, its import-time log noise kept off stderr."""
    res = _run(_SEGMENT_AND_TRACK.format(path=micro_fp32_dir, precision="int8"))
    assert res.returncode == 0, res.stderr
    # The engine's own warning about int8 on a CPU without VNNI/AMX may appear; nothing else.
    noise = [line for line in res.stderr.splitlines()
             if line.strip() and not line.startswith("precision int8 on a CPU")]
    assert not noise, noise
    assert res.stdout.split() == ["True", "int8"]

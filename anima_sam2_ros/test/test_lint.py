"""The repository's linters run as tests: ruff (pycodestyle, pyflakes, pep257, ...) and vermin."""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys

# The repository root: both packages, scripts/ and docs are linted together.
ROOT = pathlib.Path(__file__).resolve().parents[2]


def _tool(name: str) -> str:
    exe = pathlib.Path(sys.executable).parent / name
    found = str(exe) if exe.exists() else shutil.which(name)
    assert found, f"{name} is not installed (it is pinned in requirements.txt)"
    return found


def test_ruff_clean():
    proc = subprocess.run([_tool("ruff"), "check", "--no-cache", "."], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_python_310_compatible():
    """Robots run Python 3.10 (JetPack 6 / Humble): no newer stdlib or syntax."""
    proc = subprocess.run([_tool("vermin"), "-t=3.10-", "--no-tips", "--violations",
                           "--eval-annotations", "anima_sam2_ros", "scripts"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr

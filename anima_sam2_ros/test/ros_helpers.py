"""Helpers for tests that run real ROS 2 processes: skip-free checks and child processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import List, Optional

import pytest


def interfaces_available() -> bool:
    """True when the generated interfaces import (the package was built with colcon)."""
    try:
        import anima_sam2_msgs.msg  # noqa: F401
    except ImportError:
        return False
    return True


def require_workspace() -> None:
    """Fail (not skip) when run outside the built workspace: these tests must run in `make test`."""
    if not interfaces_available():
        pytest.fail(
            "anima_sam2_msgs.msg is not importable: run the ROS tests through `make test` "
            "(colcon build + installed package), not from the source tree"
        )


def spawn(args: List[str], env: Optional[dict] = None) -> subprocess.Popen:
    """Start a Python child process with the test environment; output goes to our stdout."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env["PYTHONUNBUFFERED"] = "1"
    return subprocess.Popen([sys.executable, *args], env=full_env)


def stop(proc: subprocess.Popen, timeout: float = 10.0) -> int:
    """SIGINT a child, then kill it if it does not exit; returns its exit code."""
    if proc.poll() is None:
        proc.send_signal(2)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode


def wait_for(predicate, timeout: float, period: float = 0.05) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(period)
    return bool(predicate())

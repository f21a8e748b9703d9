"""Progress lines for long work (quantize, evaluate, benchmarks): stage, elapsed time, what remains.

Lines go to stderr (stdout stays the report / JSON), flushed, one per stage or step::

    [   0.0s] [1/4] loading test-micro (fp32)
    [  10.5s] [2/4] quantizing the Linear layers (int8-dynamic)
    [  14.2s]       scene 2/6, ~31 s left

No terminal control characters, so logs and CI output read the same as a terminal.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Optional


class Progress:
    """Numbered stages and counted steps with elapsed time and an estimate of the time left."""

    def __init__(self, stages: int, stream: Any = None, enabled: bool = True) -> None:
        self.stages = int(stages)
        self.stream = stream
        self.enabled = enabled
        self.t0 = time.monotonic()
        self.stage_t0 = self.t0
        self.last = self.t0  # the last stage start or step
        self.what = ""  # the kind of the current steps; their pace counts from when it began
        self.n = 0

    def _print(self, text: str) -> None:
        if self.enabled:
            print(f"[{time.monotonic() - self.t0:7.1f}s] {text}", file=self.stream or sys.stderr, flush=True)

    def stage(self, text: str) -> None:
        """Start the next stage: ``[elapsed] [n/stages] text``."""
        self.n += 1
        self.stage_t0 = self.last = time.monotonic()
        self.what = ""
        self._print(f"[{self.n}/{self.stages}] {text}")

    def step(self, done: int, total: int, what: str = "step") -> None:
        """``done`` of ``total`` steps of the current stage finished; estimates the rest from their pace."""
        now = time.monotonic()
        if what != self.what:
            self.what, self.stage_t0 = what, self.last
        self.last = now
        spent = now - self.stage_t0
        left = f", ~{spent / done * (total - done):.0f} s left" if 0 < done < total else ""
        self._print(f"      {what} {done}/{total}{left}")

    def done(self, text: str = "done") -> None:
        """The closing line, with the total time."""
        self._print(f"{text} in {time.monotonic() - self.t0:.1f} s")


def callback(progress: Optional[Progress], what: str):
    """A ``(done, total) -> None`` function for library code that reports steps (None: no-op)."""
    if progress is None:
        return lambda done, total: None
    return lambda done, total: progress.step(done, total, what)

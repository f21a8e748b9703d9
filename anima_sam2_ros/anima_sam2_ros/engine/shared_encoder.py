"""One image encoder for several cameras' trackers running in their own threads.

``step_cameras`` batches frames a single caller already holds. In a node each camera has its
own inference thread (its own frame slot, goals and tracker), so frames that are ready
together arrive from different threads: ``SharedEncoder.encode`` collects them for at most
``window_s`` (or until every camera has one pending) and runs one batched encoder pass; every
caller gets the whole batch's features and its index in it. A lone camera waits at most the
window; a batch never exceeds ``max_batch``; an encoder failure reaches every caller of that
batch. The encoder is batch-invariant up to float rounding (``multi_camera`` tests), so results
do not depend on which frames shared a pass.
"""

from __future__ import annotations

import threading
import time
from typing import Any, List, Optional, Tuple

from .errors import InvalidInputError


class _Batch:
    def __init__(self) -> None:
        self.pixels: List[Any] = []
        self.done = threading.Event()
        self.vision: Any = None
        self.error: Optional[BaseException] = None


class SharedEncoder:
    """Dynamic batching of ``get_image_features`` over the threads that share a ``LoadedModel``."""

    def __init__(self, loaded: Any, cameras: int, window_s: float = 0.005, max_batch: int = 8) -> None:
        if not isinstance(cameras, int) or cameras < 1:
            raise InvalidInputError(f"cameras must be an integer >= 1, got {cameras!r}")
        if not 0.0 <= float(window_s) <= 1.0:
            raise InvalidInputError(f"window_s must be in [0, 1] s, got {window_s!r}")
        self._loaded = loaded
        self.cameras = cameras
        self.window_s = float(window_s)
        self.max_batch = max(1, int(max_batch))
        self._lock = threading.Condition()
        self._open: Optional[_Batch] = None
        self.passes = 0  # encoder passes run (a test and the diagnostics read them)
        self.frames = 0  # frames encoded

    def encode(self, pixels: Any) -> Tuple[Any, int]:
        """``pixels`` (1, 3, S, S) -> (the batch's image features, this frame's index in it)."""
        with self._lock:
            batch = self._open
            if batch is None or len(batch.pixels) >= self.max_batch:
                batch = _Batch()
                self._open = batch
                leader = True
            else:
                leader = False
            index = len(batch.pixels)
            batch.pixels.append(pixels)
            self._lock.notify_all()
            if leader:
                deadline = time.monotonic() + self.window_s
                while len(batch.pixels) < min(self.cameras, self.max_batch):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._lock.wait(left)
                if self._open is batch:
                    self._open = None  # later frames start the next batch
        if leader:
            self._run(batch)
        else:
            batch.done.wait()
        if batch.error is not None:
            raise batch.error
        return batch.vision, index

    def _run(self, batch: _Batch) -> None:
        import torch

        try:
            with self._loaded.autocast():
                stacked = batch.pixels[0] if len(batch.pixels) == 1 else torch.cat(batch.pixels, dim=0)
                batch.vision = self._loaded.model.get_image_features(stacked, return_dict=True)
            with self._lock:
                self.passes += 1
                self.frames += len(batch.pixels)
        except BaseException as exc:  # noqa: BLE001 - every waiting camera gets it
            batch.error = exc
        finally:
            batch.done.set()

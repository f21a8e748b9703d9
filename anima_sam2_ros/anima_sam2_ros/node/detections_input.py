"""Detector boxes and clicks as tracker prompts: association, rate limiting, stable ids (no ROS).

``DetectionPrompter`` is the worker's *pipeline* prompt source (``Worker.pipeline``). Executor
threads hand it parsed input (``submit_detections``: one detector array's boxes with its header
stamp; ``submit_click``: one pixel); the inference worker thread asks it, right before each
``Tracker.step``, for the prompts to apply on that frame (``prompts_for``) and tells it the
step's results (``on_results``). The objects it creates belong to it (ids from ``first_id`` up,
never reused), not to a track goal; the worker keeps them in the shared tracker while the
prompter owns them (``owned_ids``).

Matching a detector array to a frame (the tracker only moves forward, one frame at a time):

* stamp equal to the frame about to be tracked: applied on that frame;
* stamp of a frame already tracked (a detector is usually slower than the camera): associated
  with the objects' boxes *on that frame* (a bounded history), then applied on the next frame;
  a re-prompt box is shifted by its object's motion since then;
* stamp unknown (zero, or a frame never tracked) or older than the history: applied on the next
  frame, associated with the objects' current boxes;
* stamp newer than the frame: waits for its frame, at most ``max_wait`` seconds.

Association (greedy, highest IoU first): a box matches an object when the IoU with the object's
tracked box on the reference frame, or with the last detector box that matched it, is at least
``iou_threshold``, and the class ids agree where both are given. A matched object is re-prompted
with the box at most once per ``reprompt_interval`` seconds (a 30 Hz detector does not re-prompt
every frame); an unmatched box becomes a new object (while fewer than ``max_objects`` objects are
tracked in all). Objects that no detection supports are left to the tracker: it reports them
``lost`` after its ``lost_after`` frames; a box matching a lost object re-prompts it under the
same id. An object both lost and unsupported for ``forget_after`` tracked frames is dropped
(0 = never), so a detector's false positives do not fill ``max_objects``.

Thread safety: one lock guards everything; callbacks given to the constructor are never called
with it held.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Deque, Dict, List, Optional, Sequence, Set, Tuple

import numpy as np

from anima_sam2_ros.engine.types import Prompt

# Object ids of the pipeline start here, far from the small ids track goals assign (1, 2, ...).
FIRST_ID = 1000
# Frames whose object boxes are kept for associating late detector arrays.
HISTORY_FRAMES = 64
# Detector arrays / clicks waiting for the worker (older ones are dropped and counted).
QUEUE_DEPTH = 8


@dataclass(frozen=True)
class DetBox:
    """One detector box in source pixels (``x0 <= x1``, ``y0 <= y1``) with its best hypothesis."""

    x0: float
    y0: float
    x1: float
    y1: float
    class_id: str = ""
    score: float = 1.0

    def as_array(self) -> np.ndarray:
        """``(4,)`` float64 ``x_min, y_min, x_max, y_max`` (the engine's box prompt)."""
        return np.array([self.x0, self.y0, self.x1, self.y1], dtype=np.float64)


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two ``(x0, y0, x1, y1)`` boxes (0 for empty ones)."""
    ix = min(a[2], b[2]) - max(a[0], b[0])
    iy = min(a[3], b[3]) - max(a[1], b[1])
    if ix <= 0 or iy <= 0:
        return 0.0
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def mask_box(bbox: Sequence[int]) -> Optional[Tuple[float, float, float, float]]:
    """An engine result's inclusive pixel bbox as an edge box ``(x0, y0, x1 + 1, y1 + 1)``; None if empty."""
    x0, y0, x1, y1 = (int(v) for v in bbox)
    if x1 < x0 or y1 < y0:
        return None
    return (float(x0), float(y0), float(x1 + 1), float(y1 + 1))


@dataclass
class DetectionsConfig:
    """The prompter's parameters (node parameters ``detections.*`` and ``max_objects``)."""

    iou_threshold: float = 0.3
    reprompt_interval: float = 1.0
    min_score: float = 0.0
    forget_after: int = 30
    max_wait: float = 0.5
    max_objects: int = 16
    first_id: int = FIRST_ID


@dataclass
class PipelineObject:
    """One object the prompter owns."""

    object_id: int
    source: str  # "detection" or "click"
    class_id: str = ""
    det_box: Optional[Tuple[float, float, float, float]] = None  # last supporting detector box
    track_box: Optional[Tuple[float, float, float, float]] = None  # tracked box on the last frame
    last_prompt: float = 0.0  # monotonic time of the last (re-)prompt
    unsupported: int = 0  # tracked frames since a detection last supported it
    lost: bool = False
    supported_now: bool = False


@dataclass
class _Batch:
    stamp: Optional[int]  # header stamp in ns; None = unknown
    boxes: List[DetBox]
    received: float


@dataclass
class PrompterStats:
    """Counters (read with ``snapshot()``)."""

    arrays: int = 0
    arrays_dropped: int = 0
    boxes: int = 0
    added: int = 0
    reprompted: int = 0
    rate_limited: int = 0
    refused_full: int = 0
    forgotten: int = 0
    clicks: int = 0
    events: Deque[str] = field(default_factory=lambda: collections.deque(maxlen=32))


class DetectionPrompter:
    """Turns detector arrays and clicks into tracker prompts (see the module docstring)."""

    def __init__(self, config: DetectionsConfig, wake: Optional[Callable[[], None]] = None,
                 other_objects: Optional[Callable[[], int]] = None,
                 log: Optional[Callable[[str], None]] = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """Set up an empty prompter.

        ``wake()`` is called after new input (the worker re-checks for work); ``other_objects()``
        counts the tracked objects the prompter does not own (track goals'), for ``max_objects``.
        """
        self.config = config
        self._wake = wake
        self._other = other_objects
        self._log = log
        self._clock = clock
        self._lock = threading.Lock()
        self._batches: Deque[_Batch] = collections.deque()
        self._clicks: Deque[Tuple[float, float]] = collections.deque()
        self._objects: Dict[int, PipelineObject] = {}
        self._history: Deque[Tuple[int, Dict[int, Tuple[float, float, float, float]]]] = \
            collections.deque(maxlen=HISTORY_FRAMES)
        self._next_id = int(config.first_id)
        self.stats = PrompterStats()

    # ------------------------------------------------------------------ input (executor threads)
    def submit_detections(self, stamp_ns: Optional[int], boxes: Sequence[DetBox]) -> None:
        """Queue one detector array (already validated boxes; ``stamp_ns`` None = unknown)."""
        with self._lock:
            self.stats.arrays += 1
            if len(self._batches) >= QUEUE_DEPTH:
                self._batches.popleft()
                self.stats.arrays_dropped += 1
            self._batches.append(_Batch(stamp_ns if stamp_ns else None, list(boxes), self._clock()))
        self._notify()

    def submit_click(self, x: float, y: float) -> None:
        """Queue a click at pixel ``(x, y)``: a new object on the next tracked frame."""
        with self._lock:
            if len(self._clicks) >= QUEUE_DEPTH:
                self._clicks.popleft()
            self._clicks.append((float(x), float(y)))
            self.stats.clicks += 1
        self._notify()

    def clear_pending(self) -> None:
        """Forget queued input (deactivate)."""
        with self._lock:
            self._batches.clear()
            self._clicks.clear()

    def _notify(self) -> None:
        if self._wake is not None:
            self._wake()

    # ------------------------------------------------------------------ worker thread
    def wants_frames(self) -> bool:
        """True while the prompter owns objects or has queued input (the worker tracks frames)."""
        with self._lock:
            return bool(self._objects or self._batches or self._clicks)

    def owned_ids(self) -> Set[int]:
        """Ids the worker keeps in the tracker for the prompter."""
        with self._lock:
            return set(self._objects)

    def class_of(self, object_id: int) -> str:
        """The class id of an object created by a detection ('' for clicks and unknown ids)."""
        with self._lock:
            obj = self._objects.get(int(object_id))
            return obj.class_id if obj is not None else ""

    def reset(self) -> None:
        """Forget every object (the tracker was reset); queued input stays."""
        with self._lock:
            self._objects.clear()
            self._history.clear()

    def prompts_for(self, stamp_ns: Optional[int], hw: Tuple[int, int]) -> List[Prompt]:
        """Prompts to apply on the frame stamped ``stamp_ns`` (size ``hw``), before its step."""
        others = int(self._other()) if self._other is not None else 0
        messages: List[str] = []
        with self._lock:
            prompts: Dict[int, Prompt] = {}
            now = self._clock()
            height, width = int(hw[0]), int(hw[1])
            for x, y in self._clicks:
                if not (0.0 <= x < width and 0.0 <= y < height):
                    messages.append(f"click at pixel ({x:.1f}, {y:.1f}) is outside the "
                                    f"{width}x{height} frame: ignored")
                    continue
                obj = self._new_object("click", "", None, now, others, messages)
                if obj is None:
                    continue
                prompts[obj.object_id] = Prompt(object_id=obj.object_id, points=np.array([[x, y]]),
                                                labels=np.array([1]))
                messages.append(f"click at pixel ({x:.1f}, {y:.1f}): new object {obj.object_id}")
            self._clicks.clear()
            keep: Deque[_Batch] = collections.deque()
            for batch in self._batches:
                if (batch.stamp is not None and stamp_ns is not None and batch.stamp > stamp_ns
                        and now - batch.received < self.config.max_wait):
                    keep.append(batch)  # its frame has not arrived yet
                    continue
                self._associate(batch, stamp_ns, (width, height), now, others, prompts, messages)
            self._batches = keep
        if self._log is not None:
            for text in messages:
                self._log(text)
        return list(prompts.values())

    def _new_object(self, source: str, class_id: str, box: Optional[Tuple[float, float, float, float]],
                    now: float, others: int, messages: List[str]) -> Optional[PipelineObject]:
        if len(self._objects) + others >= self.config.max_objects:
            self.stats.refused_full += 1
            messages.append(f"{source}: not adding an object: {len(self._objects) + others} objects "
                            f"tracked (max_objects {self.config.max_objects})")
            return None
        oid = self._next_id
        self._next_id += 1
        obj = PipelineObject(object_id=oid, source=source, class_id=class_id, det_box=box, last_prompt=now,
                             supported_now=box is not None)
        self._objects[oid] = obj
        self.stats.added += 1
        self.stats.events.append(f"added {oid} ({source}{', ' + class_id if class_id else ''})")
        return obj

    def _reference_boxes(self, stamp: Optional[int]) -> Tuple[Dict[int, Any], bool]:
        """Object boxes on the frame stamped ``stamp`` (from the history) or the latest ones."""
        if stamp is not None:
            for hist_stamp, boxes in reversed(self._history):
                if hist_stamp == stamp:
                    return boxes, True
        return {oid: o.track_box for oid, o in self._objects.items()}, False

    def _associate(self, batch: _Batch, stamp_ns: Optional[int], size: Tuple[int, int], now: float,
                   others: int, prompts: Dict[int, Prompt], messages: List[str]) -> None:
        cfg = self.config
        width, height = size
        boxes = []
        for b in batch.boxes:
            if b.score < cfg.min_score:
                continue
            clipped = (max(0.0, b.x0), max(0.0, b.y0), min(float(width), b.x1), min(float(height), b.y1))
            if clipped[2] - clipped[0] < 1.0 or clipped[3] - clipped[1] < 1.0:
                messages.append(f"detection box ({b.x0:.1f}, {b.y0:.1f}, {b.x1:.1f}, {b.y1:.1f}) lies "
                                f"outside the {width}x{height} frame: ignored")
                continue
            boxes.append((clipped, b))
        self.stats.boxes += len(boxes)
        ref, from_history = self._reference_boxes(batch.stamp)
        pairs = []
        for k, (box, det) in enumerate(boxes):
            for oid, obj in self._objects.items():
                if det.class_id and obj.class_id and det.class_id != obj.class_id:
                    continue
                score = max(iou(box, obj.det_box) if obj.det_box else 0.0,
                            iou(box, ref[oid]) if ref.get(oid) else 0.0)
                if score >= cfg.iou_threshold:
                    pairs.append((score, k, oid))
        pairs.sort(key=lambda t: -t[0])
        used_boxes: Set[int] = set()
        used_objects: Set[int] = set()
        for _, k, oid in pairs:
            if k in used_boxes or oid in used_objects:
                continue
            used_boxes.add(k)
            used_objects.add(oid)
            box, det = boxes[k]
            obj = self._objects[oid]
            obj.det_box = box
            obj.supported_now = True
            if not obj.class_id:
                obj.class_id = det.class_id
            if now - obj.last_prompt < cfg.reprompt_interval:
                self.stats.rate_limited += 1
                continue
            shifted = box
            old, cur = ref.get(oid), obj.track_box
            if from_history and old and cur and batch.stamp != stamp_ns:
                dx = 0.5 * (cur[0] + cur[2] - old[0] - old[2])
                dy = 0.5 * (cur[1] + cur[3] - old[1] - old[3])
                shifted = (max(0.0, box[0] + dx), max(0.0, box[1] + dy),
                           min(float(width), box[2] + dx), min(float(height), box[3] + dy))
                if shifted[2] - shifted[0] < 1.0 or shifted[3] - shifted[1] < 1.0:
                    shifted = box
            obj.last_prompt = now
            prompts[oid] = Prompt(object_id=oid, box=np.array(shifted, dtype=np.float64))
            self.stats.reprompted += 1
            self.stats.events.append(f"reprompted {oid}")
        for k, (box, det) in enumerate(boxes):
            if k in used_boxes:
                continue
            obj = self._new_object("detection", det.class_id, box, now, others + 0, messages)
            if obj is None:
                break
            prompts[obj.object_id] = Prompt(object_id=obj.object_id, box=np.array(box, dtype=np.float64))

    def on_results(self, stamp_ns: Optional[int], results: Sequence[Any]) -> List[int]:
        """Update the owned objects from one step's results; returns the ids forgotten now."""
        by_id = {int(r.object_id): r for r in results}
        forgotten: List[int] = []
        with self._lock:
            boxes: Dict[int, Any] = {}
            for oid in list(self._objects):
                obj = self._objects[oid]
                result = by_id.get(oid)
                if result is None:  # removed from the tracker behind our back (reset, a goal's id)
                    del self._objects[oid]
                    forgotten.append(oid)
                    continue
                visible = bool(result.visible) and int(result.area) > 0
                obj.track_box = mask_box(result.bbox) if visible else None
                obj.lost = bool(result.lost)
                obj.unsupported = 0 if obj.supported_now else obj.unsupported + 1
                obj.supported_now = False
                boxes[oid] = obj.track_box
                forget = self.config.forget_after
                if forget and obj.lost and obj.unsupported >= forget:
                    del self._objects[oid]
                    forgotten.append(oid)
                    self.stats.forgotten += 1
                    self.stats.events.append(f"forgot {oid}")
            if stamp_ns is not None:
                self._history.append((int(stamp_ns), boxes))
        if forgotten and self._log is not None:
            self._log(f"pipeline objects {forgotten} dropped (lost and unsupported by detections for "
                      f"{self.config.forget_after} frames, or removed from the tracker)")
        return forgotten

    def snapshot(self) -> Dict[str, Any]:
        """Counters and the owned objects, for logs, diagnostics and tests."""
        with self._lock:
            s = self.stats
            return {"arrays": s.arrays, "arrays_dropped": s.arrays_dropped, "boxes": s.boxes,
                    "added": s.added, "reprompted": s.reprompted, "rate_limited": s.rate_limited,
                    "refused_full": s.refused_full, "forgotten": s.forgotten, "clicks": s.clicks,
                    "objects": sorted(self._objects), "pending": len(self._batches) + len(self._clicks),
                    "events": list(s.events)}

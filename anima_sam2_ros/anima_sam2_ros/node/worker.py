"""The inference worker: one thread owns the model; a depth-1 slot hands it the latest camera frame.

No rclpy here (only message classes through ``conversions``): the node's executor threads talk to
the worker through ``FrameSlot.put`` (camera callbacks), ``submit_segment`` (service callbacks,
which wait on the returned future with a timeout) and the goal registry (``reserve_goal`` in the
action's goal callback, ``claim_goal`` / ``end_goal`` in its execute callback). Everything the
worker shares is guarded by one condition variable; the engine objects (``Segmenter``,
``Tracker``) are touched only by the worker thread.

Admission: at most ``segment_queue`` segment requests wait (the running one not counted); one
more is answered at once with ``BusyError`` ("busy ..."). Every request carries a deadline
(``segment_timeout`` after its arrival); ``expire()`` (called by a node timer) answers overdue
ones, queued or running, with ``SegmentTimeoutError``, and a late result is dropped.

Per loop iteration the worker serves one queued segment request or one tracking frame; when both
wait they take turns, so a burst of segment calls never starves running goals. A tracking frame:
removes the objects of ended goals, validates the new goals' prompts against the frame (a bad
prompt aborts only its goal), applies take-overs (the newest goal prompting an id owns it), runs
ONE ``Tracker.step`` for every object of every goal (one image-encoder pass), then hands each goal
its objects' feedback (with the frame's latency trace) and publishes the output topics. An
exception never ends the thread: it is logged and reported to the request or goals concerned.
"""

from __future__ import annotations

import collections
import concurrent.futures
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Deque, Dict, List, Optional, Sequence, Tuple

import numpy as np

from anima_sam2_ros.engine.errors import InvalidInputError

from . import conversions

# A goal reserved in the goal callback but never started is forgotten after this many seconds.
RESERVATION_TTL = 30.0
# Goals that ended before their execute callback claimed them, kept so it can report why.
_ENDED_KEPT = 256


class BusyError(InvalidInputError):
    """The segment queue is full: the request is refused at once (``success: false, "busy ..."``)."""


class SegmentTimeoutError(InvalidInputError):
    """A segment request passed its deadline (``segment_timeout``) before it was answered."""


# Substrings of allocator failures: torch.cuda.OutOfMemoryError ("CUDA out of memory"), CPU
# allocator ("DefaultCPUAllocator: can't allocate memory"), MPS and oneDNN variants.
_OOM_MARKERS = ("out of memory", "can't allocate memory", "cannot allocate memory", "failed to allocate")


def is_out_of_memory(exc: BaseException) -> bool:
    """True for an allocation failure (``MemoryError``, CUDA OOM, torch's CPU allocator)."""
    if isinstance(exc, MemoryError):
        return True
    oom_type = None
    try:
        import torch

        oom_type = getattr(torch.cuda, "OutOfMemoryError", None) or getattr(torch, "OutOfMemoryError", None)
    except Exception:  # noqa: BLE001 - torch missing or broken: fall back to the message
        pass
    if oom_type is not None and isinstance(exc, oom_type):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(m in text for m in _OOM_MARKERS)


def release_memory() -> None:
    """After an allocation failure: collect garbage and empty the CUDA cache (if CUDA is in use)."""
    import gc

    gc.collect()
    try:
        import torch

        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001 - best effort
        pass


@dataclass
class Frame:
    """One camera (or request) image with its header and arrival time."""

    image: np.ndarray
    encoding: str
    header: Any
    seq: int
    received: float  # time.monotonic() at arrival
    received_wall: float = 0.0  # time.time() at arrival (latency trace; 0 = unknown)


class FrameSlot:
    """Depth-1 latest-frame slot: a newer frame replaces an unprocessed one (counted as dropped).

    Shares the worker's condition variable, so a ``put`` wakes the worker.
    """

    def __init__(self, cond: threading.Condition) -> None:
        self._cond = cond
        self._latest: Optional[Frame] = None
        self._pending = False
        self._seq = 0
        self.received = 0
        self.dropped = 0
        self.consuming = False  # set by the worker while track goals run
        self.last_put: Optional[float] = None

    def put(self, image: np.ndarray, encoding: str, header: Any) -> Frame:
        """Store a new frame (the previous one is dropped if it was not processed)."""
        now = time.monotonic()
        with self._cond:
            self._seq += 1
            if self._pending and self.consuming:
                self.dropped += 1
            frame = Frame(image, encoding, header, self._seq, now, time.time())
            self._latest = frame
            self._pending = True
            self.received += 1
            self.last_put = now
            self._cond.notify_all()
        return frame

    def latest(self) -> Optional[Frame]:
        """The newest frame, processed or not (segment requests use it)."""
        with self._cond:
            return self._latest

    def has_pending(self) -> bool:
        """True when a frame arrived that the tracker has not taken yet (caller holds the lock)."""
        return self._pending

    def take(self) -> Optional[Frame]:
        """The newest unprocessed frame, marking it processed; None if there is none."""
        with self._cond:
            if not self._pending:
                return None
            self._pending = False
            return self._latest

    def discard_pending(self) -> None:
        """Treat the current frame as processed (a new goal starts on the NEXT frame)."""
        with self._cond:
            self._pending = False

    def clear(self) -> None:
        """Forget the latest frame (on deactivate: a stale frame must not answer segment calls)."""
        with self._cond:
            self._latest = None
            self._pending = False


@dataclass
class GoalState:
    """One track goal as the worker sees it."""

    request: Any  # the Track.Goal message (identity links goal callback and execute callback)
    prompts: List[Any]  # engine Prompts with assigned ids, applied on the goal's first frame
    max_frames: int
    min_score: float
    max_lost_frames: int
    reserved_at: float = field(default_factory=time.monotonic)
    seq: int = 0  # reservation order: of two goals prompting one id, the larger seq wins
    claimed: bool = False
    added: bool = False
    started: float = 0.0
    last_frame_at: float = 0.0
    frames_processed: int = 0
    unseen: Dict[int, int] = field(default_factory=dict)
    feedback: Deque[Any] = field(default_factory=lambda: collections.deque(maxlen=64))
    end_reason: Optional[str] = None
    succeeded: bool = False
    wake: threading.Event = field(default_factory=threading.Event)
    taken_over: List[int] = field(default_factory=list)  # ids another goal took over (re-prompted)

    @property
    def object_ids(self) -> List[int]:
        """The goal's object ids (assigned ones included)."""
        return [int(p.object_id) for p in self.prompts]


class SegmentJob:
    """A segment request queued for the worker; ``future`` gets ``(objects, header, ms)``.

    The future fails with ``BusyError`` (queue full), ``SegmentTimeoutError`` (deadline passed),
    ``InvalidInputError`` (bad input, shutting down) or ``RuntimeError`` (inference error).
    """

    def __init__(self, frame: Frame, prompts: List[Any], multimask: bool,
                 timeout: Optional[float] = None, return_logits: bool = False) -> None:
        self.frame = frame
        self.prompts = prompts
        self.multimask = multimask
        self.return_logits = bool(return_logits)
        self.mask_logits: Tuple[int, Any] = (0, [])  # (side, flat floats) when return_logits
        self.arrived = time.monotonic()
        self.timeout = timeout
        self.deadline = self.arrived + timeout if timeout else float("inf")
        self.future: concurrent.futures.Future = concurrent.futures.Future()

    def resolve(self, result: Any = None, error: Optional[BaseException] = None) -> bool:
        """Answer the request once; False if it was answered already (a late result is dropped)."""
        try:
            if error is not None:
                self.future.set_exception(error)
            else:
                self.future.set_result(result)
        except concurrent.futures.InvalidStateError:
            return False
        return True


@dataclass
class WorkerConfig:
    """What the worker needs of the node's parameters."""

    max_objects: int = 16
    max_goals: int = 8
    min_score: float = 0.0
    mask_in_results: bool = True
    segment_queue: int = 8


@dataclass
class WorkerStats:
    """Counters for /diagnostics (read under the lock)."""

    frames_tracked: int = 0
    segment_calls: int = 0
    segment_busy: int = 0  # refused: queue full
    segment_timeouts: int = 0  # answered with a timeout
    errors: int = 0
    last_latency_ms: float = 0.0
    last_inference_ms: float = 0.0
    track_times: Deque[float] = field(default_factory=lambda: collections.deque(maxlen=30))
    last_error: str = ""
    tracker_objects: int = 0  # objects held by the tracker after the last step (worker thread)


class Worker:
    """Owns the model (``Segmenter`` + one shared ``Tracker``) and the thread that runs them."""

    def __init__(self, segmenter: Any, tracker: Any, config: WorkerConfig, logger: Any,
                 publish: Optional[Callable[[Frame, List[Any], List[Any], str], None]] = None) -> None:
        """``publish(frame, results, object_msgs, source)`` is called after every inference."""
        self._segmenter = segmenter
        self._tracker = tracker  # None: image-only weights (goals refused with tracking_refusal)
        self.tracking_refusal = str(getattr(getattr(segmenter, "model", None), "tracking_refusal", "") or "")
        self.config = config
        self._log = logger
        self._publish = publish
        self._cond = threading.Condition()
        self.slot = FrameSlot(self._cond)
        self._jobs: Deque[SegmentJob] = collections.deque()
        self._running: Optional[SegmentJob] = None
        self._served_segment = False  # the last turn was a segment request (fairness)
        self._goals: List[GoalState] = []
        self._goal_seq = 0
        self._ended: Deque[GoalState] = collections.deque(maxlen=_ENDED_KEPT)
        self._removals: List[int] = []
        self._stop = False
        self._seg_seq: Optional[int] = None
        self.stats = WorkerStats()
        # Detector / click prompt source (detections_input.DetectionPrompter), set by the node: its
        # objects are tracked on every frame alongside the goals' (issue 16).
        self.pipeline: Any = None
        self._thread = threading.Thread(target=self._run, name="sam2-inference", daemon=True)

    # ------------------------------------------------------------------ lifetime
    def start(self) -> None:
        """Start the worker thread."""
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> bool:
        """End every goal and request, stop the thread; True if it ended within ``timeout``."""
        self.end_all_goals("shutdown")
        self.fail_pending("the node is shutting down")
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        """True while the worker thread runs."""
        return self._thread.is_alive()

    # ------------------------------------------------------------------ segment
    def submit_segment(self, frame: Frame, prompts: List[Any], multimask: bool,
                       timeout: Optional[float] = None, return_logits: bool = False) -> SegmentJob:
        """Queue a segment request (deadline ``timeout`` s from now); its ``future`` gets the answer.

        Never blocks: with ``segment_queue`` requests already waiting, the future fails at once
        with ``BusyError``.
        """
        job = SegmentJob(frame, prompts, multimask, timeout, return_logits)
        with self._cond:
            if self._stop:
                job.resolve(error=InvalidInputError("the node is shutting down"))
                return job
            cap = max(int(self.config.segment_queue), 1)
            if len(self._jobs) >= cap:
                self.stats.segment_busy += 1
                job.resolve(error=BusyError(
                    f"busy: {len(self._jobs)} segment requests are already waiting for the inference "
                    f"worker (parameter segment_queue = {cap}); retry later"))
                return job
            self._jobs.append(job)
            self._cond.notify_all()
        return job

    def queued_segments(self) -> int:
        """Segment requests waiting (not counting the running one)."""
        with self._cond:
            return len(self._jobs)

    def expire(self, now: Optional[float] = None) -> int:
        """Answer every request past its deadline (queued or running) with ``SegmentTimeoutError``."""
        now = time.monotonic() if now is None else now
        with self._cond:
            overdue = [j for j in self._jobs if j.deadline <= now]
            for job in overdue:
                self._jobs.remove(job)
            running = self._running
            if running is not None and running.deadline <= now and not running.future.done():
                overdue.append(running)
        answered = 0
        for job in overdue:
            where = "still running" if job is running else "still queued"
            if job.resolve(error=SegmentTimeoutError(
                    f"timed out: not answered within segment_timeout = {job.timeout:g} s of its arrival "
                    f"({where}); the inference worker is busy, retry later")):
                answered += 1
        if answered:
            with self._cond:
                self.stats.segment_timeouts += answered
        return answered

    def fail_pending(self, reason: str) -> None:
        """Answer every queued segment request with ``reason``."""
        with self._cond:
            jobs = list(self._jobs)
            self._jobs.clear()
        for job in jobs:
            job.resolve(error=InvalidInputError(reason))

    # ------------------------------------------------------------------ goals
    def reserve_goal(self, prompt_msgs: Sequence[Any], max_frames: int, min_score: float,
                     max_lost_frames: int, request: Any,
                     max_side: int = conversions.DEFAULT_MAX_SIDE) -> Tuple[Optional[GoalState], str]:
        """Check a goal and reserve its object ids; ``(goal, "")`` or ``(None, reason)``."""
        if self._tracker is None:
            return None, self.tracking_refusal or "the model cannot track"
        if not len(prompt_msgs):
            return None, "the goal has no prompts"
        if not np.isfinite(min_score) or not 0.0 <= float(min_score) <= 1.0:
            return None, f"min_score must be in [0, 1], got {min_score}"
        try:
            prompts = [conversions.prompt_from_msg(m, max_side) for m in prompt_msgs]
        except InvalidInputError as exc:
            return None, str(exc)
        with self._cond:
            if self._stop:
                return None, "the node is shutting down"
            now = time.monotonic()
            for g in self._goals:
                if not g.claimed and now - g.reserved_at >= RESERVATION_TTL:
                    g.end_reason = f"reservation expired (not started within {RESERVATION_TTL:g} s)"
                    self._ended.append(g)
            self._goals = [g for g in self._goals if g.end_reason is None]
            owners = {oid: g for g in self._goals for oid in g.object_ids}
            try:  # duplicate ids within the goal; id 0 -> a free id
                prompts = conversions.assign_ids(prompts, taken=list(owners))
            except InvalidInputError as exc:
                return None, str(exc)
            # A known id re-prompts its object: ownership moves to this goal (the newest) on the
            # goal's first frame, whether the owner runs already or has not started yet.
            takeover = [p.object_id for p in prompts if p.object_id in owners]
            if len(self._goals) >= self.config.max_goals:
                return None, f"{len(self._goals)} track goals are running (max_goals {self.config.max_goals})"
            total = len(owners) + len(prompts) - len(takeover)
            if total > self.config.max_objects:
                return None, (f"{len(prompts)} objects would make {total} tracked objects, more than "
                              f"max_objects {self.config.max_objects} ({len(owners)} already tracked)")
            self._goal_seq += 1
            goal = GoalState(request=request, prompts=prompts, max_frames=int(max_frames),
                             min_score=float(min_score), max_lost_frames=int(max_lost_frames),
                             seq=self._goal_seq)
            goal.unseen = {oid: 0 for oid in goal.object_ids}
            self._goals.append(goal)
        return goal, ""

    def claim_goal(self, request: Any) -> Optional[GoalState]:
        """The goal reserved for ``request`` (the execute callback starts it), or None.

        A goal that ended before it was claimed (taken over, deactivated, expired) is returned
        with its ``end_reason`` set, so the execute callback can say why.
        """
        with self._cond:
            for goal in self._ended:
                if goal.request is request and not goal.claimed:
                    goal.claimed = True
                    self._ended.remove(goal)
                    return goal
            for goal in self._goals:
                if goal.request is request and not goal.claimed:
                    if not any(g.claimed for g in self._goals):
                        self.slot.discard_pending()  # start on the next frame, not a stale one
                    goal.claimed = True
                    goal.started = goal.last_frame_at = time.monotonic()
                    self.slot.consuming = True
                    self._cond.notify_all()
                    return goal
        return None

    def end_goal(self, goal: GoalState, reason: str, succeeded: bool = False) -> bool:
        """End a goal (first reason wins) and schedule its objects' removal; True if it ended now."""
        with self._cond:
            if goal.end_reason is not None:
                return False
            goal.end_reason = reason
            goal.succeeded = succeeded
            if goal in self._goals:
                self._goals.remove(goal)
            if not goal.claimed:
                self._ended.append(goal)
            # An id another live goal also holds (a pending takeover) stays in the tracker.
            live = {oid for g in self._goals for oid in g.object_ids}
            self._removals.extend(oid for oid in goal.object_ids if oid not in live)
            self.slot.consuming = any(g.claimed for g in self._goals)
            self._cond.notify_all()
        goal.wake.set()
        return True

    def end_all_goals(self, reason: str) -> List[GoalState]:
        """End every reserved or running goal with ``reason``."""
        with self._cond:
            goals = list(self._goals)
        for goal in goals:
            self.end_goal(goal, reason)
        return goals

    def running_goals(self) -> int:
        """Number of reserved or running goals."""
        with self._cond:
            return len(self._goals)

    def tracked_objects(self) -> int:
        """Number of distinct objects owned by goals."""
        with self._cond:
            return len({oid for g in self._goals for oid in g.object_ids})

    def notify(self) -> None:
        """Wake the worker thread to re-check for work (new pipeline input)."""
        with self._cond:
            self._cond.notify_all()

    def _pipeline_wants(self) -> bool:
        pipeline = self.pipeline
        return pipeline is not None and pipeline.wants_frames()

    # ------------------------------------------------------------------ thread
    def _has_work(self) -> bool:
        if self._stop or self._jobs:
            return True
        return self.slot.has_pending() and (any(g.claimed for g in self._goals) or self._pipeline_wants())

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._has_work():
                    self._cond.wait(1.0)
                    if self._removals and not self._goals:
                        break
                if self._stop:
                    break
                track_ready = self.slot.has_pending() and (any(g.claimed for g in self._goals)
                                                           or self._pipeline_wants())
                job = None
                # Take turns when both wait: a burst of segment calls never starves the goals.
                if self._jobs and not (track_ready and self._served_segment):
                    job = self._jobs.popleft()
                self._running = job
                self._served_segment = job is not None
            try:
                if job is not None:
                    self._segment(job)
                else:
                    self._track()
            except Exception as exc:  # noqa: BLE001 - the worker thread must survive anything
                self._report_error("worker", exc)
            finally:
                with self._cond:
                    self._running = None
        self._drop_removed()

    def _report_error(self, what: str, exc: BaseException) -> str:
        text = f"{type(exc).__name__}: {exc}"
        if is_out_of_memory(exc):
            text = f"out of memory: {text}"
            release_memory()
        with self._cond:
            self.stats.errors += 1
            self.stats.last_error = f"{what}: {text}"
        self._log.error(f"{what} failed: {text}\n{traceback.format_exc()}")
        return text

    def _segment(self, job: SegmentJob) -> None:
        if job.future.done() or not job.future.set_running_or_notify_cancel():
            return  # answered already (deadline) or the caller gave up
        if job.deadline <= time.monotonic():
            self.expire()
            return
        t0 = time.monotonic()
        try:
            frame = job.frame
            if self._seg_seq is None or frame.seq <= 0 or frame.seq != self._seg_seq:
                self._seg_seq = None
                self._segmenter.set_image(frame.image, encoding=frame.encoding)
                self._seg_seq = frame.seq if frame.seq > 0 else None
            results = self._segmenter.segment(job.prompts, multimask_output=job.multimask,
                                              return_logits=job.return_logits)
        except InvalidInputError as exc:
            job.resolve(error=exc)
            return
        except Exception as exc:  # noqa: BLE001 - OOM, driver errors...: report, keep serving
            self._seg_seq = None
            text = self._report_error("segment", exc)
            job.resolve(error=RuntimeError(f"inference error: {text}"))
            return
        ms = (time.monotonic() - t0) * 1000.0
        try:
            header = conversions.header_copy(frame.header)
            objects = [conversions.object_mask_msg(r, header, self.config.mask_in_results,
                                                   self.config.min_score) for r in results]
            if job.return_logits:
                job.mask_logits = conversions.mask_logits_fields(results)
        except Exception as exc:  # noqa: BLE001
            text = self._report_error("segment result conversion", exc)
            job.resolve(error=RuntimeError(text))
            return
        with self._cond:
            self.stats.segment_calls += 1
            self.stats.last_inference_ms = ms
        job.resolve((objects, header, ms))
        if self._publish is not None:
            try:
                self._publish(frame, results, objects, "segment")
            except Exception as exc:  # noqa: BLE001
                self._report_error("publishing segment results", exc)

    def _drop_removed(self) -> None:
        """Remove the objects of ended goals and any object no goal owns (worker thread)."""
        with self._cond:
            removals, self._removals = self._removals, []
            owned = {oid for g in self._goals for oid in g.object_ids}
        if self.pipeline is not None:
            owned |= self.pipeline.owned_ids()
        if self._tracker is None:
            return
        known = set(self._tracker.object_ids)
        for oid in set(removals) | (known - owned):
            if oid in known:
                self._tracker.remove_object(oid)
                known.discard(oid)
        with self._cond:
            self.stats.tracker_objects = len(known)

    def _give_up(self, loser: GoalState, ids: Sequence[int], winner: GoalState) -> None:
        """``loser`` loses ``ids`` to ``winner``; with no object left it ends ``taken_over``."""
        lost = set(ids)
        loser.prompts = [p for p in loser.prompts if int(p.object_id) not in lost]
        for oid in lost:
            loser.unseen.pop(oid, None)
        loser.taken_over.extend(sorted(lost))
        self._log.info(f"track: object(s) {sorted(lost)} of goal #{loser.seq} re-prompted by the newer "
                       f"goal #{winner.seq}, which now owns them")
        if not loser.prompts:
            self.end_goal(loser, "taken_over")

    def _take_over(self, goal: GoalState) -> None:
        """Resolve who owns the ids a starting ``goal`` prompts (caller holds the lock).

        The latest prompt wins: goal order is reservation order (``seq``). Older goals holding one
        of the ids lose it to ``goal``; an id a newer goal already tracks stays there and ``goal``
        loses it. Called for the starting goals in ``seq`` order, so of several goals arriving
        within one frame the newest ends up owning the id. A goal left with no object ends with
        reason ``taken_over``.
        """
        for other in sorted(self._goals, key=lambda g: g.seq):
            if other is goal or other.end_reason is not None or goal.end_reason is not None:
                continue
            shared = set(goal.object_ids) & set(other.object_ids)
            if not shared:
                continue
            if other.seq < goal.seq:
                self._give_up(other, shared, goal)
            elif other.added:
                self._give_up(goal, shared, other)

    def _track(self) -> None:
        frame = self.slot.take()
        if self._tracker is None:  # image-only weights: no goal was accepted
            return
        # Removals before new goals: an id freed by an ended goal and reused by a new one is
        # removed before it is added again.
        self._drop_removed()
        with self._cond:
            goals = [g for g in self._goals if g.claimed and g.end_reason is None]
        pipeline = self.pipeline
        if frame is None or not (goals or (pipeline is not None and pipeline.wants_frames())):
            return
        from anima_sam2_ros.engine.validation import validate_prompt

        hw = frame.image.shape[:2]
        prompts: List[Any] = []
        new_goals = []
        for goal in goals:
            if goal.added:
                continue
            try:
                for p in goal.prompts:
                    checked = validate_prompt(p, hw)
                    if checked.mask is not None and (checked.points is not None or checked.box is not None):
                        raise InvalidInputError(f"prompt (object {p.object_id}): tracking takes either a "
                                                f"mask or points/box, not both")
            except InvalidInputError as exc:
                self.end_goal(goal, f"invalid prompt: {exc}")
                continue
            new_goals.append(goal)
        # A new goal prompting an id that another goal tracks takes it over (re-prompt); in
        # reservation order, so the latest prompt for an id wins.
        with self._cond:
            for goal in sorted(new_goals, key=lambda g: g.seq):
                if goal.end_reason is None:
                    self._take_over(goal)
        new_goals = [g for g in new_goals if g.end_reason is None]
        for goal in new_goals:
            prompts.extend(goal.prompts)
        stamp = conversions.stamp_ns(frame.header.stamp) or None
        if pipeline is not None:
            prompts.extend(pipeline.prompts_for(stamp, hw))
        goals = [g for g in goals if g.end_reason is None]
        if not goals and not (pipeline is not None and (pipeline.owned_ids() or prompts)):
            return
        t0, t0_wall = time.monotonic(), time.time()
        try:
            results = self._tracker.step(frame.image, prompts, encoding=frame.encoding)
        except InvalidInputError as exc:
            self._log.warning(f"frame skipped: {exc}")
            for goal in new_goals:
                self.end_goal(goal, f"invalid input: {exc}")
            return
        except Exception as exc:  # noqa: BLE001 - OOM etc.: report to the goals, start clean
            text = self._report_error("tracking", exc)
            for goal in goals:
                self.end_goal(goal, f"inference error: {text}")
            self._tracker.reset()
            if pipeline is not None:
                pipeline.reset()
            with self._cond:
                self.stats.tracker_objects = 0
            return
        if pipeline is not None:
            pipeline.on_results(stamp, results)
        done, done_wall = time.monotonic(), time.time()
        infer_ms = (done - t0) * 1000.0
        latency_ms = (done - frame.received) * 1000.0
        header = conversions.header_copy(frame.header)
        by_id = {int(r.object_id): r for r in results}
        cfg = self.config
        base = {oid: conversions.object_mask_msg(r, header, cfg.mask_in_results, cfg.min_score)
                for oid, r in by_id.items()}
        frame_index = max(int(self._tracker.frame_index) - 1, 0)
        for goal in new_goals:
            goal.added = True
        with self._cond:
            self.stats.tracker_objects = len(by_id)
        self._feedback(goals, by_id, base, header, frame, frame_index, latency_ms, (t0_wall, done_wall))
        with self._cond:
            self.stats.frames_tracked += 1
            self.stats.last_latency_ms = latency_ms
            self.stats.last_inference_ms = infer_ms
            self.stats.track_times.append(done)
        if self._publish is not None:
            try:
                self._publish(frame, results, [base[int(r.object_id)] for r in results], "track")
            except Exception as exc:  # noqa: BLE001
                self._report_error("publishing tracking results", exc)

    def _feedback(self, goals: List[GoalState], by_id: Dict[int, Any], base: Dict[int, Any], header: Any,
                  frame: Frame, frame_index: int, latency_ms: float, step_wall: Tuple[float, float]) -> None:
        from anima_sam2_msgs.action import Track

        for goal in goals:
            if goal.end_reason is not None:
                continue
            objects = []
            for oid in goal.object_ids:
                result = by_id.get(oid)
                if result is None:
                    continue
                if goal.min_score > self.config.min_score:
                    msg = conversions.object_mask_msg(result, header, self.config.mask_in_results,
                                                      goal.min_score)
                else:
                    msg = base[oid]
                objects.append(msg)
                goal.unseen[oid] = 0 if msg.visible else goal.unseen.get(oid, 0) + 1
            feedback = Track.Feedback()
            feedback.masks = conversions.mask_array_msg(objects, header)
            feedback.frame_index = int(frame_index)
            feedback.latency_ms = float(latency_ms)
            # Latency trace; "published" is set when the goal's thread hands it to the middleware.
            feedback.received = conversions.stamp(frame.received_wall)
            feedback.step_start = conversions.stamp(step_wall[0])
            feedback.step_end = conversions.stamp(step_wall[1])
            goal.frames_processed += 1
            goal.last_frame_at = frame.received
            goal.feedback.append(feedback)
            if goal.max_frames and goal.frames_processed >= goal.max_frames:
                self.end_goal(goal, "max_frames", succeeded=True)
            elif goal.max_lost_frames and goal.unseen and all(
                    n >= goal.max_lost_frames for n in goal.unseen.values()):
                self.end_goal(goal, "all_lost", succeeded=True)
            else:
                goal.wake.set()

    # ------------------------------------------------------------------ diagnostics
    def snapshot(self) -> Dict[str, Any]:
        """Counters for /diagnostics."""
        with self._cond:
            times = list(self.stats.track_times)
            fps = 0.0
            if len(times) >= 2 and times[-1] > times[0]:
                fps = (len(times) - 1) / (times[-1] - times[0])
            if times and time.monotonic() - times[-1] > 2.0:
                fps = 0.0
            return {
                "frames_received": self.slot.received,
                "frames_dropped": self.slot.dropped,
                "frames_tracked": self.stats.frames_tracked,
                "segment_calls": self.stats.segment_calls,
                "segment_queued": len(self._jobs),
                "segment_busy": self.stats.segment_busy,
                "segment_timeouts": self.stats.segment_timeouts,
                "errors": self.stats.errors,
                "last_error": self.stats.last_error,
                "latency_ms": self.stats.last_latency_ms,
                "inference_ms": self.stats.last_inference_ms,
                "fps": fps,
                "goals": len(self._goals),
                "objects": len({oid for g in self._goals for oid in g.object_ids}),
                "tracker_objects": self.stats.tracker_objects,
                "last_frame_age": (time.monotonic() - self.slot.last_put) if self.slot.last_put else -1.0,
                "worker_alive": self._thread.is_alive(),
            }

"""No callback can kill the node: an exception-safe executor and callback wrapper.

An exception escaping any callback (ours, or one inside rclpy's own parameter / lifecycle / action
services, e.g. ``Parameter.from_parameter_msg`` on a ``ParameterValue`` of unknown type) is
re-raised by ``MultiThreadedExecutor.spin()`` on Humble, Jazzy and Kilted (``future.result()`` in
``_spin_once_impl``), which ends the process. ``SafeExecutor.spin`` catches it, logs it with its
traceback the first time (then once per ``REPEAT_LOG_PERIOD`` with a count) and keeps spinning;
the failed request goes unanswered but every later one is served. ``guarded`` wraps our own
callbacks so they answer a default instead of raising at all.
"""

from __future__ import annotations

import functools
import inspect
import re
import threading
import time
import traceback
from typing import Any, Callable, Dict, Optional, Tuple

from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor

# Seconds between two log lines about the same kind of exception (after the first, full one).
REPEAT_LOG_PERIOD = 10.0


class ErrorLog:
    """Logs an exception with its traceback the first time per key, then counts, throttled.

    ``context_ok`` (e.g. ``node.context.ok``) tells a shutdown apart: once Ctrl-C has shut the
    context down, a callback still running on an executor thread fails on its dead publishers
    ("publisher's context is invalid"); that is the shutdown, not a fault, and is only counted.
    """

    def __init__(self, logger: Any, context_ok: Optional[Callable[[], bool]] = None) -> None:
        self._log = logger
        self._context_ok = context_ok
        self.during_shutdown = 0
        self._lock = threading.Lock()
        self._seen: Dict[Tuple[str, str], Tuple[int, float]] = {}
        self.total = 0

    def report(self, what: str, exc: BaseException) -> None:
        """Log ``exc`` raised in ``what`` (never raises)."""
        if self._shutting_down():
            with self._lock:
                self.during_shutdown += 1
            return
        key = (what, type(exc).__name__)
        now = time.monotonic()
        with self._lock:
            self.total += 1
            count, last = self._seen.get(key, (0, -1e9))
            count += 1
            first = count == 1
            due = first or now - last >= REPEAT_LOG_PERIOD
            self._seen[key] = (count, now if due else last)
        if not due:
            return
        try:
            text = f"{type(exc).__name__}: {exc}"
            if first:
                tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
                self._log.error(f"exception in {what} (the node keeps running): {text}\n{tb}")
            else:
                self._log.error(f"exception in {what} (the node keeps running; {count} so far): {text}")
        except Exception:  # noqa: BLE001 - logging must not raise either
            pass


    def _shutting_down(self) -> bool:
        if self._context_ok is None:
            return False
        try:
            return not self._context_ok()
        except Exception:  # noqa: BLE001 - a torn-down context counts as shut down
            return True


class RefusalLog:
    """Warnings about refused requests, throttled per kind of reason.

    The first refusal of each kind (its text with the numbers taken out) is logged at once, so
    every distinct reason shows up; repeats of a kind are logged at most once per ``period``
    seconds, with the running count. A flood of one refusal costs one line per period.
    """

    _KINDS = 256  # distinct kinds remembered (then forgotten all at once)

    def __init__(self, logger: Any, what: str, period: float) -> None:
        self._log = logger
        self._what = what
        self._period = float(period)
        self._lock = threading.Lock()
        self._last: Dict[str, float] = {}
        self.count = 0

    def refused(self, reason: str) -> None:
        """Count one refusal; log it if it is the first of its kind or the period has passed."""
        kind = re.sub(r"\d+(\.\d+)?", "#", reason)[:160]
        now = time.monotonic()
        with self._lock:
            self.count += 1
            count = self.count
            last = self._last.get(kind)
            due = last is None or now - last >= self._period
            if due:
                if len(self._last) >= self._KINDS:
                    self._last.clear()
                self._last[kind] = now
        if due:
            self._log.warning(f"{self._what} ({count} so far): {reason}")


class SafeExecutor(MultiThreadedExecutor):
    """A ``MultiThreadedExecutor`` whose ``spin()`` survives exceptions raised in callbacks."""

    def __init__(self, errors: ErrorLog, num_threads: int, **kwargs: Any) -> None:
        super().__init__(num_threads=num_threads, **kwargs)
        self.errors = errors

    def spin(self) -> None:
        """Execute callbacks until shutdown; an exception from a callback is logged, not raised."""
        while self.context.ok() and not getattr(self, "_is_shutdown", False):
            try:
                self.spin_once()
            except (KeyboardInterrupt, ExternalShutdownException):
                raise
            except Exception as exc:  # noqa: BLE001 - from a callback (rclpy's own services too)
                self.errors.report("a callback (executor)", exc)


def guarded(errors: ErrorLog, what: str, default: Any = None) -> Callable[[Callable], Callable]:
    """Decorator: the callback logs through ``errors`` and returns ``default`` instead of raising.

    Works for plain and ``async`` callbacks. ``default`` may be a callable taking the callback's
    arguments (e.g. to return the service response object it was given).
    """

    def wrap(fn: Callable) -> Callable:
        def fallback(args: tuple, kwargs: dict) -> Any:
            return default(*args, **kwargs) if callable(default) else default

        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                try:
                    return await fn(*args, **kwargs)
                except Exception as exc:  # noqa: BLE001
                    errors.report(what, exc)
                    return fallback(args, kwargs)
            return run_async

        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001
                errors.report(what, exc)
                return fallback(args, kwargs)
        return run

    return wrap

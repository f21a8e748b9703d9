"""Clean process shutdown for the package's ROS 2 executables."""

from __future__ import annotations

import contextlib
import signal


def ignore_further_sigint() -> None:
    """Ignore SIGINT from here on (call once shutdown has begun).

    Ctrl-C in a terminal reaches the whole process group and ``ros2 launch`` forwards one more
    SIGINT to each child: a second one must not interrupt the release half-way with a
    KeyboardInterrupt traceback. SIGTERM (launch's escalation) still ends the process.
    """
    with contextlib.suppress(ValueError):  # not the main thread (a test calling main())
        signal.signal(signal.SIGINT, signal.SIG_IGN)

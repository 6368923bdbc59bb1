"""The slow half of closing a step, done behind it: registering the next step's plan on
the parameter server and writing the finished step's metrics to Redis.

A sync step closes in the thread of its last Complete. Handing out the next step's tasks
is all that must happen before that worker gets its reply; a Plan round trip and three
Redis writes would otherwise sit on the critical path of every step. One thread takes the
work in submission order (so a job's plans reach the server in step order and its points
reach Redis in step order); the queue is bounded, so a slow Redis slows steps down
instead of growing memory; :meth:`drain` waits until everything submitted is done (the
scheduler drains before it writes a job's end, so the last points come first).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any, Protocol

MAX_PENDING = 1024


class Publisher(Protocol):
    def submit(self, work: Callable[[], None]) -> None: ...
    def drain(self, timeout: float = 60.0) -> bool: ...


class StepPublisher:
    def __init__(self, log: Any = None, max_pending: int = MAX_PENDING) -> None:
        self.log = log
        self._work: queue.Queue[Callable[[], None] | None] = queue.Queue(max_pending)
        self._thread = threading.Thread(target=self._run, name="step-publisher", daemon=True)
        self._thread.start()

    def submit(self, work: Callable[[], None]) -> None:
        """Run ``work`` after everything submitted before it (blocks while the queue is
        full). ``work`` handles its own errors; one that escapes is logged."""
        self._work.put(work, timeout=60)

    def drain(self, timeout: float = 60.0) -> bool:
        """Wait until all work submitted so far has run; False if it did not in time."""
        if threading.current_thread() is self._thread:
            return True  # work that drains would wait for itself
        done = threading.Event()
        self._work.put(done.set, timeout=timeout)
        return done.wait(timeout)

    def close(self) -> None:
        self._work.put(None, timeout=60)
        self._thread.join(timeout=60)

    def _run(self) -> None:
        while (work := self._work.get()) is not None:
            try:
                work()
            except Exception:
                if self.log:
                    self.log.exception("step publishing failed")

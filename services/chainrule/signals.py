"""Block until the process is asked to stop (SIGTERM or SIGINT)."""

from __future__ import annotations

import signal
import threading


def shutdown_event() -> threading.Event:
    """An event set on SIGTERM or SIGINT (call from the main thread)."""
    event = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: event.set())
    return event


def wait_for_shutdown() -> None:
    event = shutdown_event()
    while not event.wait(0.5):
        pass

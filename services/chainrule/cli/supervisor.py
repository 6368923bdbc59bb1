"""``chainrule up`` watches its children: one that exits is started again, with backoff.

A child that exits (killed, crashed, out of memory) is restarted after a delay that
doubles with each exit in a row (0.5 s, 1 s, 2 s, ... up to 10 s) and is reset once it has
run for a minute; each exit and restart is reported with the child's exit code and its
log file. A child that exits :data:`MAX_EXITS` times within :data:`WINDOW_S` seconds (a
port another program holds, a token it is refused) is given up on: the supervisor
reports it, and ``up`` stops everything and exits non-zero naming it.

A restarted worker is a new process, so a new incarnation: the scheduler requeues what
the old one held. A restarted parameter server is resynchronised from its checkpoints
by the scheduler, a restarted scheduler resumes its jobs from Redis.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from chainrule.cli.stack import LocalStack

MAX_EXITS = 5
WINDOW_S = 60.0
FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 10.0
STABLE_S = 60.0  # a child that ran this long starts its backoff again from the first


class CrashLoopError(RuntimeError):
    """A child kept exiting: restarting it again would not help."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


@dataclass
class _Child:
    exits: deque[float] = field(default_factory=deque)  # monotonic times of recent exits
    started: float = field(default_factory=time.monotonic)
    restart_at: float | None = None  # exited: started again at this time
    backoff: float = FIRST_BACKOFF_S


class Supervisor:
    """Checks ``stack``'s children (:meth:`check`, or every ``interval`` on a thread)."""

    def __init__(self, stack: LocalStack, report: Callable[[str], None]) -> None:
        self.stack, self.report = stack, report
        self._children: dict[str, _Child] = {}
        self.gave_up: CrashLoopError | None = None

    def check(self, now: float | None = None) -> None:
        """Restart the children that exited and whose backoff has passed; CrashLoopError
        for one that exited :data:`MAX_EXITS` times within :data:`WINDOW_S`."""
        now = time.monotonic() if now is None else now
        for name, proc in list(self.stack.processes.items()):
            child = self._children.setdefault(name, _Child(started=now))
            code = proc.poll()
            if code is None:
                if now - child.started >= STABLE_S:
                    child.backoff = FIRST_BACKOFF_S
                continue
            if child.restart_at is None:  # a new exit
                self._exited(name, child, code, now)
            if now >= child.restart_at:  # type: ignore[operator]
                self.stack.respawn(name)
                child.started, child.restart_at = now, None
                child.backoff = min(child.backoff * 2, MAX_BACKOFF_S)
                self.report(f"{name} restarted (pid {self.stack.processes[name].pid})")

    def _exited(self, name: str, child: _Child, code: int, now: float) -> None:
        child.exits.append(now)
        while child.exits and now - child.exits[0] > WINDOW_S:
            child.exits.popleft()
        log = self.stack.log_path(name)
        if len(child.exits) >= MAX_EXITS:
            raise CrashLoopError(
                name,
                f"{name} exited {len(child.exits)} times within {WINDOW_S:g} s (last exit "
                f"code {code}); not restarting it. Its log: {log}",
            )
        child.restart_at = now + child.backoff
        self.report(
            f"{name} exited with code {code}; restarting it in {child.backoff:g} s (its log: {log})"
        )

    def run(
        self, halt: threading.Event, give_up: Callable[[], None], interval: float = 0.25
    ) -> None:
        """Check until ``halt`` is set; on giving up, keep the error in :attr:`gave_up`,
        report it and call ``give_up``."""
        while not halt.wait(interval):
            try:
                self.check()
            except CrashLoopError as e:
                self.gave_up = e
                self.report(str(e))
                give_up()
                return

    def start(self, halt: threading.Event, give_up: Callable[[], None]) -> threading.Thread:
        """:meth:`run` on a thread of its own (set ``halt`` and join it before the stack
        stops, or it would restart what the stack stops)."""
        thread = threading.Thread(
            target=self.run, args=(halt, give_up), name="supervisor", daemon=True
        )
        thread.start()
        return thread

"""Outages of a job's parameter server, waited out within a budget.

While a parameter server does not answer (restarting, partitioned, paused), its job's
workers report UNAVAILABLE and the scheduler's own calls fail alike. That is waited
out: the tasks are handed out again, the job's phase says what it waits for (which
server, as configured, and for how long: ``waiting for parameter server
paramserver:50051 — unavailable for 35 s``, rewritten every :data:`REFRESH_S`), the
workers it had when the outage began still count as its workers (state.py), and when
the server answers again the job resynchronises and trains on. An outage that lasts
past ``CHAINRULE_OUTAGE_BUDGET_S`` ends the job FAILED, with the reason: a job must
not wait for ever on a server that will not come back.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

DEFAULT_BUDGET_S = 300.0
"""How long a job waits for its parameter server by default: 5 minutes."""
WAITING_PHASE = "waiting_for_paramserver"
RETRY_FIRST_S = 0.5
"""The pause before the scheduler first tries the server again itself (then doubling)."""
RETRY_MAX_S = 5.0
REFRESH_S = 5.0
"""How often the waiting message (its seconds) is rewritten while an outage lasts."""


@dataclass
class Outage:
    """How long a job has waited for its parameter server; one per job."""

    budget_s: float = DEFAULT_BUDGET_S
    since: float | None = None  # monotonic; None while the server answers
    error: str = ""  # the latest
    target: str = ""  # the server (shard) that did not answer, as configured; "" unknown
    retries: int = 0  # the scheduler's own tries since it began
    retry_pending: bool = False  # one of them is scheduled
    written: float | None = None  # when the waiting message was last written (monotonic)
    # held while the job's phase is written for this outage (waiting, refreshed, training
    # again), so that a refresh never lands after the message saying the server is back;
    # taken before the scheduler's lock, never while holding it
    phase_lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def seen(self, error: str, now: float, target: str = "", unanswered_s: float = 0.0) -> bool:
        """The server did not answer (``error``; ``target``: which one, if known) for
        ``unanswered_s`` already (a worker's client retried that long); True when this
        begins an outage, which then began that long ago."""
        began = self.since is None
        if began:
            since = now - max(0.0, min(unanswered_s, self.budget_s))
            self.since, self.retries, self.written, self.target = since, 0, None, ""
        self.error = error
        self.target = target or self.target
        return began

    def over_budget(self, now: float) -> bool:
        return self.since is not None and now - self.since > self.budget_s

    def ended(self, now: float) -> float | None:
        """The server answered: how long the outage lasted (None if there was none)."""
        if self.since is None:
            return None
        lasted, self.since, self.error, self.target = now - self.since, None, "", ""
        self.written = None
        return lasted

    def next_retry_s(self) -> float:
        """The pause before the scheduler's next try of its own (exponential backoff)."""
        self.retries += 1
        return float(min(RETRY_FIRST_S * 2 ** (self.retries - 1), RETRY_MAX_S))

    def refresh_due(self, now: float) -> bool:
        """Whether the waiting message is :data:`REFRESH_S` old (or not written yet)."""
        if self.since is None:
            return False
        return self.written is None or now - self.written >= REFRESH_S

    def waiting_message(self, now: float) -> str:
        """What the job's message says while the outage lasts (the raw error is logged,
        and is in :meth:`reason`)."""
        lasted = 0.0 if self.since is None else max(0.0, now - self.since)
        server = f"parameter server {self.target}" if self.target else "the parameter server"
        return f"waiting for {server} — unavailable for {lasted:.0f} s"

    def reason(self, now: float) -> str:
        lasted = 0.0 if self.since is None else now - self.since
        return (
            f"the parameter server did not answer for {lasted:.0f} s, past the outage "
            f"budget of {self.budget_s:g} s (CHAINRULE_OUTAGE_BUDGET_S): {self.error}"
        )

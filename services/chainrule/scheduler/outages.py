"""Outages of a job's parameter server, waited out within a budget.

While a parameter server does not answer (restarting, partitioned, paused), its job's
workers report UNAVAILABLE and the scheduler's own calls fail alike. That is waited
out: the tasks are handed out again, the job's phase says what it waits for, and when
the server answers again the job resynchronises and trains on. An outage that lasts
past ``CHAINRULE_OUTAGE_BUDGET_S`` ends the job FAILED, with the reason: a job must
not wait for ever on a server that will not come back.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_BUDGET_S = 300.0
"""How long a job waits for its parameter server by default: 5 minutes."""
WAITING_PHASE = "waiting_for_paramserver"
RETRY_FIRST_S = 0.5
"""The pause before the scheduler first tries the server again itself (then doubling)."""
RETRY_MAX_S = 5.0


@dataclass
class Outage:
    """How long a job has waited for its parameter server; one per job."""

    budget_s: float = DEFAULT_BUDGET_S
    since: float | None = None  # monotonic; None while the server answers
    error: str = ""  # the latest
    retries: int = 0  # the scheduler's own tries since it began
    retry_pending: bool = False  # one of them is scheduled

    def seen(self, error: str, now: float) -> bool:
        """The server did not answer (``error``); True when this begins an outage."""
        began = self.since is None
        if began:
            self.since, self.retries = now, 0
        self.error = error
        return began

    def over_budget(self, now: float) -> bool:
        return self.since is not None and now - self.since > self.budget_s

    def ended(self, now: float) -> float | None:
        """The server answered: how long the outage lasted (None if there was none)."""
        if self.since is None:
            return None
        lasted, self.since, self.error = now - self.since, None, ""
        return lasted

    def next_retry_s(self) -> float:
        """The pause before the scheduler's next try of its own (exponential backoff)."""
        self.retries += 1
        return float(min(RETRY_FIRST_S * 2 ** (self.retries - 1), RETRY_MAX_S))

    def waiting_message(self) -> str:
        return f"waiting for the parameter server, which does not answer: {self.error}"

    def reason(self, now: float) -> str:
        lasted = 0.0 if self.since is None else now - self.since
        return (
            f"the parameter server did not answer for {lasted:.0f} s, past the outage "
            f"budget of {self.budget_s:g} s (CHAINRULE_OUTAGE_BUDGET_S): {self.error}"
        )

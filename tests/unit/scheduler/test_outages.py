"""The outage tracker's rules (scheduler/outages.py): when an outage begins and ends,
when it is past its budget, and the backoff of the scheduler's own retries."""

from __future__ import annotations

from chainrule.scheduler.outages import RETRY_FIRST_S, RETRY_MAX_S, Outage


def test_an_outage_begins_once_and_ends_with_how_long_it_lasted() -> None:
    outage = Outage(budget_s=60)
    assert outage.ended(5.0) is None  # nothing to end
    assert outage.seen("UNAVAILABLE: connect failed", 10.0) is True
    assert outage.seen("UNAVAILABLE: still", 12.0) is False  # the same outage
    assert outage.error == "UNAVAILABLE: still"
    assert "does not answer: UNAVAILABLE: still" in outage.waiting_message()
    assert outage.ended(40.0) == 30.0
    assert outage.since is None and outage.error == ""
    assert outage.seen("again", 50.0) is True  # a new one


def test_the_budget_is_counted_from_the_first_error_of_the_outage() -> None:
    outage = Outage(budget_s=60)
    outage.seen("UNAVAILABLE", 100.0)
    outage.seen("UNAVAILABLE", 150.0)
    assert not outage.over_budget(160.0)
    assert outage.over_budget(160.5)
    reason = outage.reason(161.0)
    assert reason.startswith("the parameter server did not answer for 61 s, past the outage")
    assert "budget of 60 s (CHAINRULE_OUTAGE_BUDGET_S): UNAVAILABLE" in reason
    outage.ended(170.0)
    assert not outage.over_budget(1e9)  # no outage, nothing over budget


def test_the_schedulers_own_retries_back_off_to_a_cap_and_start_over_with_an_outage() -> None:
    outage = Outage()
    outage.seen("x", 0.0)
    pauses = [outage.next_retry_s() for _ in range(6)]
    assert pauses == [RETRY_FIRST_S * 2**i for i in range(4)] + [RETRY_MAX_S] * 2
    outage.ended(1.0)
    outage.seen("y", 2.0)
    assert outage.next_retry_s() == RETRY_FIRST_S

"""The line of pending jobs as the gateway shows it: its order and the estimated starts
(pure logic, gateway/queueing.py)."""

from __future__ import annotations

import pytest

from chainrule.gateway.queueing import Holding, Waiting, estimated_starts, line_key

pytestmark = pytest.mark.timeout(60)


def sync(slots: int, phase: str = "queued") -> Waiting:
    return Waiting("sync", slots, phase)


def test_the_line_is_by_priority_then_arrival() -> None:
    jobs = [("a", "low", 1.0), ("b", "normal", 3.0), ("c", "high", 4.0), ("d", "normal", 2.0)]
    line = sorted(jobs, key=lambda j: line_key(j[1], j[2], j[0]))
    assert [j[0] for j in line] == ["c", "d", "b", "a"]


def test_a_gang_that_fits_in_the_free_slots_starts_now() -> None:
    assert estimated_starts([sync(1)], [Holding(1, 30.0)], live=2) == [0.0]


def test_a_gang_starts_when_enough_running_gangs_have_ended() -> None:
    running = [Holding(1, 50.0), Holding(1, 20.0), Holding(1, 90.0)]
    # 4 workers, 3 held: 1 free; 2 slots needed -> the first end (20 s) frees the second
    assert estimated_starts([sync(2)], running, live=4) == [20.0]
    # 3 slots needed: two ends (20 s, 50 s)
    assert estimated_starts([sync(3)], running, live=4) == [50.0]


def test_the_jobs_ahead_take_their_slots_first() -> None:
    running = [Holding(2, 10.0), Holding(2, 40.0)]
    # 4 workers, all held. The head takes the 2 freed at 10 s; the next needs the 2 freed
    # at 40 s; the third has nothing left to wait for (the ones ahead hold the slots)
    starts = estimated_starts([sync(2), sync(2), sync(1)], running, live=4)
    assert starts == [10.0, 40.0, None]


def test_no_gang_starts_before_the_one_ahead_of_it() -> None:
    running = [Holding(1, 10.0), Holding(2, 60.0)]
    # 3 workers, all held. The head (3 slots) waits for both (60 s); the one behind it
    # would fit in the slot freed at 10 s, but there is no backfill: it waits behind it
    starts = estimated_starts([sync(3), sync(1)], running, live=4)
    assert starts == [60.0, 60.0]


def test_a_running_gang_without_an_eta_frees_nothing() -> None:
    assert estimated_starts([sync(2)], [Holding(2, None)], live=2) == [None]
    assert estimated_starts([sync(2)], [Holding(1, None), Holding(1, 5.0)], live=2) == [None]
    assert estimated_starts([sync(1)], [Holding(1, None), Holding(1, 5.0)], live=2) == [5.0]


def test_a_gang_without_an_estimate_leaves_the_ones_behind_it_without_one() -> None:
    starts = estimated_starts([sync(2), sync(1)], [Holding(2, None)], live=3)
    assert starts == [None, None]


def test_waiting_for_workers_has_no_estimate_and_holds_nothing_up() -> None:
    line = [sync(2, "waiting_for_workers"), sync(5), sync(1)]
    starts = estimated_starts(line, [Holding(1, 8.0)], live=3)
    assert starts == [None, None, 0.0]  # 5 slots > 3 live: it waits for workers too


def test_async_jobs_hold_no_slots_and_start_when_the_workers_are_live() -> None:
    line = [Waiting("async", 2, "queued"), Waiting("ssp", 4, "queued"), sync(1)]
    assert estimated_starts(line, [Holding(1, 8.0)], live=2) == [0.0, None, 0.0]


def test_a_starting_gang_holds_its_slots() -> None:
    line = [sync(2, "preparing"), sync(2)]
    assert estimated_starts(line, [Holding(2, 30.0)], live=4) == [0.0, 30.0]


def test_an_overdue_eta_means_now() -> None:
    assert estimated_starts([sync(1)], [Holding(1, -3.0)], live=1) == [0.0]


def test_no_workers_no_estimate() -> None:
    assert estimated_starts([sync(1), Waiting("async", 1, "queued")], [], live=0) == [None, None]

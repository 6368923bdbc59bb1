"""The pure series arithmetic behind the metric routes: one point per step, paging by
step, min/max downsampling, even thinning, the ETA."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chainrule.gateway.series import (
    SeriesPoint,
    downsample_min_max,
    eta_seconds,
    names_present,
    one_per_step,
    page_from_step,
    series,
    thin_evenly,
)
from chainrule.store.metrics import MetricPoint

pytestmark = pytest.mark.timeout(60)


def point(step: int, time: float = 0.0, loss: float = 1.0, **extra: float) -> MetricPoint:
    p = MetricPoint(step=step, time=time, loss=loss, lr=0.1, samples_per_s=1.0, active_workers=1)
    p.update(extra)  # type: ignore[typeddict-item]
    return p


def test_one_point_per_step_the_last_written_in_step_order() -> None:
    written = [point(1, loss=1), point(2, loss=1), point(3, loss=1), point(2, loss=2), point(4)]
    kept = one_per_step(written)
    assert [(p["step"], p["loss"]) for p in kept] == [(1, 1), (2, 2), (3, 1), (4, 1.0)]


def test_names_present_in_a_fixed_order() -> None:
    points = [point(1), point(2, eval_r2=0.5, eval_loss=0.2)]
    assert names_present(points) == [
        "loss", "lr", "samples_per_s", "active_workers", "eval_loss", "eval_r2"]  # fmt: skip
    assert names_present([]) == []


@pytest.mark.parametrize(
    ("start", "limit", "steps", "next_start"),
    [(0, 3, [2, 4, 6], 8), (5, 2, [6, 8], 10), (10, 5, [10], None), (11, 5, [], None),
     (0, 100, [2, 4, 6, 8, 10], None)],
)  # fmt: skip
def test_a_page_from_a_step(
    start: int, limit: int, steps: list[int], next_start: int | None
) -> None:
    points = [point(s) for s in (2, 4, 6, 8, 10)]
    page, following = page_from_step(points, start, limit)
    assert [p["step"] for p in page] == steps and following == next_start


@given(st.lists(st.integers(0, 50), unique=True), st.integers(1, 7), st.integers(0, 55))
def test_paging_visits_every_point_once(steps: list[int], limit: int, start: int) -> None:
    points = [point(s) for s in sorted(steps)]
    seen: list[int] = []
    cursor: int | None = start
    while cursor is not None:
        page, cursor = page_from_step(points, cursor, limit)
        seen += [p["step"] for p in page]
    assert seen == [s for s in sorted(steps) if s >= start]


def test_a_series_of_one_metric_with_non_finite_values_as_none() -> None:
    points = [point(1, loss=0.5), point(2, loss=math.nan), point(3, loss=math.inf, eval_loss=2.0)]
    assert series(points, "loss") == [(1, 0.5), (2, None), (3, None)]
    assert series(points, "eval_loss") == [(3, 2.0)]
    assert series(points, "loss", start_step=2) == [(2, None), (3, None)]


def test_a_short_series_is_not_downsampled() -> None:
    values: list[SeriesPoint] = [(1, 1.0), (2, 3.0)]
    assert downsample_min_max(values, 2) == (values, 1)


def test_downsampling_keeps_each_buckets_extremes_in_step_order() -> None:
    values: list[SeriesPoint] = [(s, v) for s, v in enumerate([5, 1, 9, 3, 3, 3, 0, 8, 2.0])]
    kept, size = downsample_min_max(values, 6)  # 3 buckets of 3
    assert size == 3
    assert kept == [(1, 1), (2, 9), (3, 3), (6, 0), (7, 8)]  # a flat bucket keeps one


def test_a_bucket_without_finite_values_keeps_its_first_point() -> None:
    values: list[SeriesPoint] = [(0, None), (1, None), (2, 1.0), (3, None)]
    assert downsample_min_max(values, 2) == ([(2, 1.0)], 4)
    assert downsample_min_max([(0, None), (1, None), (2, None)], 2) == ([(0, None)], 3)


@given(
    st.lists(st.one_of(st.none(), st.floats(-1e6, 1e6)), min_size=1, max_size=400),
    st.integers(2, 50),
)
def test_downsampling_keeps_at_most_max_points_and_every_global_extreme(
    raw: list[float | None], max_points: int
) -> None:
    values: list[SeriesPoint] = list(enumerate(raw))
    kept, size = downsample_min_max(values, max_points)
    assert len(kept) <= max_points
    assert [s for s, _ in kept] == sorted({s for s, _ in kept})  # step order, no repeats
    assert set(kept) <= set(values)
    finite = [v for v in raw if v is not None]
    if finite:
        assert min(finite) in [v for _, v in kept] and max(finite) in [v for _, v in kept]
    assert (size == 1) == (len(values) <= max_points)


def test_downsampling_needs_room_for_a_min_and_a_max() -> None:
    with pytest.raises(ValueError, match="max_points must be >= 2"):
        downsample_min_max([(0, 1.0)], 1)


@given(st.integers(0, 300), st.integers(1, 60))
def test_thinning_is_even_and_keeps_the_ends(n: int, max_points: int) -> None:
    items = list(range(n))
    kept = thin_evenly(items, max_points)
    assert len(kept) == min(n, max_points)
    assert kept == sorted(set(kept))
    if n and max_points > 1:
        assert kept[0] == 0 and kept[-1] == n - 1
    if n > max_points > 1:
        gaps = {b - a for a, b in itertools.pairwise(kept)}
        assert max(gaps) - min(gaps) <= 1


def test_thinning_to_one_keeps_the_latest() -> None:
    assert thin_evenly([1, 2, 3], 1) == [3]


def test_eta_from_the_rate_of_recent_points() -> None:
    recent = [point(100, time=10.0), point(150, time=20.0), point(200, time=30.0)]  # 5 steps/s
    assert eta_seconds(recent, step=200, total_steps=1000) == pytest.approx(160.0)
    assert eta_seconds(recent, step=1000, total_steps=1000) == 0.0


@pytest.mark.parametrize(
    "recent",
    [[], [point(1, time=1.0)], [point(1, time=5.0), point(2, time=5.0)],
     [point(3, time=1.0), point(3, time=2.0)], [point(5, time=1.0), point(2, time=2.0)]],
)  # fmt: skip
def test_no_eta_without_a_rate(recent: list[MetricPoint]) -> None:
    assert eta_seconds(recent, step=3, total_steps=100) is None

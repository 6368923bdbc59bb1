"""What the REST API serves from a job's metric points: one point per step, pages by
step, a metric as a series, min/max downsampling for charts, even thinning, the ETA.
Pure functions of the points the store reads (store/metrics.py)."""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from typing import TypeVar

from chainrule.store.metrics import OPTIONAL_FIELDS, OPTIONAL_INT_FIELDS, MetricPoint

SERIES_NAMES = (
    "loss",
    "lr",
    "samples_per_s",
    "active_workers",
    *OPTIONAL_FIELDS,
    *OPTIONAL_INT_FIELDS,
)
"""The names a job's metric series can be read by (``GET .../metrics/{name}``)."""

ETA_WINDOW = 50
"""The recent metric points whose rate estimates the time a RUNNING job has left."""

T = TypeVar("T")
SeriesPoint = tuple[int, float | None]  # (step, value); None for a NaN or infinite value


def one_per_step(points: Sequence[MetricPoint]) -> list[MetricPoint]:
    """The points ordered by step, one per step: the last one written. A job rolled back
    to a checkpoint recomputes the steps after it, and those replace the discarded ones."""
    latest: dict[int, MetricPoint] = {}
    for point in points:
        latest[point["step"]] = point
    return [latest[step] for step in sorted(latest)]


def names_present(points: Sequence[MetricPoint]) -> list[str]:
    """The series names that at least one point has, in :data:`SERIES_NAMES` order."""
    seen = {name for point in points for name in point}
    return [name for name in SERIES_NAMES if name in seen]


def page_from_step(
    points: Sequence[MetricPoint], start_step: int, limit: int
) -> tuple[list[MetricPoint], int | None]:
    """Up to ``limit`` of ``points`` (ordered by step, one per step) with step >=
    ``start_step``, and the step the next page starts at (None when nothing is left)."""
    first = bisect.bisect_left([p["step"] for p in points], start_step)
    page = list(points[first : first + limit])
    rest = first + limit
    return page, points[rest]["step"] if rest < len(points) else None


def series(points: Sequence[MetricPoint], name: str, start_step: int = 0) -> list[SeriesPoint]:
    """(step, value) of metric ``name`` for the points that have it, from ``start_step``."""
    out: list[SeriesPoint] = []
    for point in points:
        value = point.get(name)
        if point["step"] >= start_step and isinstance(value, (int, float)):
            out.append((point["step"], float(value) if math.isfinite(value) else None))
    return out


def downsample_min_max(
    values: Sequence[SeriesPoint], max_points: int
) -> tuple[list[SeriesPoint], int]:
    """At most ``max_points`` (>= 2) of ``values`` and the bucket size used (1: all kept).

    A longer series is cut into buckets of consecutive points, as few as fit two points
    each, and each bucket keeps its lowest and its highest point, in step order, so a
    spike or a dip survives however far the chart is zoomed out. A bucket with no finite
    value keeps its first point.
    """
    if max_points < 2:
        raise ValueError(f"max_points must be >= 2; got {max_points}")
    if len(values) <= max_points:
        return list(values), 1
    size = math.ceil(len(values) / (max_points // 2))
    kept: list[SeriesPoint] = []
    for start in range(0, len(values), size):
        bucket = values[start : start + size]
        finite = [(value, i) for i, (_, value) in enumerate(bucket) if value is not None]
        if not finite:
            kept.append(bucket[0])
            continue
        lowest = min(finite, key=lambda f: f[0])[1]  # the first of equal values
        highest = max(finite, key=lambda f: f[0])[1]
        kept += [bucket[i] for i in sorted({lowest, highest})]
    return kept, size


def thin_evenly(items: Sequence[T], max_points: int) -> list[T]:
    """At most ``max_points`` of ``items``, evenly spaced, the first and last included."""
    if max_points < 1:
        raise ValueError(f"max_points must be >= 1; got {max_points}")
    n = len(items)
    if n <= max_points:
        return list(items)
    if max_points == 1:
        return [items[-1]]
    picks = sorted({round(i * (n - 1) / (max_points - 1)) for i in range(max_points)})
    return [items[i] for i in picks]


def eta_seconds(recent: Sequence[MetricPoint], step: int, total_steps: int) -> float | None:
    """Seconds until ``total_steps``, at the rate of the ``recent`` points (oldest first);
    None while that rate cannot be told (fewer than two points, or no progress)."""
    if len(recent) < 2:
        return None
    first, last = recent[0], recent[-1]
    elapsed, advanced = last["time"] - first["time"], last["step"] - first["step"]
    if elapsed <= 0 or advanced <= 0:
        return None
    return max(total_steps - step, 0) * elapsed / advanced

"""Metric points: what one training step (or evaluation) reports, and how it sits in a
Redis stream entry (every value a string; a diverged loss is stored as ``nan``)."""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from typing import NotRequired, TypedDict, TypeVar


class MetricPoint(TypedDict):
    """One point of a job's metric series. ``time`` is Unix seconds."""

    step: int
    time: float
    loss: float
    lr: float
    samples_per_s: float
    active_workers: int
    eval_loss: NotRequired[float]
    eval_accuracy: NotRequired[float]
    eval_mse: NotRequired[float]  # regression jobs
    eval_r2: NotRequired[float]
    staleness: NotRequired[float]  # versions between a gradient's θ and the θ it updated
    rejected_stale: NotRequired[int]  # ssp: gradients refused as too stale, so far
    dropped_late: NotRequired[int]  # sync quorum: gradients that came after their step closed
    reassigned: NotRequired[int]  # tasks handed to another worker (timeout or lost worker)
    restored_from: NotRequired[int]  # θ was restored from the checkpoint at this version


INT_FIELDS = ("step", "active_workers")
FLOAT_FIELDS = ("time", "loss", "lr", "samples_per_s")
OPTIONAL_FIELDS = ("eval_loss", "eval_accuracy", "eval_mse", "eval_r2", "staleness")
OPTIONAL_INT_FIELDS = ("rejected_stale", "dropped_late", "reassigned", "restored_from")
METRIC_FIELDS = (*INT_FIELDS, *FLOAT_FIELDS, *OPTIONAL_FIELDS, *OPTIONAL_INT_FIELDS)


def encode_point(point: Mapping[str, object], now: float) -> dict[str, str]:
    """Check ``point`` and turn it into stream entry fields; ``time`` defaults to ``now``.

    loss and eval_loss may be NaN or infinite (that is how divergence is recorded);
    everything else must be finite, counts and rates >= 0.
    """
    unknown = sorted(set(point) - set(METRIC_FIELDS))
    if unknown:
        raise ValueError(
            f"unknown metric field(s) {', '.join(unknown)}; expected any of: "
            f"{', '.join(METRIC_FIELDS)}"
        )
    values = {"time": now, **point}
    missing = [name for name in (*INT_FIELDS, *FLOAT_FIELDS) if values.get(name) is None]
    if missing:
        raise ValueError(f"metric point lacks {', '.join(missing)}; got fields {sorted(point)}")
    fields: dict[str, str] = {}
    for name in (*INT_FIELDS, *OPTIONAL_INT_FIELDS):
        value = values.get(name)
        if value is None and name in OPTIONAL_INT_FIELDS:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"metric {name} must be an integer >= 0; got {value!r}")
        fields[name] = str(value)
    for name in (*FLOAT_FIELDS, *OPTIONAL_FIELDS):
        value = values.get(name)
        if value is None:
            continue  # only the optional ones can get here
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ValueError(f"metric {name} must be a number; got {value!r}")
        may_diverge = name in ("loss", "eval_loss", "eval_mse", "eval_r2")
        if not may_diverge and not math.isfinite(value):
            raise ValueError(f"metric {name} must be finite; got {value!r}")
        if name in ("lr", "samples_per_s") and value < 0:
            raise ValueError(f"metric {name} must be >= 0; got {value!r}")
        if name == "eval_accuracy" and not 0 <= value <= 1:
            raise ValueError(f"metric eval_accuracy must lie in [0, 1]; got {value!r}")
        fields[name] = repr(float(value))
    return fields


def decode_point(fields: Mapping[str, str]) -> MetricPoint:
    """The inverse of :func:`encode_point`."""
    point = MetricPoint(
        step=int(fields["step"]),
        time=float(fields["time"]),
        loss=float(fields["loss"]),
        lr=float(fields["lr"]),
        samples_per_s=float(fields["samples_per_s"]),
        active_workers=int(fields["active_workers"]),
    )
    for name in OPTIONAL_FIELDS:
        if name in fields:
            point[name] = float(fields[name])  # type: ignore[literal-required]
    for name in OPTIONAL_INT_FIELDS:
        if name in fields:
            point[name] = int(fields[name])  # type: ignore[literal-required]
    return point


# -- series: what the REST API serves from a job's points -----------------------------------

SERIES_NAMES = (
    "loss",
    "lr",
    "samples_per_s",
    "active_workers",
    *OPTIONAL_FIELDS,
    *OPTIONAL_INT_FIELDS,
)
"""The names a job's metric series can be read by (``GET .../metrics/{name}``)."""

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

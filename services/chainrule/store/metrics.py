"""Metric points: what one training step (or evaluation) reports, and how it sits in a
Redis stream entry (every value a string; a diverged loss is stored as ``nan``)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import NotRequired, TypedDict


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

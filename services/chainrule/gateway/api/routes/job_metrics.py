"""A job's metric series (paged, or one metric downsampled) and its per-layer
derivative diagnostics."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status

from chainrule.gateway.api.deps import DiagnosticsStoreDep, JobDep, JobStoreDep
from chainrule.gateway.schemas import (
    DiagnosticsOut,
    DiagnosticsPointOut,
    Message,
    MetricPointOut,
    MetricSeriesOut,
    MetricsOut,
    SeriesPointOut,
    not_found,
)
from chainrule.gateway.series import (
    SERIES_NAMES,
    downsample_min_max,
    names_present,
    one_per_step,
    page_from_step,
    series,
    thin_evenly,
)

router = APIRouter(prefix="/jobs", tags=["metrics"])

MAX_POINTS = 10_000
StartStep = Annotated[int, Query(ge=0, le=2**53, description="only points with step >= this")]


def point_count(description: str, at_least: int = 1) -> Any:
    """A query parameter counting points, up to MAX_POINTS."""
    return Query(ge=at_least, le=MAX_POINTS, description=description)


@router.get("/{job_id}/metrics", responses=not_found("job"))
def get_metrics(
    job: JobDep,
    store: JobStoreDep,
    start_step: StartStep = 0,
    limit: Annotated[int, point_count("points per page")] = MAX_POINTS,
    last: Annotated[int | None, point_count("only the most recent points, this many")] = None,
) -> MetricsOut:
    """The metric names, the latest point and a page of the series, one point per step
    in step order (a step recomputed after a rollback to a checkpoint shows its latest
    point). Page on with ``start_step=next_start_step``. With ``last``, only the most
    recent points are read (from the end of the stream; ``count`` is then the number of
    points stored, recomputed steps included)."""
    thinned = store.thinned(job.id).get("metrics", 0)
    if last is not None:
        recent = store.recent_metrics(job.id, last)
        points = one_per_step(recent)
        return MetricsOut(
            job_id=job.id,
            count=store.stored_metrics(job.id),
            names=names_present(points),
            latest=MetricPointOut.from_point(recent[-1] if recent else None),
            points=[MetricPointOut.model_validate(p) for p in points],
            next_start_step=None,
            thinned=thinned,
        )
    written = store.metrics(job.id)
    points = one_per_step(written)
    page, next_start_step = page_from_step(points, start_step, limit)
    return MetricsOut(
        job_id=job.id,
        count=len(points),
        names=names_present(points),
        latest=MetricPointOut.from_point(written[-1] if written else None),
        points=[MetricPointOut.model_validate(p) for p in page],
        next_start_step=next_start_step,
        thinned=thinned,
    )


@router.get(
    "/{job_id}/metrics/{name}",
    responses={
        404: {"model": Message, "description": "no such job, or it has no metric of that name"}
    },
)
def get_metric_series(
    job: JobDep,
    name: str,
    store: JobStoreDep,
    start_step: StartStep = 0,
    # at least 2: each bucket keeps its lowest and highest point
    max_points: Annotated[int, point_count("downsample beyond this many points", 2)] = 1000,
) -> MetricSeriesOut:
    """One metric over steps. A series longer than ``max_points`` is cut into buckets of
    consecutive points and each bucket keeps its lowest and highest point, so spikes and
    dips survive (``downsampled`` true, ``bucket_size`` points per bucket)."""
    points = one_per_step(store.metrics(job.id))
    present = names_present(points)
    if name not in present:
        known = ", ".join(present) or f"none yet (it may get any of: {', '.join(SERIES_NAMES)})"
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            detail=f"job {job.id} has no metric {name!r}; it has: {known}",
        )
    values = series(points, name, start_step)
    kept, bucket_size = downsample_min_max(values, max_points)
    return MetricSeriesOut(
        job_id=job.id,
        name=name,
        count=len(values),
        downsampled=bucket_size > 1,
        bucket_size=bucket_size,
        points=[SeriesPointOut(step=step, value=value) for step, value in kept],
    )


@router.get("/{job_id}/diagnostics", responses=not_found("job"))
def get_diagnostics(
    job: JobDep,
    diagnostics: DiagnosticsStoreDep,
    start_step: StartStep = 0,
    max_points: Annotated[int, point_count("thin evenly beyond this many points")] = 500,
) -> DiagnosticsOut:
    """Per-layer gradient norm, mean |f′(z)|, saturated and dead fractions and activation
    statistics over steps: is the activation's derivative killing the gradient?"""
    recorded = [p for p in diagnostics.series(job.id) if p["step"] >= start_step]
    kept = thin_evenly(recorded, max_points)
    layers: dict[str, None] = {}
    for point in recorded:
        layers.update((entry["layer"], None) for entry in point["layers"])
    return DiagnosticsOut(
        job_id=job.id,
        layers=list(layers),
        points=[DiagnosticsPointOut.model_validate(p) for p in kept],
        downsampled=len(kept) < len(recorded),
    )

"""What the metric, diagnostics and event routes send back.

A value that went NaN or infinite (a diverged run) is sent as ``null``: JSON has no NaN.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from chainrule.store.metrics import MetricPoint

POINT_EXAMPLE: dict[str, Any] = {
    "step": 120,
    "time": 1764326400.25,
    "loss": 0.412,
    "lr": 0.5,
    "samples_per_s": 5120.0,
    "active_workers": 2,
    "eval_loss": 0.398,
    "eval_accuracy": 0.86,
}


class MetricPointOut(BaseModel):
    """One point of a job's metric series: what one step (or evaluation) reported."""

    model_config = ConfigDict(json_schema_extra={"examples": [POINT_EXAMPLE]})

    step: int
    time: float = Field(description="Unix seconds")
    loss: float | None = Field(description="training loss; null once it is NaN or infinite")
    lr: float
    samples_per_s: float
    active_workers: int
    eval_loss: float | None = None
    eval_accuracy: float | None = None
    eval_mse: float | None = Field(default=None, description="regression jobs")
    eval_r2: float | None = Field(default=None, description="regression jobs")
    staleness: float | None = Field(
        default=None, description="versions between a gradient's θ and the θ it updated"
    )
    rejected_stale: int | None = Field(default=None, description="ssp: refused as too stale")
    dropped_late: int | None = Field(default=None, description="sync quorum: late gradients")
    reassigned: int | None = Field(default=None, description="tasks given to another worker")
    restored_from: int | None = Field(
        default=None, description="θ was restored from the checkpoint at this version"
    )

    @field_validator("loss", "eval_loss", "eval_mse", "eval_r2", mode="before")
    @classmethod
    def _diverged_as_null(cls, value: float | None) -> float | None:
        return value if value is None or math.isfinite(value) else None

    @classmethod
    def from_point(cls, point: MetricPoint | None) -> MetricPointOut | None:
        return None if point is None else cls.model_validate(point)


class MetricsOut(BaseModel):
    """A page of a job's metric series: one point per step, ordered by step."""

    job_id: str
    count: int = Field(description="points in the whole series, not only on this page")
    names: list[str] = Field(
        description="the metrics the series has, each readable at .../metrics/{name}",
        examples=[["loss", "lr", "samples_per_s", "active_workers", "eval_loss"]],
    )
    latest: MetricPointOut | None = Field(description="the most recent point; null if none")
    points: list[MetricPointOut] = Field(description="points with step >= start_step")
    next_start_step: int | None = Field(
        description="start_step of the next page; null when this page reaches the end"
    )
    thinned: int = Field(
        default=0,
        description="points thinned out of the stored series to keep it within its cap "
        "(CHAINRULE_MAX_SERIES_POINTS): its first points, a recent window and every "
        "k-th point between them stay, k doubling with age; 0: none",
    )


class SeriesPointOut(BaseModel):
    step: int
    value: float | None = Field(description="null where the value was NaN or infinite")


class MetricSeriesOut(BaseModel):
    """One metric over steps, downsampled on the server when it is long."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "job_id": "3f9a2c71d04e8b15",
                    "name": "loss",
                    "count": 2000,
                    "downsampled": True,
                    "bucket_size": 4,
                    "points": [{"step": 1, "value": 0.71}, {"step": 3, "value": 0.69}],
                }
            ]
        }
    )

    job_id: str
    name: str
    count: int = Field(description="points of the series from start_step, before downsampling")
    downsampled: bool = Field(
        description="true when the series was longer than max_points: then each bucket of "
        "bucket_size consecutive points is represented by its lowest and highest point"
    )
    bucket_size: int = Field(description="points per bucket; 1 when nothing was dropped")
    points: list[SeriesPointOut]


class LayerStatsOut(BaseModel):
    """Derivative statistics of one dense layer and the activation after it, on one
    minibatch. The derivative fields are null for a softmax output."""

    layer: str = Field(examples=["dense1"])
    activation: str = Field(examples=["tanh"])
    grad_norm: float | None = Field(description="‖∂J/∂W‖ (Frobenius); null if not finite")
    mean_abs_derivative: float | None = Field(description="mean |f′(z)|")
    saturated_fraction: float | None = Field(description="share of (sample, unit) with f′ < 1e-3")
    dead_fraction: float | None = Field(description="share of units with f′ < 1e-3 on every row")
    activation_mean: float | None
    activation_std: float | None

    @field_validator(
        "grad_norm",
        "mean_abs_derivative",
        "saturated_fraction",
        "dead_fraction",
        "activation_mean",
        "activation_std",
        mode="before",
    )
    @classmethod
    def _diverged_as_null(cls, value: float | None) -> float | None:
        return None if isinstance(value, float) and not math.isfinite(value) else value


class DiagnosticsPointOut(BaseModel):
    step: int
    layers: list[LayerStatsOut]


class DiagnosticsOut(BaseModel):
    """Per-layer derivative diagnostics over steps: is the activation's derivative
    killing the gradient (small mean |f′(z)|, saturated or dead units)?"""

    job_id: str
    layers: list[str] = Field(description="layer names, input side first")
    points: list[DiagnosticsPointOut]
    downsampled: bool = Field(description="true when points were evenly thinned to max_points")


class StatusEventData(BaseModel):
    """The data of an SSE ``status`` event."""

    status: str
    phase: str
    message: str
    failure_reason: str | None
    step: int

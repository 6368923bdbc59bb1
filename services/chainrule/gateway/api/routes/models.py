"""A job's trained model: download θ as .npz, or predict with it."""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter, HTTPException, Response, status
from fastapi.exceptions import RequestValidationError

from chainrule.gateway.api.deps import JobDep, ModelSourceDep
from chainrule.gateway.models import (
    DivergedModelError,
    Model,
    ModelSource,
    ModelUnavailableError,
    RowValueError,
    model_npz,
    predict,
)
from chainrule.gateway.schemas import BAD_BODY, Message, PredictIn, PredictOut
from chainrule.store import JobRecord

router = APIRouter(prefix="/jobs", tags=["models"])

UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    404: {"model": Message, "description": "no such job, or no θ stored for it yet"},
    503: {"model": Message, "description": "checkpoints are being written; retry shortly"},
}
NPZ_DOC = (
    "an .npz: θ arrays by name (dense1.W, dense1.b, ...), `spec` (the job spec as JSON, a "
    "0-d unicode array) and, when the job has them, `feature_mean`, `feature_std` "
    "(standardization) and `classes` (class names)"
)


@router.get(
    "/{job_id}/model",
    response_class=Response,
    responses={
        200: {
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
            "description": NPZ_DOC,
        },
        **UNAVAILABLE,
    },
)
def download_model(job: JobDep, source: ModelSourceDep) -> Response:
    """θ of the job: the final model once it has ended, else the latest checkpoint (its
    version in the ``X-Model-Version`` header)."""
    model = _load(source, job)
    headers = {"Content-Disposition": f'attachment; filename="{job.name}-{job.id}.npz"'}
    if model.version is not None:
        headers["X-Model-Version"] = str(model.version)
    return Response(
        model_npz(model, job.spec), media_type="application/octet-stream", headers=headers
    )


@router.post(
    "/{job_id}/predict",
    responses={
        **UNAVAILABLE,
        **BAD_BODY,
        409: {"model": Message, "description": "θ gives NaN or infinite outputs (diverged)"},
    },
)
def predict_rows(job: JobDep, body: PredictIn, source: ModelSourceDep) -> PredictOut:
    """Predictions for raw feature rows with the job's θ (final, or the latest checkpoint
    while it runs), standardized first as the job's data was: the class index and the
    class probabilities per row for a classifier, the value for regression."""
    features = job.spec.model.layers[0]
    errors = [
        {
            "type": "row_length",
            "loc": ("body", "rows", i),
            "msg": f"row {i} has {len(row)} values; the model takes {features} (model.layers[0])",
            "input": row,
        }
        for i, row in enumerate(body.rows)
        if len(row) != features
    ]
    if errors:
        raise RequestValidationError(errors[:20])
    model = _load(source, job)
    try:
        result = predict(model, job.spec, np.asarray(body.rows, dtype=np.float64))
    except RowValueError as exc:
        loc = ("body", "rows", exc.row, exc.column)
        error = {"type": "value_error", "loc": loc, "msg": str(exc)}
        raise RequestValidationError([{**error, "input": body.rows[exc.row][exc.column]}]) from None
    except DivergedModelError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
    return PredictOut(
        job_id=job.id,
        version=model.version,
        predictions=result.predictions,
        classes=model.classes,
        probabilities=result.probabilities,
    )


def _load(source: ModelSource, job: JobRecord) -> Model:
    try:
        return source.load(job.id, job.spec)
    except ModelUnavailableError as exc:
        code = status.HTTP_503_SERVICE_UNAVAILABLE if exc.retry else status.HTTP_404_NOT_FOUND
        headers = {"Retry-After": "1"} if exc.retry else None
        raise HTTPException(code, detail=exc.message, headers=headers) from None

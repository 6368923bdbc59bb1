"""What the prediction route takes and sends back."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

MAX_ROWS = 10_000

Feature = Annotated[float, Field(allow_inf_nan=False)]


class PredictIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"rows": [[0.0, 1.0], [1.0, 1.0]]}]}
    )

    rows: list[list[Feature]] = Field(
        min_length=1,
        max_length=MAX_ROWS,
        description="raw feature rows, each of length model.layers[0], as in the dataset "
        "(the job's standardization, if any, is applied on the server)",
    )


class PredictOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "job_id": "3f9a2c71d04e8b15",
                    "version": None,
                    "predictions": [1, 0],
                    "classes": None,
                    "probabilities": [[0.03, 0.97], [0.91, 0.09]],
                }
            ]
        }
    )

    job_id: str
    version: int | None = Field(
        description="θ version of the checkpoint used for a running job; null: the final model"
    )
    predictions: list[int] | list[float] = Field(
        description="class index per row (classifiers), or the predicted value (regression)"
    )
    classes: list[str] | None = Field(
        description="class names in index order, when the dataset has them"
    )
    probabilities: list[list[float]] | None = Field(
        description="classifiers with a sigmoid or softmax output: one row of class "
        "probabilities per input row (a single sigmoid unit gives [1 - p, p])"
    )

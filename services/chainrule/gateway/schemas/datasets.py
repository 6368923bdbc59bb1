"""What the dataset routes send back."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime

from pydantic import BaseModel, Field

from chainrule.store import DatasetMeta


class DatasetOut(BaseModel):
    """An uploaded dataset, as ``POST /api/v1/datasets`` stored it."""

    id: str = Field(description='what a job spec names: {"dataset": {"id": ...}}')
    name: str
    format: str = Field(description="csv or npz")
    task: str = Field(description="classification or regression")
    rows: int
    features: int = Field(description="what model.layers[0] must be")
    feature_names: list[str]
    label: str = Field(description="the target column (y for NPZ)")
    classes: list[str] | None = Field(
        description="class names in class-index order; null for regression"
    )
    created_at: datetime
    size: int = Field(description="bytes uploaded")
    owner: str | None = Field(
        default=None,
        description="the principal that uploaded it, who (or an admin) may delete it; null: "
        "uploaded while the gateway had no tokens, it belongs to the admins",
    )

    @classmethod
    def from_meta(cls, meta: DatasetMeta) -> DatasetOut:
        return cls.model_validate(asdict(meta))


class DatasetsPublic(BaseModel):
    data: list[DatasetOut]
    count: int = Field(description="datasets stored in all, not only on this page")


class DatasetRefusal(BaseModel):
    """Why an upload was refused, and where in the file (rows as the file numbers them)."""

    detail: str
    row: int | None = None
    column: str | None = None

"""The dataset part of a job spec: a built-in set by name or an upload by id, how many
rows, the holdout share, standardization."""

from __future__ import annotations

import math
import re
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from chainrule.data.registry import INFO, DatasetInfo
from chainrule.spec.checks import FORBID, bounds, choice, error, field_error, int_between

DATASETS = INFO  # built-in datasets by name (chainrule.data.registry)
DEFAULT_SAMPLES = 1000
_UPLOAD_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # as the dataset store makes them


def _check_holdout(value: float) -> float:
    if not (math.isfinite(value) and 0 < value <= 0.9):
        raise error("out_of_range", f"holdout must lie in (0, 0.9]; got {value!r}")
    return value


def _check_dataset_name(value: str | None) -> str | None:
    return None if value is None else choice("dataset", "dataset", tuple(DATASETS))(value)


def _check_upload_id(value: str | None) -> str | None:
    if value is not None and not _UPLOAD_ID.fullmatch(value):
        raise error(
            "invalid_id",
            f"dataset id {value!r} must be 1 to 64 letters, digits, '_' or '-', "
            "as POST /api/v1/datasets returns it",
        )
    return value


UPLOADS = "uploads"  # the validation-context key of uploaded datasets' shapes


class DatasetSpec(BaseModel):
    """Which data, how much of it, the share held out for evaluation, and whether to
    standardize the features.

    ``{"name": "moons"}`` names a built-in set (:data:`DATASETS`), ``{"id": "3f9a..."}``
    an uploaded one (``POST /api/v1/datasets``); exactly one of the two. The spec alone
    cannot know an upload's shape, so whoever holds its metadata validates with
    ``JobSpec.model_validate(obj, context={"uploads": {id: DatasetInfo(...)}})``: the
    model and the workers are then checked against the upload as against a built-in set,
    an id missing from that mapping is refused, and the shape stays bound to the object
    (:attr:`info`, :meth:`split_sizes`). Validated without that context (a spec read back
    from a job record), an upload's shape is unknown and those checks are skipped.

    ``standardize`` rescales every feature to mean 0 and standard deviation 1 using the
    training rows' statistics only (:func:`chainrule.data.standardize`).
    """

    model_config = FORBID

    name: Annotated[
        str | None,
        Field(
            strict=True,
            description="a built-in dataset; give name or id",
            json_schema_extra={"enum": [*DATASETS, None]},
        ),
        AfterValidator(_check_dataset_name),
    ] = None
    id: Annotated[
        str | None,
        Field(strict=True, description="an uploaded dataset's id; give name or id"),
        AfterValidator(_check_upload_id),
    ] = None
    holdout: Annotated[
        float,
        Field(strict=True, description="share of rows held out for evaluation, in (0, 0.9]"),
        AfterValidator(_check_holdout),
    ] = 0.2
    n_samples: Annotated[
        int | None,
        Field(
            strict=True,
            description=f"rows to generate (generated sets only; default {DEFAULT_SAMPLES})",
            json_schema_extra=bounds(10, 1_000_000),
        ),
    ] = None
    standardize: Annotated[
        bool,
        Field(
            strict=True,
            description="rescale each feature to mean 0, std 1 by the training rows' statistics",
        ),
    ] = False

    _upload: DatasetInfo | None = PrivateAttr(default=None)

    @field_validator("n_samples")
    @classmethod
    def _samples_fit_dataset(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and info.data.get("id") is not None:
            raise error(
                "fixed_dataset",
                "n_samples applies to generated datasets only; an uploaded dataset has the "
                f"rows it was uploaded with, so leave n_samples out (got {value})",
            )
        dataset = DATASETS.get(info.data.get("name") or "")
        if value is None or dataset is None:
            return value
        if dataset.samples is not None:
            raise error(
                "fixed_dataset",
                f"n_samples applies to generated datasets only; {info.data['name']} has a fixed "
                f"{dataset.samples} samples, so leave n_samples out (got {value})",
            )
        return int_between("n_samples", 10, 1_000_000)(value)

    @model_validator(mode="after")
    def _name_or_upload(self, info: ValidationInfo) -> DatasetSpec:
        if self.name is None and self.id is None:
            raise error(
                "missing_dataset",
                "dataset needs a name (a built-in set: "
                f"{', '.join(DATASETS)}) or an id (an uploaded dataset); got neither",
            )
        if self.name is not None and self.id is not None:
            raise error(
                "name_and_id",
                f"dataset takes a name or an id, not both; got name {self.name!r} "
                f"and id {self.id!r}",
            )
        uploads = info.context.get(UPLOADS) if isinstance(info.context, dict) else None
        if self.id is not None and uploads is not None:
            if self.id not in uploads:
                message = (
                    f"no uploaded dataset {self.id!r}; upload one with POST /api/v1/datasets "
                    "and list them with GET /api/v1/datasets"
                )
                raise field_error("dataset", ("id",), "unknown_dataset", message, self.id)
            self._upload = uploads[self.id]
        return self

    @property
    def described(self) -> str:
        """How messages name the data: ``dataset 'xor'`` or ``uploaded dataset '3f9a...'``."""
        if self.name is not None:
            return f"dataset {self.name!r}"
        return f"uploaded dataset {self.id!r}"

    @property
    def known_info(self) -> DatasetInfo | None:
        """The shape of the data, or None for an upload whose shape was not bound."""
        return DATASETS[self.name] if self.name is not None else self._upload

    @property
    def info(self) -> DatasetInfo:
        """The shape of the data; ValueError for an upload whose shape was not bound."""
        known = self.known_info
        if known is None:
            raise ValueError(
                f"the shape of uploaded dataset {self.id!r} is not known to this spec; "
                f'validate it with context={{"{UPLOADS}": {{id: DatasetInfo}}}}, or count '
                "the rows of the prepared split"
            )
        return known

    @property
    def samples(self) -> int:
        """Rows in the whole set, before the holdout split."""
        return self.info.samples or self.n_samples or DEFAULT_SAMPLES

    def split_sizes(self, rows: int | None = None) -> tuple[int, int]:
        """(training rows, evaluation rows): at least one of each, out of ``rows`` if
        given, else out of :attr:`samples`."""
        total = self.samples if rows is None else rows
        held_out = max(1, round(total * self.holdout))
        return total - held_out, held_out

"""Upload datasets (CSV or NPZ), list them, read and delete one; check a job against one.

``POST /api/v1/datasets`` takes ``multipart/form-data``:

- ``file``: the data. ``.npz`` files (by name, or a zip's magic bytes when the name
  says nothing) are read as NPZ, everything else as CSV; the ``format`` field overrides.
- ``label``: the CSV column holding the targets (required for CSV; NPZ targets are ``y``).
- ``task``: ``classification`` (default) or ``regression``; see
  :mod:`chainrule.data.uploads` for what each accepts.
- ``name``: shown in listings; defaults to the file's name.

The file is checked completely before anything is stored; a refusal is 413 (over
``CHAINRULE_MAX_UPLOAD_BYTES``, or too many rows or features) or 422, with the message,
row and column in the body (:class:`~chainrule.gateway.schemas.DatasetRefusal`).
"""

from __future__ import annotations

import time
from pathlib import PurePath
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, HTTPException, Query, Request, Response, UploadFile
from fastapi import status as http
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from chainrule.data.csv_upload import csv_columns, parse_csv
from chainrule.data.npz_upload import parse_npz
from chainrule.data.uploads import DatasetError, DatasetTooLargeError, ParsedDataset
from chainrule.gateway.api.deps import (
    AUTH_ERRORS,
    STORAGE_FULL,
    WRITE_ACCESS,
    DatasetStoreDep,
    SettingsDep,
    WriterDep,
    check_owner,
    room_for,
)
from chainrule.gateway.schemas import (
    BAD_BODY,
    DatasetOut,
    DatasetRefusal,
    DatasetsPublic,
    FieldErrors,
    Message,
)
from chainrule.spec import UPLOADS, JobSpec
from chainrule.store import DatasetMeta, DatasetStore
from chainrule.store.datasets import new_dataset_id

router = APIRouter(prefix="/datasets", tags=["datasets"])

FORMATS = ("csv", "npz")
MAX_NAME = 128
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Message, "description": "no dataset with that id"}
}
REFUSED: dict[int | str, dict[str, Any]] = {
    413: {"model": DatasetRefusal, "description": "the file is over a size limit"},
    422: {
        "model": DatasetRefusal | FieldErrors,
        "description": "the file or a form field is not acceptable (a missing file field gets "
        "FastAPI's usual list of field errors instead)",
    },
    **BAD_BODY,
}


@router.post(
    "",
    status_code=http.HTTP_201_CREATED,
    dependencies=[*WRITE_ACCESS, room_for("an upload")],
    responses={
        **REFUSED,
        **AUTH_ERRORS,
        **STORAGE_FULL,
    },
)
def upload_dataset(
    file: Annotated[UploadFile, File(description="the CSV or NPZ file")],
    store: DatasetStoreDep,
    settings: SettingsDep,
    caller: WriterDep,
    request: Request,
    response: Response,
    label: Annotated[str | None, Form(description="CSV: the target column's name")] = None,
    task: Annotated[str, Form(description="classification or regression")] = "classification",
    name: Annotated[str | None, Form(description="defaults to the file's name")] = None,
    file_format: Annotated[
        str | None, Form(alias="format", description="csv or npz; default: by file name")
    ] = None,
) -> DatasetOut:
    """Check the file, store its arrays and metadata, and return the metadata. The
    dataset belongs to the token's principal: only it or an admin may delete it."""
    data = file.file.read(settings.max_upload_bytes + 1)
    if len(data) > settings.max_upload_bytes:
        raise DatasetTooLargeError(
            f"the file has {file.size or len(data)} bytes; the limit is "
            f"{settings.max_upload_bytes} bytes (CHAINRULE_MAX_UPLOAD_BYTES)"
        )
    kind = _format(file_format, file, data)
    shown_name = _name(name, file)
    if kind == "npz":
        if label not in (None, "y"):
            raise DatasetError(
                f"label {label!r} applies to CSV uploads; an NPZ archive's targets are its "
                "array y, so leave label out"
            )
        parsed = parse_npz(data, task=task, max_bytes=settings.max_upload_bytes)
    else:
        if not label:
            columns = ", ".join(csv_columns(data)) or "none found"
            raise DatasetError(
                "a CSV upload needs the form field label, the name of the column that holds "
                f"the targets; the file's columns are: {columns}"
            )
        parsed = parse_csv(data, label, task=task, max_bytes=settings.max_upload_bytes)
    meta = _meta(parsed, shown_name, kind, len(data), None if caller is None else caller.name)
    store.put(meta, parsed.to_bytes())
    response.headers["Location"] = str(request.url_for("get_dataset", dataset_id=meta.id))
    return DatasetOut.from_meta(meta)


MAX_OFFSET = 2**31 - 1
"""The largest ``offset`` of a datasets page (Redis counts ranks in 64 bits; no store
holds anywhere near this many)."""


@router.get("")
def list_datasets(
    store: DatasetStoreDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="datasets to skip")] = 0,
) -> DatasetsPublic:
    """Uploaded datasets, newest first."""
    metas = store.list(limit=limit, offset=offset)
    return DatasetsPublic(data=[DatasetOut.from_meta(m) for m in metas], count=store.count())


@router.get("/{dataset_id}", responses=NOT_FOUND)
def get_dataset(dataset_id: str, store: DatasetStoreDep) -> DatasetOut:
    """One dataset's metadata: rows, features, classes or regression."""
    meta = store.get(dataset_id)
    if meta is None:
        raise HTTPException(http.HTTP_404_NOT_FOUND, detail=f"no dataset {dataset_id!r}")
    return DatasetOut.from_meta(meta)


@router.delete(
    "/{dataset_id}",
    status_code=http.HTTP_204_NO_CONTENT,
    dependencies=WRITE_ACCESS,
    responses={**NOT_FOUND, **AUTH_ERRORS},
)
def delete_dataset(dataset_id: str, store: DatasetStoreDep, caller: WriterDep) -> None:
    """Delete the dataset. Jobs already queued on it fail with 'bad dataset' when they
    start; running jobs keep the copy they prepared. Only the principal that uploaded it
    or an admin may (403)."""
    meta = store.get(dataset_id)
    if meta is not None:
        check_owner(caller, f"dataset {dataset_id}", meta.owner, "delete")
    if meta is None or not store.delete(dataset_id):
        raise HTTPException(http.HTTP_404_NOT_FOUND, detail=f"no dataset {dataset_id!r}")


def check_job_dataset(spec: JobSpec, store: DatasetStore) -> JobSpec:
    """``spec`` validated again with the shape of the uploaded dataset it names, so its
    layers and workers are checked as for a built-in set (the spec alone cannot know an
    upload's features, classes or rows); a spec naming a built-in set comes back as is.

    An unknown id or a model that does not fit is a 422 like any other invalid spec, at
    ``body.dataset.id`` or ``body.model.layers.<i>`` and so on.
    """
    upload_id = spec.dataset.id
    if upload_id is None:
        return spec
    meta = store.get(upload_id)
    uploads = {} if meta is None else {upload_id: meta.info()}
    try:
        return JobSpec.model_validate(spec.model_dump(), context={UPLOADS: uploads})
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        raise RequestValidationError(errors) from None


def _format(given: str | None, file: UploadFile, data: bytes) -> str:
    if given is not None:
        if given not in FORMATS:
            raise DatasetError(f"unknown format {given!r}; expected one of: {', '.join(FORMATS)}")
        return given
    suffix = PurePath(file.filename or "").suffix.lower()
    if suffix == ".npz" or (suffix != ".csv" and data.startswith(b"PK\x03\x04")):
        return "npz"
    return "csv"


def _name(given: str | None, file: UploadFile) -> str:
    name = given if given is not None else PurePath(file.filename or "upload").name
    if not (1 <= len(name) <= MAX_NAME and name.isprintable() and name.strip()):
        raise DatasetError(
            f"name {name[:MAX_NAME]!r} must be 1 to {MAX_NAME} printable characters, "
            "not only spaces"
        )
    return name


def _meta(parsed: ParsedDataset, name: str, kind: str, size: int, owner: str | None) -> DatasetMeta:
    return DatasetMeta(
        id=new_dataset_id(),
        name=name,
        format=kind,
        task=parsed.task,
        rows=parsed.rows,
        features=parsed.features,
        feature_names=parsed.feature_names,
        label=parsed.label,
        classes=parsed.classes,
        created_at=time.time(),
        size=size,
        owner=owner,
    )

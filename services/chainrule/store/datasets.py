"""Uploaded datasets in Redis: metadata, the checked arrays, and an index.

Keys, for ``prefix="chainrule"`` and a dataset id such as ``3f9a2c71d04e8b15``::

    chainrule:dataset:{id}        string  the metadata, JSON (:class:`DatasetMeta`)
    chainrule:dataset:{id}:data   string  the checked arrays as an ``.npz`` image
                                          (``chainrule.data.ParsedDataset.to_bytes``)
    chainrule:datasets            zset    dataset ids scored by creation time

:meth:`DatasetStore.put` writes all three in one MULTI/EXEC and :meth:`DatasetStore.delete`
removes all three in one, so a dataset is listed exactly when its data is there. The
client must return bytes (``redis.Redis.from_url(url)``, not ``decode_responses=True``):
the data is binary. :func:`chainrule.store.binary_client` makes one.
"""

from __future__ import annotations

import builtins
import json
import re
import secrets
from dataclasses import asdict, dataclass
from typing import Any

import redis

from chainrule.data.registry import DatasetInfo

_DATASET_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # never a ':', so an id cannot reach other keys


class DatasetNotFoundError(KeyError):
    """No uploaded dataset with that id."""

    def __str__(self) -> str:  # KeyError would show the message in quotes
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class DatasetMeta:
    """What is known about an uploaded dataset without loading it.

    ``classes`` are the class names in class-index order, None for a regression set;
    ``created_at`` is Unix seconds; ``size`` is the bytes uploaded; ``owner`` is the
    principal that uploaded it (None: uploaded without one, or before owners existed).
    """

    id: str
    name: str
    format: str  # "csv" or "npz"
    task: str  # "classification" or "regression"
    rows: int
    features: int
    feature_names: list[str]
    label: str
    classes: list[str] | None
    created_at: float
    size: int
    owner: str | None = None  # the principal that uploaded it; None: the admins'

    def info(self) -> DatasetInfo:
        """The shape a job spec is checked against."""
        classes = None if self.classes is None else len(self.classes)
        return DatasetInfo(features=self.features, classes=classes, samples=self.rows)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str | bytes) -> DatasetMeta:
        fields: dict[str, Any] = json.loads(text)
        return cls(**fields)


def new_dataset_id() -> str:
    return secrets.token_hex(8)


class DatasetStore:
    """Uploaded datasets under ``prefix``; the (binary) client comes from the caller."""

    def __init__(self, client: redis.Redis, prefix: str = "chainrule") -> None:
        self._redis = client
        self.prefix = prefix

    @property
    def index_key(self) -> str:
        return f"{self.prefix}:datasets"

    def meta_key(self, dataset_id: str) -> str:
        return f"{self.prefix}:dataset:{dataset_id}"

    def data_key(self, dataset_id: str) -> str:
        return f"{self.prefix}:dataset:{dataset_id}:data"

    def put(self, meta: DatasetMeta, data: bytes) -> None:
        """Store ``meta`` and ``data`` and list the dataset, in one transaction."""
        if not _valid(meta.id):
            raise ValueError(f"dataset id {meta.id!r} must be 1 to 64 letters, digits, '_' or '-'")
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self.meta_key(meta.id), meta.to_json())
            pipe.set(self.data_key(meta.id), data)
            pipe.zadd(self.index_key, {meta.id: meta.created_at})
            pipe.execute()

    def get(self, dataset_id: str) -> DatasetMeta | None:
        """The dataset's metadata, or None if there is no dataset ``dataset_id``."""
        if not _valid(dataset_id):
            return None
        raw: bytes | None = self._redis.get(self.meta_key(dataset_id))  # type: ignore[assignment]
        return None if raw is None else DatasetMeta.from_json(raw)

    def data(self, dataset_id: str) -> bytes:
        """The dataset's stored arrays; DatasetNotFoundError if there is no such dataset."""
        raw = self._redis.get(self.data_key(dataset_id)) if _valid(dataset_id) else None
        if raw is None:
            raise DatasetNotFoundError(f"no uploaded dataset {dataset_id!r}")
        if not isinstance(raw, bytes):
            raise TypeError("the dataset store needs a Redis client that returns bytes")
        return raw

    def list(self, limit: int = 50, offset: int = 0) -> builtins.list[DatasetMeta]:
        """Up to ``limit`` datasets, newest first, skipping the ``offset`` newest."""
        if limit < 1 or offset < 0:
            raise ValueError(f"limit must be >= 1 and offset >= 0; got {limit}, {offset}")
        ids: builtins.list[Any] = self._redis.zrevrange(self.index_key, offset, offset + limit - 1)
        if not ids:
            return []
        keys = [self.meta_key(_text(i)) for i in ids]
        metas: builtins.list[bytes | None] = self._redis.mget(keys)  # type: ignore[assignment]
        return [DatasetMeta.from_json(raw) for raw in metas if raw is not None]

    def count(self) -> int:
        """How many datasets the index holds."""
        return int(self._redis.zcard(self.index_key))

    def delete(self, dataset_id: str) -> bool:
        """Remove the dataset, atomically; False if there was none."""
        if not _valid(dataset_id):
            return False
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.meta_key(dataset_id), self.data_key(dataset_id))
            pipe.zrem(self.index_key, dataset_id)
            deleted, _ = pipe.execute()
        return bool(deleted)


def _valid(dataset_id: str) -> bool:
    return bool(_DATASET_ID.fullmatch(dataset_id))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value

"""Prepared datasets and trained models: one binary value per job in Redis."""

from __future__ import annotations

import redis


def dataset_key(prefix: str, job_id: str) -> str:
    return f"{prefix}:job:{job_id}:data"


def model_key(prefix: str, job_id: str) -> str:
    return f"{prefix}:job:{job_id}:model"


def preprocess_key(prefix: str, job_id: str) -> str:
    """An .npz with ``feature_mean``/``feature_std`` and ``classes`` when the job has them."""
    return f"{prefix}:job:{job_id}:preprocess"


class BlobStore:
    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def put(self, key: str, data: bytes) -> None:
        self.client.set(key, data)

    def get(self, key: str) -> bytes:
        value = self.client.get(key)
        if value is None:
            raise KeyError(f"nothing stored at {key!r}")
        return bytes(value)  # type: ignore[arg-type]

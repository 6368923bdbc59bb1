"""Prepared datasets and trained models: one binary value per job in Redis."""

from __future__ import annotations

import redis

from chainrule.store.fencing import LEASE_CHECK, Fence
from chainrule.store.keys import dataset_key, model_key, preprocess_key

__all__ = ["BlobStore", "dataset_key", "model_key", "preprocess_key"]  # keys from store/keys.py

_PUT = LEASE_CHECK + "return redis.call('SET', KEYS[3], ARGV[3])"
_DELETE = LEASE_CHECK + "return redis.call('DEL', KEYS[3])"


class BlobStore:
    def __init__(self, client: redis.Redis, fence: Fence | None = None) -> None:
        self.client = client
        self.fence = fence  # the leading scheduler's: its puts are fenced (store/fencing.py)
        self._put = client.register_script(_PUT)
        self._delete = client.register_script(_DELETE)

    def put(self, key: str, data: bytes) -> None:
        if self.fence is None:
            self.client.set(key, data)
        else:
            self.fence.run(self._put, [key], [data])

    def delete(self, key: str) -> None:
        if self.fence is None:
            self.client.delete(key)
        else:
            self.fence.run(self._delete, [key], [])

    def get(self, key: str) -> bytes:
        value = self.client.get(key)
        if value is None:
            raise KeyError(f"nothing stored at {key!r}")
        return bytes(value)  # type: ignore[arg-type]

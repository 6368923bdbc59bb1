"""Checkpoints of a parameter server's slice of θ: parameters, optimizer state, version,
the optimizer's configuration and the scheduler's opaque state, as one ``.npz`` value
per job and shard (one SET, so a checkpoint is never half written)."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import redis

from chainrule.nn import OptState, Params


def checkpoint_key(prefix: str, job_id: str, shard: str) -> str:
    return f"{prefix}:job:{job_id}:ckpt:{shard}"


@dataclass
class Checkpoint:
    params: Params
    opt_state: OptState
    version: int
    optimizer: str
    options: dict[str, Any] = field(default_factory=dict)
    scheduler_state: str = ""

    def to_bytes(self) -> bytes:
        meta = {
            "version": self.version,
            "optimizer": self.optimizer,
            "options": self.options,
            "scheduler_state": self.scheduler_state,
        }
        arrays: dict[str, Any] = {f"param/{k}": v for k, v in self.params.items()}
        arrays.update({f"opt/{k}": v for k, v in self.opt_state.items()})
        arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Checkpoint:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            meta = json.loads(z["__meta__"].tobytes().decode())
            params = {k.removeprefix("param/"): z[k] for k in z.files if k.startswith("param/")}
            opt = {k.removeprefix("opt/"): z[k] for k in z.files if k.startswith("opt/")}
        return cls(
            params,
            opt,
            int(meta["version"]),
            meta["optimizer"],
            meta["options"],
            meta["scheduler_state"],
        )


class CheckpointStore:
    """Checkpoints in Redis for one parameter-server shard."""

    def __init__(self, client: redis.Redis, prefix: str, shard: str) -> None:
        self.client, self.prefix, self.shard = client, prefix, shard

    def save(self, job_id: str, checkpoint: Checkpoint) -> None:
        self.client.set(checkpoint_key(self.prefix, job_id, self.shard), checkpoint.to_bytes())

    def load(self, job_id: str) -> Checkpoint | None:
        data = self.client.get(checkpoint_key(self.prefix, job_id, self.shard))
        return None if data is None else Checkpoint.from_bytes(bytes(data))  # type: ignore[arg-type]

"""Checkpoints of a parameter server's slice of θ: parameters, optimizer state, version,
the optimizer's configuration and the scheduler's opaque state, as one ``.npz`` value
per job and shard (one SET, so a checkpoint is never half written).

Each shard keeps its last two checkpoints of different versions (``ckpt:<shard>``, the
latest, and ``ckpt:<shard>:previous``; their versions in the hash ``ckpt:<shard>:versions``,
all three written by one script): a shard that failed while the others wrote a checkpoint
still shares the previous one with them, which a sharded restore goes back to."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import redis

from chainrule.nn import OptState, Params
from chainrule.npz import npz_bytes
from chainrule.store.keys import checkpoint_key, previous_key, versions_key

__all__ = [  # the keys are named in store/keys.py and offered here too
    "Checkpoint",
    "CheckpointStore",
    "checkpoint_key",
    "held_versions",
    "previous_key",
    "versions_key",
]


# KEYS: latest, previous, versions; ARGV: the checkpoint, its version. A checkpoint of a
# version the latest already has replaces it (a replayed step); else the latest moves to
# previous first.
_SAVE = """
local latest = redis.call('HGET', KEYS[3], 'latest')
if latest and latest ~= ARGV[2] then
  redis.call('RENAME', KEYS[1], KEYS[2])
  redis.call('HSET', KEYS[3], 'previous', latest)
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[3], 'latest', ARGV[2])
return 1
"""


def held_versions(client: redis.Redis, latest: str) -> dict[int, str]:
    """version -> key of the checkpoints kept under ``latest`` (a shard's latest key)."""
    raw = client.hgetall(versions_key(latest))
    keys = {"latest": latest, "previous": previous_key(latest)}
    held = {}
    for slot, version in raw.items():
        name = slot.decode() if isinstance(slot, bytes) else str(slot)
        held[int(version)] = keys[name]
    if not held and client.exists(latest):  # written before versions were kept
        held[-1] = latest
    return held


@dataclass
class Checkpoint:
    params: Params
    opt_state: OptState
    version: int
    optimizer: str
    options: dict[str, Any] = field(default_factory=dict)
    scheduler_state: str = ""
    # the last steps applied before it: (step, loss, samples, tasks), oldest first, so
    # that a scheduler rolled forward to it can record those steps' points
    applied: list[tuple[int, float, int, int]] = field(default_factory=list)

    def to_bytes(self) -> bytes:
        meta = {
            "version": self.version,
            "optimizer": self.optimizer,
            "options": self.options,
            "scheduler_state": self.scheduler_state,
            "applied": [list(a) for a in self.applied],
        }
        arrays: dict[str, Any] = {f"param/{k}": v for k, v in self.params.items()}
        arrays.update({f"opt/{k}": v for k, v in self.opt_state.items()})
        arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        return npz_bytes(arrays)

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
            [(int(s), float(loss), int(n), int(t)) for s, loss, n, t in meta.get("applied", [])],
        )


# KEYS: latest, previous, versions; ARGV: the checkpoint, its version. The job's one
# checkpoint from now on: the latest replaced, the previous deleted.
_SAVE_FINAL = """
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('SET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[3], 'latest', ARGV[2])
return 1
"""


class CheckpointStore:
    """Checkpoints in Redis for one parameter-server shard."""

    def __init__(self, client: redis.Redis, prefix: str, shard: str) -> None:
        self.client, self.prefix, self.shard = client, prefix, shard

        self._save = client.register_script(_SAVE)
        self._save_final = client.register_script(_SAVE_FINAL)

    def save(self, job_id: str, checkpoint: Checkpoint, final: bool = False) -> None:
        """Keep ``checkpoint`` as the latest, the one before as the previous; ``final``:
        as the job's only checkpoint (it has ended), the older ones deleted."""
        latest = checkpoint_key(self.prefix, job_id, self.shard)
        script = self._save_final if final else self._save
        script(
            keys=[latest, previous_key(latest), versions_key(latest)],
            args=[checkpoint.to_bytes(), checkpoint.version],
        )

    def load(self, job_id: str, at_most: int | None = None) -> Checkpoint | None:
        """The latest checkpoint, or with ``at_most`` the newest of a version up to it."""
        held = held_versions(self.client, checkpoint_key(self.prefix, job_id, self.shard))
        fitting = [v for v in held if at_most is None or v <= at_most or v == -1]
        if not fitting:
            return None
        data = self.client.get(held[max(fitting)])
        if data is None:
            return None
        checkpoint = Checkpoint.from_bytes(bytes(data))  # type: ignore[arg-type]
        if at_most is not None and checkpoint.version > at_most:
            return None
        return checkpoint

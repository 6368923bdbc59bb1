"""Fenced writes: what only the leading scheduler may write (scheduler/leader.py).

A scheduler that lost its lease and has not noticed yet (paused past it, a hung socket)
must write nothing. So its writes of job state (status and phase, progress, metrics,
diagnostics, worker counts, the queue's acknowledgement, the trained model) name the
lease, its holder and its epoch, and Redis checks them in the same script or
transaction as the write: a deposed leader's write changes nothing, and it learns that
it was deposed (:class:`DeposedError`, after the fence's ``on_deposed``, with which a
scheduler steps down at once). The parameter servers fence it out the same way
(paramserver/fence.py).

Every fenced script takes the lease's two keys first (``KEYS[1]``, ``KEYS[2]``) and the
holder and epoch first (``ARGV[1]``, ``ARGV[2]``); an unfenced caller (the gateway)
passes an empty holder, and nothing is checked.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import redis

LEASE_CHECK = """
if ARGV[1] ~= '' then
  local holder, epoch = redis.call('GET', KEYS[1]), redis.call('GET', KEYS[2])
  if holder ~= ARGV[1] or epoch ~= ARGV[2] then
    return redis.error_reply('DEPOSED the leader lease is held by ' .. (holder or 'nobody')
      .. ' under epoch ' .. (epoch or '0') .. ' now')
  end
end
"""
"""The check every fenced script starts with."""


def leader_key(prefix: str) -> str:
    return f"{prefix}:scheduler:leader"


def epoch_key(lease_key: str) -> str:
    """Counts leaders: each new one's epoch is one more (paramserver.fence)."""
    return f"{lease_key}:epoch"


class DeposedError(RuntimeError):
    """This scheduler no longer holds the leader lease: it must write nothing more."""


@dataclass
class Fence:
    """Whose writes go through: the holder ``owner`` of the lease at ``lease_key``,
    under ``epoch`` (set when it acquires the lease). ``owner=""``: no fence."""

    lease_key: str
    owner: str = ""
    epoch: int = 0
    on_deposed: Callable[[str], None] | None = None

    @classmethod
    def none(cls, prefix: str) -> Fence:
        """No fence: every write goes through (the gateway's, the tools')."""
        return cls(leader_key(prefix))

    @property
    def keys(self) -> list[str]:
        return [self.lease_key, epoch_key(self.lease_key)]

    @property
    def args(self) -> list[str]:
        return [self.owner, str(self.epoch) if self.owner else ""]

    @property
    def watched(self) -> list[str]:
        """The keys a fenced WATCH transaction watches (none without a fence)."""
        return self.keys if self.owner else []

    def check(self, pipe: Any) -> None:
        """Inside a WATCH transaction that watches :attr:`keys`: raise unless the lease
        is still this holder's, under its epoch."""
        if not self.owner:
            return
        holder, epoch = (_text(v) for v in pipe.mget(self.keys))
        if holder != self.owner or epoch != str(self.epoch):
            held = f"held by {holder or 'nobody'} under epoch {epoch or '0'}"
            self.deposed(f"the leader lease is {held} now")

    def run(self, script: Any, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Call a fenced ``script`` (one that starts with :data:`LEASE_CHECK`)."""
        try:
            return script(keys=[*self.keys, *keys], args=[*self.args, *args])
        except redis.ResponseError as e:
            if str(e).startswith("DEPOSED"):
                self.deposed(str(e).removeprefix("DEPOSED "))
            raise

    def deposed(self, why: str) -> NoReturn:
        if self.on_deposed is not None:
            self.on_deposed(why)
        raise DeposedError(f"not written: {why} (epoch {self.epoch} is over)")


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else str(value)

"""The job queue: a Redis stream read through a consumer group.

A scheduler acknowledges a job's message only when the job has ended, so a scheduler
that dies after reading one leaves it pending; on start it re-reads its own pending
messages and claims those another consumer left idle for longer than ``claim_idle_ms``.
"""

from __future__ import annotations

from typing import Any

import redis

from chainrule.store.fencing import LEASE_CHECK, Fence
from chainrule.store.keys import queue_key

GROUP = "schedulers"
_ACK = LEASE_CHECK + "return redis.call('XACK', KEYS[3], ARGV[3], ARGV[4])"


class JobQueue:
    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        consumer: str,
        claim_idle_ms: int = 30_000,
        fence: Fence | None = None,
    ) -> None:
        self.client = client
        self.fence = fence or Fence.none(prefix)  # the leading scheduler's (store/fencing.py)
        self._ack = client.register_script(_ACK)
        self.key = queue_key(prefix)
        self.consumer = consumer
        self.claim_idle_ms = claim_idle_ms
        try:
            self.client.xgroup_create(self.key, GROUP, id="0", mkstream=True)
        except redis.ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise

    def recover(self, claim_idle_ms: int | None = None) -> list[tuple[str, str]]:
        """Messages this consumer read before and never acknowledged, plus those
        claimed from consumers idle for longer than ``claim_idle_ms`` (0: all of them,
        for a scheduler that has just become the leader)."""
        idle = self.claim_idle_ms if claim_idle_ms is None else claim_idle_ms
        own = self.client.xreadgroup(GROUP, self.consumer, {self.key: "0"})
        claimed = self.client.xautoclaim(
            self.key, GROUP, self.consumer, min_idle_time=idle, start_id="0-0"
        )
        unique = dict(_entries(own) + _pairs(claimed[1]))  # own messages may come back twice
        return list(unique.items())

    def read(self, block_ms: int = 1000, count: int = 10) -> list[tuple[str, str]]:
        """New (message id, job id) pairs, waiting up to ``block_ms``."""
        reply = self.client.xreadgroup(
            GROUP, self.consumer, {self.key: ">"}, count=count, block=block_ms
        )
        return _entries(reply)

    def ack(self, message_id: str) -> None:
        """The job of ``message_id`` has ended: no scheduler is to read it again."""
        self.fence.run(self._ack, [self.key], [GROUP, message_id])


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _pairs(messages: list[Any]) -> list[tuple[str, str]]:
    out = []
    for message_id, fields in messages:
        if not fields:  # deleted from the stream meanwhile
            continue
        decoded = {_text(k): _text(v) for k, v in fields.items()}
        out.append((_text(message_id), decoded.get("job_id", "")))
    return out


def _entries(reply: Any) -> list[tuple[str, str]]:
    """Flatten an XREADGROUP reply into (message id, job id) pairs."""
    if not reply:
        return []
    streams = reply.items() if isinstance(reply, dict) else reply
    out: list[tuple[str, str]] = []
    for _, messages in streams:
        out.extend(_pairs(messages))
    return out

"""One active scheduler at a time: a lease in Redis (SET NX PX, renewed by its holder).

A standby scheduler serves gRPC but answers UNAVAILABLE and reports NOT_SERVING on the
health check until it holds the lease; workers then move on to the next scheduler they
know. A leader that fails to renew has lost the lease to another and exits. Every new
leader gets an epoch one higher than the last (a counter beside the lease), which fences
a deposed one out of the parameter servers (paramserver.fence) and out of Redis
(store/fencing.py: its job-state writes are checked against the lease).
"""

from __future__ import annotations

import redis

from chainrule.store.fencing import epoch_key, leader_key

__all__ = ["LeaderLease", "epoch_key", "leader_key"]

_ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('INCR', KEYS[2])
end
return 0
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class LeaderLease:
    def __init__(self, client: redis.Redis, key: str, owner: str, ttl_seconds: float) -> None:
        self.client, self.key, self.owner = client, key, owner
        self.ttl_ms = int(ttl_seconds * 1000)
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self.epoch = 0  # this holder's, once acquired
        self._release = client.register_script(_RELEASE)

    def acquire(self) -> bool:
        """Take the lease if it is free; the new leader's epoch is then ``self.epoch``."""
        epoch = int(
            self._acquire(keys=[self.key, epoch_key(self.key)], args=[self.owner, self.ttl_ms])
        )
        if epoch:
            self.epoch = epoch
        return bool(epoch)

    def renew(self) -> bool:
        """Extend the lease; False when another holds it now."""
        return bool(self._renew(keys=[self.key], args=[self.owner, self.ttl_ms]))

    def release(self) -> None:
        self._release(keys=[self.key], args=[self.owner])

    def holder(self) -> str | None:
        value = self.client.get(self.key)
        return value.decode() if isinstance(value, bytes) else value

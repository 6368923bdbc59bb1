"""The Lua scripts of the job store (chainrule.store.jobs), each fenced: it starts with
the leader lease check (store/fencing.py), so its KEYS and ARGV begin with the lease's."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from redis.commands.core import Script

from chainrule.store.fencing import LEASE_CHECK
from chainrule.store.thinning import THIN

# Writes the step only while the job runs and the step is in range; returns the record's
# status and total_steps either way (nil when there is no such job).
SET_PROGRESS = (
    LEASE_CHECK
    + """
local status = redis.call('HGET', KEYS[3], 'status')
if not status then return false end
local total = redis.call('HGET', KEYS[3], 'total_steps')
if status == 'RUNNING' and tonumber(ARGV[3]) <= tonumber(total) then
  redis.call('HSET', KEYS[3], 'step', ARGV[3])
end
return {status, total}
"""
)
# XADD to the metrics stream only if the job exists, so no orphan streams appear, and to
# the events stream too unless the job has ended (its 'end' event stays the last one).
# With a progress step, a RUNNING job's step is set too (as SET_PROGRESS, in the same
# round trip). Both streams are then thinned to the cap (store/thinning.py). KEYS (after
# the lease's two): record, metrics, events, thinned counts; ARGV (after the lease holder
# and epoch): progress ('' for none), the cap (0: none), then per point: its event data,
# its field count, its fields.
APPEND_METRICS = (
    LEASE_CHECK
    + THIN
    + """
local status = redis.call('HGET', KEYS[3], 'status')
if not status then return false end
local ids = {}
local i = 5
while i <= #ARGV do
  local event, n = ARGV[i], tonumber(ARGV[i + 1])
  local fields = {}
  for k = i + 2, i + 1 + n do fields[#fields + 1] = ARGV[k] end
  ids[#ids + 1] = redis.call('XADD', KEYS[4], '*', unpack(fields))
  if status == 'PENDING' or status == 'RUNNING' then
    redis.call('XADD', KEYS[5], '*', 'event', 'metrics', 'data', event)
  end
  i = i + 2 + n
end
if ARGV[3] ~= '' and status == 'RUNNING' then
  local total = redis.call('HGET', KEYS[3], 'total_steps')
  if tonumber(ARGV[3]) <= tonumber(total) then
    redis.call('HSET', KEYS[3], 'step', ARGV[3])
  end
end
local cap = tonumber(ARGV[4])
thin(KEYS[4], cap, KEYS[6], 'metrics', false)
thin(KEYS[5], cap, KEYS[6], 'events', true)
return ids
"""
)
# Sets a job's worker counts (ARGV after the lease's two: active, lost); 0 when there is
# no such job.
SET_WORKERS = (
    LEASE_CHECK
    + """
if redis.call('EXISTS', KEYS[3]) == 0 then return 0 end
redis.call('HSET', KEYS[3], 'workers_active', ARGV[3], 'workers_lost', ARGV[4])
return 1
"""
)


@dataclass(frozen=True)
class JobScripts:
    """The scripts above, registered with one client."""

    set_progress: Script
    append_metrics: Script
    set_workers: Script

    @classmethod
    def register(cls, client: redis.Redis) -> JobScripts:
        return cls(
            set_progress=client.register_script(SET_PROGRESS),
            append_metrics=client.register_script(APPEND_METRICS),
            set_workers=client.register_script(SET_WORKERS),
        )

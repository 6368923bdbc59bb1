"""Retention of a job's streams (metrics, events, diagnostics): a cap per stream, kept by
thinning, never by dropping the oldest.

Past ``cap`` entries, the script deletes every other entry between the first tenth of the
cap and the most recent quarter: the start of a run, a thinned middle and a recent window
at full resolution stay. Each pass halves the middle, so the middle of a long run is kept
at a stride that doubles with its age (every 2nd, 4th, 8th ... point), and the stream
never holds more than ``cap`` entries. A pass reads the stream once (O(cap)) and runs
once per ~cap/3 appends, so appends stay O(1) amortised. In the events stream only the
``metrics`` events are thinned: status changes and the end always stay.

How many entries each stream lost is counted in ``<prefix>:job:<id>:thinned`` (a hash:
``metrics``, ``events``, ``diagnostics``), which the API reports with a series.
"""

from __future__ import annotations

from collections.abc import Mapping

from chainrule.store.job_records import text
from chainrule.store.keys import thinned_key

__all__ = [  # the key is named in store/keys.py and offered here too
    "DEFAULT_MAX_POINTS",
    "MIN_MAX_POINTS",
    "THIN",
    "thinned_counts",
    "thinned_key",
]

DEFAULT_MAX_POINTS = 10_000
MIN_MAX_POINTS = 100  # below this a recent window would be a handful of points

# a Lua function for scripts that append to a stream; call it after the XADDs:
# thin(stream key, cap, counter key, counter field, only metrics events?)
THIN = """
local function thin(key, cap, counter, field, only_metrics)
  if cap <= 0 or redis.call('XLEN', key) <= cap then return 0 end
  local head, recent = math.floor(cap / 10), math.floor(cap / 4)
  local entries = redis.call('XRANGE', key, '-', '+')
  local deleted, drop = 0, false
  for i = head + 1, #entries - recent do
    local entry = entries[i]
    if not only_metrics or (entry[2][1] == 'event' and entry[2][2] == 'metrics') then
      if drop then
        redis.call('XDEL', key, entry[1])
        deleted = deleted + 1
      end
      drop = not drop
    end
  end
  if deleted > 0 then redis.call('HINCRBY', counter, field, deleted) end
  return deleted
end
"""


def thinned_counts(raw: Mapping[bytes | str, bytes | str]) -> dict[str, int]:
    """The counter hash as {stream: entries thinned out}."""
    return {text(k): int(v) for k, v in raw.items()}

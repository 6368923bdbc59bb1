"""Per-layer derivative diagnostics over time: one stream entry (JSON) per recorded step."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import redis

from chainrule.store.fencing import LEASE_CHECK, Fence
from chainrule.store.keys import diagnostics_key, thinned_key
from chainrule.store.thinning import DEFAULT_MAX_POINTS, THIN

__all__ = ["DiagnosticsStore", "diagnostics_key"]  # the key from store/keys.py

# then thinned to the cap (store/thinning.py). KEYS (after the lease's two): the stream,
# the thinned counts; ARGV (after holder and epoch): the cap (0: none), step, layers, ...
_APPEND = (
    LEASE_CHECK
    + THIN
    + """
for i = 4, #ARGV, 2 do
  redis.call('XADD', KEYS[3], '*', 'step', ARGV[i], 'layers', ARGV[i + 1])
end
thin(KEYS[3], tonumber(ARGV[3]), KEYS[4], 'diagnostics', false)
return 1
"""
)


class DiagnosticsStore:
    def __init__(
        self,
        client: redis.Redis,
        prefix: str = "chainrule",
        fence: Fence | None = None,
        max_points: int = DEFAULT_MAX_POINTS,
    ) -> None:
        self.client, self.prefix = client, prefix
        self.max_points = max_points  # entries kept per job (store/thinning.py)
        self.fence = fence or Fence.none(prefix)  # the leading scheduler's (store/fencing.py)
        self._append = client.register_script(_APPEND)

    def append(self, job_id: str, step: int, layers: Sequence[dict[str, Any]]) -> None:
        self.append_many(job_id, [(step, layers)])

    def append_many(
        self, job_id: str, entries: Sequence[tuple[int, Sequence[dict[str, Any]]]]
    ) -> None:
        """Several steps' diagnostics, in order, in one round trip (one script)."""
        if not entries:
            return
        args: list[str | int] = [self.max_points]
        args += [item for step, layers in entries for item in (str(step), json.dumps(list(layers)))]
        keys = [diagnostics_key(self.prefix, job_id), thinned_key(self.prefix, job_id)]
        self.fence.run(self._append, keys, args)

    def series(self, job_id: str) -> list[dict[str, Any]]:
        """[{"step": s, "layers": [...]}, ...], oldest first."""
        out = []
        entries: list[Any] = self.client.xrange(diagnostics_key(self.prefix, job_id))  # type: ignore[assignment]
        for _, fields in entries:
            decoded = {_text(k): _text(v) for k, v in fields.items()}
            out.append({"step": int(decoded["step"]), "layers": json.loads(decoded["layers"])})
        return out


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)

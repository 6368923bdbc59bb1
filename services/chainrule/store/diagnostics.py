"""Per-layer derivative diagnostics over time: one stream entry (JSON) per recorded step."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import redis


def diagnostics_key(prefix: str, job_id: str) -> str:
    return f"{prefix}:job:{job_id}:diagnostics"


class DiagnosticsStore:
    def __init__(self, client: redis.Redis, prefix: str = "chainrule") -> None:
        self.client, self.prefix = client, prefix

    def append(self, job_id: str, step: int, layers: Sequence[dict[str, Any]]) -> None:
        self.append_many(job_id, [(step, layers)])

    def append_many(
        self, job_id: str, entries: Sequence[tuple[int, Sequence[dict[str, Any]]]]
    ) -> None:
        """Several steps' diagnostics, in order, in one round trip (a pipeline)."""
        pipe = self.client.pipeline(transaction=False)
        for step, layers in entries:
            entry = {"step": str(step), "layers": json.dumps(list(layers))}
            pipe.xadd(diagnostics_key(self.prefix, job_id), entry)  # type: ignore[arg-type]
        pipe.execute()

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

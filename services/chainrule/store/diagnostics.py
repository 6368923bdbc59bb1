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
        entry = {"step": str(step), "layers": json.dumps(list(layers))}
        self.client.xadd(diagnostics_key(self.prefix, job_id), entry)  # type: ignore[arg-type]

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

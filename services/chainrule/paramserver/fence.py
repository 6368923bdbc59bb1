"""Fencing: a deposed scheduler can change nothing on a parameter server.

Every leader holds an epoch, one higher than its predecessor's (scheduler.leader), and
sends it with every call (``chainrule-epoch`` metadata, rpc.auth.Credentials). A
parameter server remembers the highest epoch it has seen and refuses a control call
(anything but a worker's Pull, Push, PushPull) of a lower one with ABORTED and a detail
starting ``deposed``: "you are not the leader: step down, write nothing". That code means
nothing else here (FAILED_PRECONDITION means "resync"); a scheduler that gets it exits.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

import grpc

from chainrule.rpc.auth import EPOCH_KEY, CallGuard, refusal

DEPOSED = "deposed"


class FenceInterceptor(CallGuard):
    """Refuses control calls (full method names ``fenced``) of an epoch below the highest
    seen; a higher one raises the fence. A call without an epoch counts as epoch 0."""

    def __init__(self, fenced: Iterable[str]) -> None:
        self._fenced = frozenset(fenced)
        self._lock = threading.Lock()
        self.epoch = 0  # the highest seen

    def check(self, method: str, metadata: Any) -> grpc.RpcMethodHandler | None:
        if method in self._fenced:
            epoch = epoch_of(metadata)
            with self._lock:
                highest = self.epoch = max(self.epoch, epoch)
            if epoch < highest:
                return refusal(
                    grpc.StatusCode.ABORTED,
                    f"{DEPOSED}: {method} came with leader epoch {epoch}, but a scheduler of "
                    f"epoch {highest} leads now; step down and write nothing",
                )
        return None


def epoch_of(metadata: Iterable[tuple[str, Any]] | None) -> int:
    """The leader epoch a call's metadata carries (0 if none, or not a number)."""
    for key, value in metadata or ():
        if key == EPOCH_KEY:
            try:
                return int(value.decode() if isinstance(value, bytes) else value)
            except ValueError:
                return 0
    return 0


def is_deposed(error: grpc.RpcError) -> bool:
    """Whether a parameter server refused a call because its caller no longer leads."""
    code = error.code() if hasattr(error, "code") else None
    details = error.details() if hasattr(error, "details") else ""
    return code == grpc.StatusCode.ABORTED and str(details or "").startswith(DEPOSED)

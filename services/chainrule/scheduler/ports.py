"""What the scheduler needs of its collaborators: the job records and the parameter
server (the paramserver package's one ParamServer protocol, which the gRPC client, the
sharded client and the unit tests' fakes implement)."""

from __future__ import annotations

from typing import Any, Protocol

from chainrule.paramserver.interface import ParamServer

__all__ = ["Jobs", "ParamServer"]


class Jobs(Protocol):
    """What the scheduler needs of the job records (chainrule.store.jobs.JobStore)."""

    def get(self, job_id: str) -> Any: ...
    def set_status(
        self,
        job_id: str,
        status: str,
        phase: str | None = None,
        message: str | None = None,
        reason: str | None = None,
    ) -> Any: ...
    def set_phase(self, job_id: str, phase: str, message: str | None = None) -> Any: ...
    def refresh_message(self, job_id: str, phase: str, message: str) -> bool: ...
    def set_progress(self, job_id: str, step: int) -> Any: ...
    def append_metrics_many(
        self, job_id: str, points: list[dict[str, Any]], progress: int | None = None
    ) -> Any: ...
    def stop_requested(self, job_id: str) -> bool: ...
    def set_workers(self, job_id: str, active: int, lost: int) -> Any: ...

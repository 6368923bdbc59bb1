"""What the scheduler needs of its collaborators: the job records and the parameter
server (the gRPC client, the sharded client and the unit tests' fakes all fit)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from chainrule.nn import Params
from chainrule.paramserver.state import PlannedStep


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
    def set_progress(self, job_id: str, step: int) -> Any: ...
    def append_metrics_many(
        self, job_id: str, points: list[dict[str, Any]], progress: int | None = None
    ) -> Any: ...
    def stop_requested(self, job_id: str) -> bool: ...
    def set_workers(self, job_id: str, active: int, lost: int) -> Any: ...


class ParamServer(Protocol):
    def create_job(
        self,
        job_id: str,
        params: Params,
        optimizer: str,
        hyper: dict[str, float] | None = None,
        flags: dict[str, bool] | None = None,
    ) -> tuple[int, bool]: ...
    def pull(
        self, job_id: str, have_version: int = -1, min_version: int = 0, wait_seconds: float = 0.0
    ) -> tuple[int, Params | None]: ...
    def plan_run(
        self, job_id: str, plans: Sequence[PlannedStep], epoch: int = 0
    ) -> tuple[int, bool]: ...
    def apply(
        self,
        job_id: str,
        step: int,
        task_ids: list[str],
        lr: float,
        checkpoint: bool = False,
        scheduler_state: str = "",
    ) -> tuple[int, bool]: ...
    def discard(self, job_id: str, task_ids: list[str]) -> int: ...
    def status(self, job_id: str) -> Any: ...
    def restore(self, job_id: str) -> Any: ...
    def drop_job(
        self, job_id: str, final_checkpoint: bool = False, scheduler_state: str = ""
    ) -> bool: ...

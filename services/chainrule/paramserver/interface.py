"""The parameter server as its callers see it: the one :class:`ParamServer` protocol.

The gRPC client (client.py) and the sharded client (sharding.py) implement it, and the
scheduler and the worker are typed against it, as are the unit tests' fakes. Errors are
gRPC errors with the status a server gives (NOT_FOUND: no such job; FAILED_PRECONDITION:
θ is not at the version the call needs; INVALID_ARGUMENT: a malformed request).

An implementation subclasses the protocol to inherit :meth:`Planner.plan`, a run of one
plan; :class:`chainrule.paramserver.state.ParameterStore` does the same.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from chainrule.nn import Params
from chainrule.paramserver.records import PlannedStep, ThetaStatus

__all__ = ["ParamServer", "PlannedStep", "Planner", "ThetaStatus"]


class Planner(Protocol):
    """What takes the plans of sync steps: in runs, one plan being a run of one."""

    def plan_run(
        self, job_id: str, plans: Sequence[PlannedStep], epoch: int = 0
    ) -> tuple[int, bool]:
        """Register the plans of a run of steps, in step order, in one call (all are
        checked before any is registered); each step is applied when its gradients are
        in, at once if they are. Returns (version, duplicate: the last step was applied
        before). ``epoch``: the leader epoch of the scheduler that planned them."""
        ...

    def plan(
        self,
        job_id: str,
        step: int,
        task_ids: list[str],
        lr: float,
        quorum: int = 0,
        checkpoint: bool = False,
        scheduler_state: str = "",
        epoch: int = 0,
    ) -> tuple[int, bool]:
        """Register sync step ``step``'s plan: :meth:`plan_run` of one."""
        plan = PlannedStep(step, task_ids, lr, quorum, checkpoint, scheduler_state)
        return self.plan_run(job_id, [plan], epoch)


class ParamServer(Planner, Protocol):
    """θ, its version and the gradients pushed to it, for every job (see state.py for
    what each call does on the server)."""

    def create_job(
        self,
        job_id: str,
        params: Params,
        optimizer: str,
        hyper: Mapping[str, float] | None = None,
        flags: Mapping[str, bool] | None = None,
    ) -> tuple[int, bool]:
        """Install θ with a fresh ``optimizer``; a job that exists is left as it is.
        Returns (version, created)."""
        ...

    def pull(
        self, job_id: str, have_version: int = -1, min_version: int = 0, wait_seconds: float = 0.0
    ) -> tuple[int, Params | None]:
        """(version, θ) or (version, None) when ``have_version`` is current. With
        ``min_version``, waits up to ``wait_seconds`` for θ to get there (FAILED_PRECONDITION
        if it does not)."""
        ...

    def push(
        self, job_id: str, task_id: str, base_version: int, grads: Params, samples: int, loss: float
    ) -> bool:
        """Buffer a gradient computed on θ of ``base_version``; True when the task was
        pushed before (nothing changed)."""
        ...

    def push_pull(
        self,
        job_id: str,
        task_id: str,
        base_version: int,
        grads: Params,
        samples: int,
        loss: float,
        wait_seconds: float,
    ) -> tuple[int, Params | None]:
        """Push a gradient of a planned step and wait up to ``wait_seconds`` for the step
        to be applied: (version, θ) when θ moved past ``base_version``, else (version, None)."""
        ...

    def apply(
        self,
        job_id: str,
        step: int,
        task_ids: list[str],
        lr: float,
        checkpoint: bool = False,
        scheduler_state: str = "",
    ) -> tuple[int, bool]:
        """Step ``step`` now, from the named buffers (all pushed already); checkpoint if
        asked. Returns (version, duplicate: the step was applied before)."""
        ...

    def discard(self, job_id: str, task_ids: list[str]) -> int:
        """Forget buffered gradients that will not be applied; returns how many were."""
        ...

    def status(self, job_id: str, log: bool = False) -> ThetaStatus:
        """Version and latest checkpoint (restoring the job from it if the server had
        lost it); with ``log``, the log of the steps the server applied."""
        ...

    def restore(self, job_id: str, at_most: int | None = None) -> ThetaStatus:
        """Reload the latest checkpoint (with ``at_most``, the newest of a version up to
        it), throwing away later steps."""
        ...

    def drop_job(
        self, job_id: str, final_checkpoint: bool = False, scheduler_state: str = ""
    ) -> bool:
        """Forget the job; ``final_checkpoint``: keep θ as it is as its one checkpoint."""
        ...

    def close(self) -> None:
        """Release the connections; no call may follow."""
        ...

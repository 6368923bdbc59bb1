"""The slow half of a step, handed to the publisher (scheduler/publisher.py): the next
steps' plans registered on the parameter server, and the finished steps' points and
derivative diagnostics written to Redis, in the order they were made."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chainrule.paramserver.state import AppliedStep, PlannedStep
from chainrule.scheduler.job import ActiveJob, Step
from chainrule.scheduler.ports import Jobs, ParamServer
from chainrule.scheduler.publisher import Publisher
from chainrule.scheduler.state import SchedulerState
from chainrule.store.diagnostics import DiagnosticsStore

Recorded = list[tuple[int, dict[str, Any], list[dict[str, Any]] | None]]


def _unwired(job: ActiveJob, error: BaseException) -> None:
    raise error  # until the scheduler's recovery is wired in


@dataclass(eq=False)
class Recorder:
    """``on_error(job, error)``: what to do when background work for ``job`` failed
    (recovery resyncs or fails the job); set by whoever wires the scheduler."""

    state: SchedulerState
    jobs: Jobs
    diagnostics: DiagnosticsStore
    paramserver: ParamServer
    publisher: Publisher
    log: Any = None
    on_error: Callable[[ActiveJob, BaseException], None] = _unwired

    def plan(self, job: ActiveJob, steps: list[Step]) -> None:
        """Register the plans of the sync steps just drawn, behind the step that closed
        (the workers start on their tasks meanwhile: their pushes wait for them)."""
        if not steps:
            return
        generation, quorum = job.generation, job.spec.training.quorum or 0

        plans = [
            PlannedStep(
                s.step, s.task_ids, job.schedule(s.step), quorum, s.checkpoint, s.scheduler_state
            )
            for s in steps
        ]

        def register() -> None:
            if generation != job.generation or job.job_id not in self.state.active:
                return  # the job was rolled back or ended since: these plans are void
            try:
                self.paramserver.plan_run(job.job_id, plans, self.state.epoch)
            except Exception as e:
                self.on_error(job, e)

        self.publisher.submit(register)

    def flush(self, job: ActiveJob) -> None:
        """Write the job's points not yet written, behind whatever was submitted before."""
        job.flushed_at = self.state.clock()
        if job.unrecorded:
            items, job.unrecorded = job.unrecorded, []
            self.publisher.submit(lambda: self._record(job, items))

    def _record(self, job: ActiveJob, items: Recorded) -> None:
        """Steps' points, derivative diagnostics and progress, written to Redis."""
        try:
            self.jobs.append_metrics_many(
                job.job_id, [point for _, point, _ in items], progress=items[-1][0]
            )
            layers = [(version, layers) for version, _, layers in items if layers]
            if layers:  # the derivative diagnostics of one task's minibatch per step
                self.diagnostics.append_many(job.job_id, layers)
        except ValueError:  # the job was stopped meanwhile: its record is closed
            if self.log:
                self.log.info("steps not recorded: job ended", job_id=job.job_id)
        except Exception as e:
            self.on_error(job, e)


def recovered_points(
    job: ActiveJob, applied: dict[int, AppliedStep], start: int, version: int
) -> list[dict[str, Any]]:
    """The points of steps ``start``..``version`` - 1 (θ versions start + 1 .. version) that
    this scheduler never recorded, rebuilt from the parameter server's log of applied
    steps as far as it covers them: the loss and learning rate as applied;
    ``samples_per_s`` and ``active_workers`` were not logged and read 0."""
    return [
        {
            "step": step + 1,
            "loss": applied[step].loss,
            "lr": job.schedule(step),
            "samples_per_s": 0.0,
            "active_workers": 0,
        }
        for step in range(start, version)
        if step in applied
    ]

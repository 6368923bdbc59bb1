"""A scheduler core on in-memory collaborators, driven by simulated workers
(tests/unit/scheduler): job records that follow JobStore's lifecycle rules, the real
ParameterStore (θ, buffers, the sample-weighted Apply, checkpoints) behind the
ParamServer protocol, raising gRPC status codes as ParamServerClient does, dict-backed
blob and diagnostics stores, and workers that take tasks, compute real gradients with the
worker's own code, push them and complete the task, in the test's thread."""

from __future__ import annotations

import dataclasses
import io
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import grpc
import numpy as np

from chainrule.data import Split, prepare
from chainrule.nn import Params
from chainrule.paramserver.interface import ParamServer
from chainrule.paramserver.interface import ThetaStatus as ParamServerStatus
from chainrule.paramserver.state import (
    OutOfOrderError,
    ParameterStore,
    PlannedStep,
    StepPlan,
    ThetaNotFoundError,
)
from chainrule.scheduler.core import Completion, SchedulerCore, Task
from chainrule.scheduler.job import Failure
from chainrule.spec import JobSpec, total_steps
from chainrule.store.blobs import BlobStore
from chainrule.store.datasets import DatasetStore
from chainrule.store.diagnostics import DiagnosticsStore
from chainrule.store.jobs import (
    DEFAULT_PHASES,
    TERMINAL,
    TRANSITIONS,
    JobNotFoundError,
    JobRecord,
    JobStatus,
    StatusTransition,
)
from chainrule.store.metrics import MetricPoint, decode_point, encode_point
from chainrule.worker.compute import Gradient, JobCache, build_cache, task_gradient
from tests.support.examples import example_spec
from tests.unit.fakes import MemoryCheckpoints

PREFIX = "test"

# -- in-memory collaborators ----------------------------------------------------------


class FakeJobs:
    """Job records in a dict, with JobStore's lifecycle rules and real JobRecords."""

    def __init__(self) -> None:
        self.records: dict[str, JobRecord] = {}
        self.points: dict[str, list[MetricPoint]] = {}
        self.stops: set[str] = set()  # jobs a user asked to stop
        self.workers: dict[str, tuple[int, int]] = {}  # job id -> (active, lost)

    def add(self, spec: JobSpec) -> str:
        job_id = f"job{len(self.records) + 1}"
        now = datetime.now(UTC)
        phase = DEFAULT_PHASES[JobStatus.PENDING]
        self.records[job_id] = JobRecord(
            id=job_id,
            name=spec.name,
            status=JobStatus.PENDING,
            phase=phase,
            message="",
            failure_reason=None,
            step=0,
            total_steps=total_steps(spec),
            created_at=now,
            started_at=None,
            ended_at=None,
            spec=spec,
            status_transitions=(StatusTransition(JobStatus.PENDING, phase, "", None, now),),
        )
        self.points[job_id] = []
        return job_id

    def get(self, job_id: str) -> JobRecord | None:
        return self.records.get(job_id)

    def record(self, job_id: str) -> JobRecord:
        record = self.records.get(job_id)
        if record is None:
            raise JobNotFoundError(f"no job {job_id!r}")
        return record

    def set_status(
        self,
        job_id: str,
        status: str,
        phase: str | None = None,
        message: str | None = None,
        reason: str | None = None,
    ) -> JobRecord:
        target = JobStatus(status)
        if target is JobStatus.FAILED and not reason:
            raise ValueError("a FAILED job needs a reason")
        if reason is not None and target is not JobStatus.FAILED:
            raise ValueError(f"only FAILED takes a reason; got reason {reason!r} for {target}")
        return self._move(job_id, target, phase, message, reason)

    def set_phase(self, job_id: str, phase: str, message: str | None = None) -> JobRecord:
        return self._move(job_id, None, phase, message, None)

    def refresh_message(self, job_id: str, phase: str, message: str) -> bool:
        old = self.record(job_id)
        if old.phase != phase:
            return False
        self.records[job_id] = dataclasses.replace(old, message=message)
        return True

    def _move(
        self,
        job_id: str,
        target: JobStatus | None,
        phase: str | None,
        message: str | None,
        reason: str | None,
    ) -> JobRecord:
        old = self.record(job_id)
        new = old.status if target is None else target
        if new not in TRANSITIONS.get(old.status, ()):
            raise ValueError(f"job {job_id} is {old.status}; it cannot move to {new}")
        now = datetime.now(UTC)
        if phase is None:
            phase = old.phase if new is old.status else DEFAULT_PHASES[new]
        started = now if new is JobStatus.RUNNING and old.started_at is None else old.started_at
        record = dataclasses.replace(
            old,
            status=new,
            phase=phase,
            message=message or "",
            failure_reason=reason if reason is not None else old.failure_reason,
            started_at=started,
            ended_at=now if new in TERMINAL else old.ended_at,
            status_transitions=(
                *old.status_transitions,
                StatusTransition(new, phase, message or "", reason, now),
            ),
        )
        self.records[job_id] = record
        return record

    def set_progress(self, job_id: str, step: int) -> None:
        if not isinstance(step, int) or isinstance(step, bool) or step < 0:
            raise ValueError(f"step must be an integer >= 0; got {step!r}")
        record = self.record(job_id)
        if record.status is not JobStatus.RUNNING:
            raise ValueError(f"job {job_id} is {record.status}; progress only while RUNNING")
        if step > record.total_steps:
            raise ValueError(f"step must lie in [0, {record.total_steps}]; got {step}")
        self.records[job_id] = dataclasses.replace(record, step=step)

    def append_metrics(
        self, job_id: str, point: Mapping[str, object], progress: int | None = None
    ) -> str:
        fields = encode_point(point, time.time())  # the store's own validation
        record = self.record(job_id)
        self.points[job_id].append(decode_point(fields))
        running = record.status is JobStatus.RUNNING
        if progress is not None and running and progress <= record.total_steps:
            self.records[job_id] = dataclasses.replace(record, step=progress)  # as the script
        return f"{len(self.points[job_id])}-0"

    def append_metrics_many(
        self, job_id: str, points: list[dict[str, Any]], progress: int | None = None
    ) -> list[str]:
        ids = [self.append_metrics(job_id, p) for p in points[:-1]]
        return [*ids, self.append_metrics(job_id, points[-1], progress)]

    def stop_requested(self, job_id: str) -> bool:
        return job_id in self.stops

    def set_workers(self, job_id: str, active: int, lost: int) -> None:
        self.workers[job_id] = (active, lost)


class FakeRpcError(grpc.RpcError):  # type: ignore[misc]
    def __init__(self, code: grpc.StatusCode, details: str = "") -> None:
        super().__init__(f"{code.name}: {details}")
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


@contextmanager
def rpc_errors() -> Iterator[None]:
    """The parameter server's domain errors as the client sees them (its servicer's map)."""
    try:
        yield
    except ThetaNotFoundError as e:
        raise FakeRpcError(grpc.StatusCode.NOT_FOUND, str(e)) from e
    except OutOfOrderError as e:
        raise FakeRpcError(grpc.StatusCode.FAILED_PRECONDITION, str(e)) from e
    except ValueError as e:
        raise FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT, str(e)) from e


class InlinePublisher:
    """The scheduler's step publisher without its thread: work runs when submitted, so
    a test sees plans registered and points written as soon as a step closes."""

    def submit(self, work: Callable[[], None]) -> None:
        work()

    def drain(self, timeout: float = 60.0) -> bool:
        return True


class FakeParamServer(ParamServer):
    """The real ParameterStore behind the ParamServer protocol, with errors as gRPC
    status codes the way ParamServerClient raises them, minus the network."""

    def __init__(self) -> None:
        self.checkpoints = MemoryCheckpoints()
        self.store = ParameterStore(self.checkpoints)
        self.applied: list[tuple[str, int, list[str], float]] = []
        self.final: dict[str, Params] = {}  # θ as it was when the job was dropped
        self.create_failures: list[Exception] = []
        self.apply_failure: Exception | None = None
        self.drop_failure: Exception | None = None

    def create_job(
        self,
        job_id: str,
        params: Params,
        optimizer: str,
        hyper: Mapping[str, float] | None = None,
        flags: Mapping[str, bool] | None = None,
    ) -> tuple[int, bool]:
        if self.create_failures:
            raise self.create_failures.pop(0)
        with rpc_errors():
            options = {**(hyper or {}), **(flags or {})}
            return self.store.create(job_id, params, optimizer, options)

    def pull(
        self, job_id: str, have_version: int = -1, min_version: int = 0, wait_seconds: float = 0.0
    ) -> tuple[int, Params | None]:
        with rpc_errors():
            job = self.store.job(job_id)
            with job.lock:
                if not job.wait_for(min_version, wait_seconds):
                    raise OutOfOrderError(f"version {min_version} not reached")
                if have_version == job.version:
                    return job.version, None
                return job.version, {k: v.copy() for k, v in job.params.items()}

    def push(
        self, job_id: str, task_id: str, base_version: int, grads: Params, samples: int, loss: float
    ) -> bool:
        with rpc_errors(), self._recording_plans(job_id, task_id):
            return self.store.push(job_id, task_id, base_version, grads, samples, loss)

    def push_pull(self, *args: Any, **kwargs: Any) -> tuple[int, Params | None]:
        raise NotImplementedError("the simulated workers push, then pull: no thread to wait in")

    def plan_run(
        self, job_id: str, plans: Sequence[PlannedStep], epoch: int = 0
    ) -> tuple[int, bool]:
        """One plan at a time, so that each plan the store applies is recorded."""
        if self.apply_failure is not None:
            raise self.apply_failure
        for p in plans:
            planned = StepPlan(
                tuple(p.task_ids), p.lr, p.quorum or len(p.task_ids), False, "", epoch
            )
            with rpc_errors(), self._recording_plans(job_id, None, planned):
                version, duplicate = self.store.plan_run(job_id, [p], epoch)
        return version, duplicate

    @contextmanager
    def _recording_plans(
        self, job_id: str, task_id: str | None, planned: StepPlan | None = None
    ) -> Iterator[None]:
        """A plan this call lets the store apply is recorded in ``applied``, as an Apply
        would be: (job, step, the task ids summed, lr)."""
        job = self.store._jobs.get(job_id)
        if job is None:
            yield
            return
        version = job.version
        plan = planned or job.plans.get(version)
        buffered = set(job.buffers) | {task_id}
        yield
        if job.version > version and plan is not None:
            arrived = [t for t in plan.task_ids if t in buffered][: plan.needed]
            self.applied.append((job_id, version, arrived, plan.lr))

    def apply(
        self,
        job_id: str,
        step: int,
        task_ids: list[str],
        lr: float,
        checkpoint: bool = False,
        scheduler_state: str = "",
    ) -> tuple[int, bool]:
        if self.apply_failure is not None:
            raise self.apply_failure
        with rpc_errors():
            version, duplicate = self.store.apply(
                job_id, step, task_ids, lr, checkpoint, scheduler_state
            )
        self.applied.append((job_id, step, list(task_ids), lr))
        return version, duplicate

    def discard(self, job_id: str, task_ids: list[str]) -> int:
        with rpc_errors():
            return self.store.discard(job_id, task_ids)

    def status(self, job_id: str, log: bool = False) -> ParamServerStatus:
        with rpc_errors():
            return _status(*self.store.restore(job_id, only_if_missing=True), log)

    def restore(self, job_id: str, at_most: int | None = None) -> ParamServerStatus:
        with rpc_errors():
            return _status(*self.store.restore(job_id, at_most=at_most))

    def drop_job(
        self, job_id: str, final_checkpoint: bool = False, scheduler_state: str = ""
    ) -> bool:
        if self.drop_failure is not None:
            raise self.drop_failure
        if self.has_job(job_id):
            self.final[job_id] = self.theta(job_id)[1]
        return self.store.drop(job_id, final_checkpoint, scheduler_state)

    def close(self) -> None:
        pass

    def has_job(self, job_id: str) -> bool:
        """Whether θ of the job is held in memory (asking through pull would restore it
        from its checkpoint)."""
        return job_id in self.store._jobs

    def theta(self, job_id: str) -> tuple[int, Params]:
        version, params = self.pull(job_id, -1)
        assert params is not None
        return version, params


def _status(job: Any, restored: bool, log: bool = False) -> ParamServerStatus:
    with job.lock:
        return ParamServerStatus(
            job.version,
            job.checkpoint_version,
            job.scheduler_state,
            restored,
            tuple(job.applied_steps),
            tuple(job.log) if log else (),
        )


class FakeBlobs(BlobStore):
    def __init__(self) -> None:  # no Redis client
        self.values: dict[str, bytes] = {}

    def put(self, key: str, data: bytes) -> None:
        self.values[key] = bytes(data)

    def get(self, key: str) -> bytes:
        if key not in self.values:
            raise KeyError(f"nothing stored at {key!r}")
        return self.values[key]

    def delete(self, key: str) -> None:
        self.values.pop(key, None)


class FakeDiagnostics(DiagnosticsStore):
    def __init__(self) -> None:  # no Redis client
        self.entries: dict[str, list[dict[str, Any]]] = {}

    def append(self, job_id: str, step: int, layers: Sequence[dict[str, Any]]) -> None:
        self.entries.setdefault(job_id, []).append({"step": step, "layers": list(layers)})

    def append_many(
        self, job_id: str, entries: Sequence[tuple[int, Sequence[dict[str, Any]]]]
    ) -> None:
        for step, layers in entries:
            self.append(job_id, step, layers)

    def series(self, job_id: str) -> list[dict[str, Any]]:
        return list(self.entries.get(job_id, []))


class FakeDatasets(DatasetStore):
    def __init__(self) -> None:  # no Redis client; no uploads in these tests
        pass

    def data(self, dataset_id: str) -> bytes:
        raise KeyError(f"no uploaded dataset {dataset_id!r}")


@dataclass
class Stack:
    core: SchedulerCore
    jobs: FakeJobs
    ps: FakeParamServer
    blobs: FakeBlobs
    diagnostics: FakeDiagnostics
    acks: list[str] = field(default_factory=list)


@dataclass
class SimWorker:
    """A worker in the test's thread: next_task, pull, compute, push, complete."""

    stack: Stack
    worker_id: str
    caches: dict[str, JobCache] = field(default_factory=dict)
    incarnation: str = ""
    in_hand: list[Task] = field(default_factory=list)  # the rest of a run handed out (sync)

    def register(self) -> SimWorker:
        self.stack.core.register(self.worker_id, "testhost", self.incarnation)
        return self

    def take(self) -> Task | None:
        """The next task of the run in hand, else a new one from the scheduler (this
        worker completes a run's tasks one by one; the real one sends them together)."""
        self.in_hand = [t for t in self.in_hand if t.job_id in self.stack.core.active]
        if self.in_hand and self.stack.ps.theta(self.in_hand[0].job_id)[0] != (
            self.in_hand[0].base_version
        ):  # θ is not at the next task's step: the run ends, the rest is handed back
            self.stack.core.release(self.worker_id, [t.task_id for t in self.in_hand])
            self.in_hand.clear()
        if self.in_hand:  # (a real worker's pushes would fail once the job ended)
            return self.in_hand.pop(0)
        task = self.stack.core.next_task(self.worker_id, 0, self.incarnation)
        if task is not None:
            self.in_hand = list(task.following)
        return task

    def compute(self, task: Task) -> Gradient:
        """Compute and push ``task``'s gradient, as the worker loop does before completing."""
        cache = self.caches.get(task.job_id)
        if cache is None:
            dataset = self.stack.blobs.get(task.dataset_key)
            cache = self.caches[task.job_id] = build_cache(task.model_json, dataset)
        if cache.version != task.base_version:
            version, params = self.stack.ps.pull(task.job_id, cache.version)
            if params is not None:
                cache.params = params
            cache.version = version
        gradient = task_gradient(cache, task.indices)
        self.stack.ps.push(
            task.job_id,
            task.task_id,
            task.base_version,
            gradient.grads,
            gradient.samples,
            gradient.loss,
        )
        return gradient

    def complete(self, task: Task, gradient: Gradient) -> None:
        self.stack.core.complete(
            Completion(
                worker_id=self.worker_id,
                task_id=task.task_id,
                job_id=task.job_id,
                step=task.step,
                loss=gradient.loss,
                samples=gradient.samples,
                layers=[d.to_dict() for d in gradient.layers],
                incarnation=self.incarnation,
            )
        )

    def fail(
        self,
        task: Task,
        loss: float = 0.0,
        samples: int = 0,
        error: str = "",
        failure: Failure = Failure.WORKER,
        code: grpc.StatusCode | None = None,
        target: str = "",
        unanswered_s: float = 0.0,
    ) -> None:
        """Report ``task`` failed; ``code``, ``target`` and ``unanswered_s``: what the
        parameter server said, which one, and how long the client tried (failure
        PARAMSERVER)."""
        self.stack.core.complete(
            Completion(
                self.worker_id,
                task.task_id,
                task.job_id,
                task.step,
                loss,
                samples,
                error,
                failure if error else Failure.NONE,
                code,
                paramserver_target=target,
                paramserver_unanswered_s=unanswered_s,
                incarnation=self.incarnation,
            )
        )

    def run(self, task: Task) -> Gradient:
        gradient = self.compute(task)
        self.complete(task, gradient)
        return gradient


class ManualClock:
    """Monotonic seconds that move only when a test says so (``advance``)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_stack(lease_seconds: float = 10.0, clock: Callable[[], float] = time.monotonic) -> Stack:
    jobs, ps = FakeJobs(), FakeParamServer()
    blobs, diagnostics = FakeBlobs(), FakeDiagnostics()
    acks: list[str] = []
    core = SchedulerCore(
        jobs,
        blobs,
        FakeDatasets(),
        diagnostics,
        ps,
        PREFIX,
        acks.append,
        lease_seconds,
        publisher=InlinePublisher(),
        clock=clock,
    )
    return Stack(core, jobs, ps, blobs, diagnostics, acks)


def job_spec(samples: int = 200, **training: Any) -> JobSpec:
    """examples/xor.json (two task slots), made small: 200 rows, 4 steps."""
    return JobSpec.model_validate(
        example_spec(
            dataset={"n_samples": samples},
            training={"steps": 4, "eval_every": 2, "batch_size": 16, **training},
        )
    )


def workers(stack: Stack, n: int) -> list[SimWorker]:
    return [SimWorker(stack, f"w{i + 1}").register() for i in range(n)]


def start(stack: Stack, spec: JobSpec, message_id: str = "m1") -> tuple[str, list[SimWorker]]:
    """A job admitted and started, with ``training.workers`` workers registered."""
    team = workers(stack, spec.training.workers)
    job_id = stack.jobs.add(spec)
    stack.core.admit(job_id, message_id)
    stack.core.tick()
    assert stack.jobs.record(job_id).status is JobStatus.RUNNING
    return job_id, team


def take_all(team: list[SimWorker]) -> list[tuple[SimWorker, Task]]:
    taken = [(w, w.take()) for w in team]
    return [(w, t) for w, t in taken if t is not None]


def run_to_end(stack: Stack, job_id: str, team: list[SimWorker], max_rounds: int = 500) -> None:
    for _ in range(max_rounds):
        if job_id not in stack.core.active:
            return
        for worker, task in take_all(team):
            worker.run(task)
    raise AssertionError(f"job {job_id} did not end within {max_rounds} rounds")


def load_npz(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return {name: z[name] for name in z.files}


def expected_split(spec: JobSpec) -> Split:
    """The rows a single process would prepare from the spec's seed."""
    name = spec.dataset.name
    assert name is not None
    return prepare(name, spec.dataset.samples, spec.dataset.holdout, spec.training.seed)

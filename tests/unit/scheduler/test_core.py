"""The scheduler's state machine, driven step by step with simulated workers.

The core gets in-memory collaborators: job records that follow JobStore's lifecycle
rules, the real ParameterStore (θ, buffers, the sample-weighted Apply, checkpoints)
behind the ParamServer protocol, raising gRPC status codes as ParamServerClient does,
and dict-backed blob and diagnostics stores. Workers are simulated in the test's thread:
they take tasks, compute real gradients with the worker's own code, push them to the
parameter store and complete the task.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time

import grpc
import numpy as np
import pytest

from chainrule.data import Split, targets
from chainrule.nn import Params, make_optimizer
from chainrule.nn.train import accuracy
from chainrule.scheduler import admission as admission_module
from chainrule.scheduler.admission import StartFailure
from chainrule.scheduler.batches import job_rngs, make_shards, step_batches
from chainrule.scheduler.core import SchedulerCore, Task
from chainrule.scheduler.dispatch import MAX_TASK_ATTEMPTS
from chainrule.scheduler.job import Failure
from chainrule.spec import ModelSpec, build_mlp
from chainrule.store.blobs import dataset_key, model_key
from chainrule.store.jobs import (
    JobStatus,
)
from chainrule.worker.compute import Gradient
from tests.support.scheduler_sim import (
    PREFIX,
    FakeDatasets,
    FakeRpcError,
    InlinePublisher,
    ManualClock,
    SimWorker,
    Stack,
    expected_split,
    job_spec,
    load_npz,
    make_stack,
    run_to_end,
    start,
    take_all,
    workers,
)

# -- waiting for workers, starting ------------------------------------------------------


def test_a_job_waits_until_enough_workers_are_live(stack: Stack) -> None:
    spec = job_spec()  # training.workers = 2
    job_id = stack.jobs.add(spec)
    (first,) = workers(stack, 1)
    stack.core.admit(job_id, "m1")
    stack.core.tick()
    stack.core.tick()

    record = stack.jobs.record(job_id)
    assert (record.status, record.phase) == (JobStatus.PENDING, "waiting_for_workers")
    assert not stack.ps.has_job(job_id)
    assert first.take() is None
    assert stack.acks == []

    SimWorker(stack, "w2").register()
    stack.core.tick()

    record = stack.jobs.record(job_id)
    assert (record.status, record.phase) == (JobStatus.RUNNING, "training")
    assert record.message == "training (sync) with 2 task slots"
    assert record.started_at is not None
    assert stack.ps.theta(job_id)[0] == 0


def test_workers_whose_lease_ran_out_do_not_count_towards_starting(stack: Stack) -> None:
    workers(stack, 2)
    stack.core.workers["w2"].last_seen -= 60  # silent for longer than the 10 s lease
    job_id = stack.jobs.add(job_spec())
    stack.core.admit(job_id, "m1")
    stack.core.tick()
    assert stack.jobs.record(job_id).status is JobStatus.PENDING
    assert stack.core.live_workers() == {"w1"}


def test_starting_installs_seeded_theta_and_data_and_queues_one_task_per_slot(
    stack: Stack,
) -> None:
    spec = job_spec(samples=300, workers=3, batch_size=20, seed=9)
    job_id, team = start(stack, spec)

    # θ₀, the data and the step-0 rows are what a single process with the seed computes
    init_rng, batch_rng = job_rngs(9)
    version, theta = stack.ps.theta(job_id)
    assert version == 0
    for name, p in build_mlp(spec.model).init(init_rng).items():
        np.testing.assert_array_equal(theta[name], p)
    split = Split.from_bytes(stack.blobs.get(dataset_key(PREFIX, job_id)))
    want = expected_split(spec)
    np.testing.assert_array_equal(split.X_train, want.X_train)
    np.testing.assert_array_equal(split.y_test, want.y_test)
    step0 = step_batches(make_shards(len(want.X_train), 3, batch_rng), 20, batch_rng)

    tasks = [t for _, t in take_all(team)]
    assert len(tasks) == 3
    for task, rows in zip(tasks, step0, strict=True):
        assert (task.job_id, task.step, task.base_version) == (job_id, 0, 0)
        assert task.dataset_key == dataset_key(PREFIX, job_id)
        assert ModelSpec.model_validate_json(task.model_json) == spec.model
        np.testing.assert_array_equal(task.indices, rows)


def test_a_pending_job_admitted_twice_is_started_once(stack: Stack) -> None:
    team = workers(stack, 3)
    job_id = stack.jobs.add(job_spec())
    stack.core.admit(job_id, "m1")
    stack.core.admit(job_id, "m1")
    stack.core.tick()
    stack.core.tick()
    assert len(take_all(team)) == 2  # one task per slot, not per admission


# -- handing out tasks ------------------------------------------------------------------


def test_each_task_is_handed_out_once(stack: Stack) -> None:
    _, team = start(stack, job_spec())
    third = SimWorker(stack, "w3").register()
    first, second = team[0].take(), team[1].take()
    assert first is not None and second is not None
    assert first.task_id != second.task_id
    assert (first.worker_id, second.worker_id) == ("w1", "w2")
    assert not set(first.indices.tolist()) & set(second.indices.tolist())
    assert third.take() is None


def test_next_task_without_waiting_returns_none_at_once_when_nothing_is_queued(
    stack: Stack,
) -> None:
    t0 = time.monotonic()
    assert stack.core.next_task("w1", 0) is None
    assert time.monotonic() - t0 < 0.5
    assert "w1" in stack.core.workers  # asking for work counts as a heartbeat


# -- closing a step ---------------------------------------------------------------------


def test_a_step_closes_only_when_all_of_its_tasks_have_completed(stack: Stack) -> None:
    # 10 rows, 8 for training in shards of 3, 3 and 2: tasks of unequal size
    spec = job_spec(samples=10, workers=3, batch_size=8, steps=3, eval_every=10)
    job_id, team = start(stack, spec)
    taken = take_all(team)
    gradients = []
    for worker, task in taken:
        assert stack.ps.applied == []  # the plan applies when its last gradient is in
        gradients.append(worker.compute(task))
    assert sorted(g.samples for g in gradients) == [2, 3, 3]
    assert stack.ps.theta(job_id)[0] == 1

    for (worker, task), gradient in zip(taken[:2], gradients[:2], strict=True):
        worker.complete(task, gradient)
        assert stack.jobs.points[job_id] == []
        assert stack.jobs.record(job_id).step == 0
        assert all(w.take() is None for w in team)  # no step-1 task before step 0 closes

    worker, task = taken[2]
    worker.complete(task, gradients[2])

    assert len(stack.ps.applied) == 1
    _, step, task_ids, lr = stack.ps.applied[0]
    assert (step, sorted(task_ids), lr) == (0, sorted(t.task_id for _, t in taken), 0.5)
    assert stack.ps.theta(job_id)[0] == 1
    assert stack.jobs.record(job_id).step == 1
    (point,) = stack.jobs.points[job_id]
    weighted = sum(g.loss * g.samples for g in gradients) / sum(g.samples for g in gradients)
    assert point["step"] == 1
    assert point["loss"] == pytest.approx(weighted, rel=1e-12)
    assert point["loss"] != pytest.approx(np.mean([g.loss for g in gradients]), rel=1e-9)
    assert point["active_workers"] == 3
    assert point["lr"] == 0.5
    assert "eval_loss" not in point
    next_tasks = [t for _, t in take_all(team)]
    assert [(t.step, t.base_version) for t in next_tasks] == [(1, 1)] * 3


def test_one_sync_step_is_one_sgd_step_on_the_union_of_the_task_rows(stack: Stack) -> None:
    spec = job_spec(samples=10, workers=3, batch_size=8, steps=3, eval_every=10)
    job_id, team = start(stack, spec)
    _, theta0 = stack.ps.theta(job_id)
    taken = take_all(team)
    union = np.concatenate([task.indices for _, task in taken])
    for worker, task in taken:
        worker.run(task)

    net, split = build_mlp(spec.model), expected_split(spec)
    y = targets(split.y_train[union], net.layers[-1], net.head.loss)
    loss, grads = net.loss_and_grad(theta0, split.X_train[union], y)
    opt = make_optimizer("sgd", momentum=0.9)
    want = {k: v.copy() for k, v in theta0.items()}
    opt.update_(want, grads, opt.init(want), 0.5)

    _, theta1 = stack.ps.theta(job_id)
    for name in want:
        np.testing.assert_allclose(theta1[name], want[name], rtol=1e-5, atol=1e-6)
    assert stack.jobs.points[job_id][0]["loss"] == pytest.approx(loss, rel=1e-5)


def test_unknown_and_repeated_completions_change_nothing(stack: Stack) -> None:
    job_id, team = start(stack, job_spec())
    (w1, t1), (w2, t2) = take_all(team)
    g1 = w1.run(t1)

    w1.complete(t1, g1)  # the same completion again
    w1.complete(dataclasses.replace(t1, task_id=f"{job_id}:0:9:abcdef"), g1)  # never issued
    w1.complete(dataclasses.replace(t1, job_id="job99"), g1)  # no such job
    assert stack.ps.applied == []
    assert stack.jobs.points[job_id] == []
    assert stack.jobs.record(job_id).status is JobStatus.RUNNING

    g2 = w2.run(t2)
    assert [sorted(ids) for _, _, ids, _ in stack.ps.applied] == [sorted([t1.task_id, t2.task_id])]
    w2.complete(t2, g2)  # a repeat of the completion that closed step 0
    assert len(stack.ps.applied) == 1
    assert [p["step"] for p in stack.jobs.points[job_id]] == [1]


# -- ending -----------------------------------------------------------------------------


def test_a_job_succeeds_after_its_steps_and_its_model_is_saved(stack: Stack) -> None:
    spec = job_spec(steps=5, eval_every=2)
    job_id, team = start(stack, spec, message_id="m7")
    run_to_end(stack, job_id, team)

    record = stack.jobs.record(job_id)
    assert (record.status, record.phase, record.failure_reason) == (
        JobStatus.SUCCEEDED,
        "ended",
        None,
    )
    assert record.step == 5
    assert record.ended_at is not None
    assert [s for _, s, _, _ in stack.ps.applied] == [0, 1, 2, 3, 4]
    assert stack.acks == ["m7"]
    assert not stack.ps.has_job(job_id)
    assert all(w.take() is None for w in team)

    # the saved model is θ after the last Apply, and the last evaluation is of it
    saved = load_npz(stack.blobs.get(model_key(PREFIX, job_id)))
    assert saved.keys() == stack.ps.final[job_id].keys()
    for name, p in stack.ps.final[job_id].items():
        np.testing.assert_array_equal(saved[name], p)
    last = stack.jobs.points[job_id][-1]
    net, split = build_mlp(spec.model), expected_split(spec)
    y_test = targets(split.y_test, net.layers[-1], net.head.loss)
    assert last["eval_loss"] == pytest.approx(float(net.objective(saved, split.X_test, y_test)))
    assert last["eval_accuracy"] == accuracy(net, saved, split.X_test, split.y_test)
    assert record.message == f"trained 5 steps; holdout accuracy {last['eval_accuracy']:.4f}"

    assert [p["step"] for p in stack.jobs.points[job_id]] == [1, 2, 3, 4, 5]
    assert [e["step"] for e in stack.diagnostics.series(job_id)] == [1, 2, 3, 4, 5]
    layers = stack.diagnostics.series(job_id)[0]["layers"]
    assert [(d["layer"], d["activation"]) for d in layers] == [
        ("dense1", "tanh"),
        ("dense2", "sigmoid"),
    ]


@pytest.mark.parametrize(
    ("steps", "eval_every", "evaluated"),
    [(5, 2, [2, 4, 5]), (4, 2, [2, 4]), (3, 5, [3]), (3, 1, [1, 2, 3])],
)
def test_evaluation_every_eval_every_steps_and_at_the_end(
    stack: Stack, steps: int, eval_every: int, evaluated: list[int]
) -> None:
    job_id, team = start(stack, job_spec(steps=steps, eval_every=eval_every))
    run_to_end(stack, job_id, team)
    points = stack.jobs.points[job_id]
    assert [p["step"] for p in points if "eval_loss" in p] == evaluated
    assert [p["step"] for p in points if "eval_accuracy" in p] == evaluated
    for p in points:
        if "eval_loss" in p:
            assert math.isfinite(p["eval_loss"]) and p["eval_loss"] > 0
            assert 0.0 <= p["eval_accuracy"] <= 1.0


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan], ids=str)
@pytest.mark.parametrize("at_step", [0, 2])
def test_a_non_finite_loss_fails_the_job_as_diverged(
    stack: Stack, bad: float, at_step: int
) -> None:
    job_id, team = start(stack, job_spec(steps=5))
    for _ in range(at_step):
        for worker, task in take_all(team):
            worker.run(task)
    (w1, t1), (w2, t2) = take_all(team)
    assert t1.step == at_step

    w1.fail(t1, loss=bad, samples=len(t1.indices))

    record = stack.jobs.record(job_id)
    assert record.status is JobStatus.FAILED and record.phase == "ended"
    assert record.failure_reason is not None
    assert record.failure_reason.startswith(f"diverged: loss became {bad} at step {at_step}")
    assert record.message == record.failure_reason
    assert stack.acks == ["m1"]
    assert not stack.ps.has_job(job_id)
    assert model_key(PREFIX, job_id) not in stack.blobs.values
    w2.fail(t2, loss=0.69, samples=len(t2.indices))  # the other task, late: ignored
    assert stack.jobs.record(job_id) == record
    assert len(stack.ps.applied) == at_step
    assert all(w.take() is None for w in team)


def test_a_divergence_a_worker_reports_fails_the_job_with_its_reason(stack: Stack) -> None:
    job_id, team = start(stack, job_spec())
    (w1, t1), _ = take_all(team)
    error = "diverged: loss 0.71, non-finite gradient in ['dense1.W']"
    w1.fail(t1, loss=0.71, samples=16, error=error, failure=Failure.DIVERGED)
    record = stack.jobs.record(job_id)
    assert record.status is JobStatus.FAILED
    assert record.failure_reason == f"{error} at step 0"
    assert stack.acks == ["m1"]


def test_a_task_that_fails_is_tried_again_and_fails_the_job_after_three_attempts(
    stack: Stack,
) -> None:
    job_id, team = start(stack, job_spec())
    (w1, t1), (w2, t2) = take_all(team)
    w2.fail(t2, error="MemoryError: ")  # e.g. one worker short of memory
    assert stack.jobs.record(job_id).status is JobStatus.RUNNING
    assert w2.take() is None  # not again on the worker it failed on, while w1 lives
    w1.run(t1)
    again = w1.take()
    assert again is not None and again.task_id == t2.task_id  # back at the head of the queue
    w1.fail(again, error="nothing stored at 'test:job:job1:data'")
    third = SimWorker(stack, "w3").register()
    assert w1.take() is None and w2.take() is None  # w3 has not failed it
    last = third.take()
    assert last is not None and last.task_id == t2.task_id
    third.fail(last, error="nothing stored at 'test:job:job1:data'")
    record = stack.jobs.record(job_id)
    assert record.status is JobStatus.FAILED
    assert record.failure_reason == (
        "step 0 could not be computed in 3 attempts: worker w2: MemoryError: ; "
        "worker w1: nothing stored at 'test:job:job1:data'; "
        "worker w3: nothing stored at 'test:job:job1:data'"
    )
    assert stack.acks == ["m1"]
    assert not stack.ps.has_job(job_id)


def test_a_task_that_failed_on_the_only_worker_is_tried_again_on_it(stack: Stack) -> None:
    """With no other live worker to try it, the one it failed on tries it again."""
    job_id, (w1,) = start(stack, job_spec(workers=1))
    task = w1.take()
    assert task is not None
    w1.fail(task, error="MemoryError: ")
    again = w1.take()
    assert again is not None and again.task_id == task.task_id
    w1.run(again)
    assert stack.core.active[job_id].version == 1


def test_a_task_that_fails_once_is_done_by_another_worker_and_the_job_goes_on(
    stack: Stack,
) -> None:
    job_id, (w1, w2) = start(stack, job_spec())
    (_, t1), (_, t2) = take_all([w1, w2])
    w2.fail(t2, error="ConnectionError: Redis went away")
    w1.run(t1)
    retried = w1.take()
    assert retried is not None and retried.task_id == t2.task_id
    w1.run(retried)
    assert stack.core.active[job_id].version == 1
    assert stack.jobs.points[job_id][-1]["reassigned"] == 1


def test_a_step_whose_apply_is_refused_as_out_of_order_is_queued_again(stack: Stack) -> None:
    job_id, team = start(stack, job_spec())
    for worker, task in take_all(team):
        worker.run(task)
    (w1, t1), (w2, t2) = take_all(team)
    w1.run(t1)
    # a gradient the parameter server does not have (it restarted and lost its buffers)
    w2.complete(t2, Gradient(loss=0.5, grads={}, samples=len(t2.indices)))

    assert stack.jobs.record(job_id).status is JobStatus.RUNNING
    assert [step for _, step, _, _ in stack.ps.applied] == [0]
    again = take_all(team)
    assert [(t.step, t.base_version) for _, t in again] == [(1, 1), (1, 1)]
    assert not {t.task_id for _, t in again} & {t1.task_id, t2.task_id}
    for worker, task in again:
        worker.run(task)
    assert [step for _, step, _, _ in stack.ps.applied] == [0, 1]
    assert stack.ps.theta(job_id)[0] == 2


def test_a_step_that_fails_to_apply_otherwise_fails_the_job_instead_of_hanging(
    stack: Stack,
) -> None:
    job_id, team = start(stack, job_spec())
    for worker, task in take_all(team):
        worker.run(task)
    stack.ps.apply_failure = RuntimeError("checkpoint store unreachable")
    for worker, task in take_all(team):
        worker.run(task)  # step 1 is applied; registering step 2's plan fails

    deadline = time.monotonic() + 10  # the failure is handled off the closing thread
    while stack.jobs.record(job_id).status is not JobStatus.FAILED:
        assert time.monotonic() < deadline, stack.jobs.record(job_id)
        time.sleep(0.01)
    record = stack.jobs.record(job_id)
    assert record.failure_reason == (
        "could not complete step 2: RuntimeError: checkpoint store unreachable"
    )
    assert stack.acks == ["m1"]
    assert not stack.ps.has_job(job_id)
    assert all(w.take() is None for w in team)


def test_a_parameter_server_gone_at_the_end_does_not_keep_the_job_open(stack: Stack) -> None:
    job_id, team = start(stack, job_spec())
    (w1, t1), _ = take_all(team)
    stack.ps.drop_failure = FakeRpcError(grpc.StatusCode.UNAVAILABLE)
    w1.fail(t1, loss=math.inf, samples=16)
    assert stack.jobs.record(job_id).status is JobStatus.FAILED
    assert stack.acks == ["m1"]


def test_a_dataset_that_cannot_be_prepared_fails_the_job(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreadable(*args: object) -> Split:
        raise OSError("digits: file is truncated")

    monkeypatch.setattr(admission_module, "prepare_dataset", unreadable)
    job_id, _ = stack.jobs.add(job_spec()), workers(stack, 2)
    stack.core.admit(job_id, "m1")
    stack.core.tick()
    record = stack.jobs.record(job_id)
    assert record.status is JobStatus.FAILED
    assert record.failure_reason == "bad dataset: digits: file is truncated"
    assert stack.acks == ["m1"]
    assert not stack.ps.has_job(job_id)


# -- lost workers -----------------------------------------------------------------------


def test_the_task_of_a_worker_whose_lease_ran_out_goes_to_another_worker(
    stack: Stack,
) -> None:
    job_id, team = start(stack, job_spec())
    spare = SimWorker(stack, "w3").register()
    (_, t1), (w2, t2) = take_all(team)
    assert spare.take() is None

    stack.core.workers["w1"].last_seen -= 60  # silent for longer than the 10 s lease
    stack.core.tick()

    assert "w1" not in stack.core.workers
    retried = spare.take()
    assert retried is not None
    assert (retried.task_id, retried.worker_id) == (t1.task_id, "w3")
    np.testing.assert_array_equal(retried.indices, t1.indices)
    assert spare.take() is None  # w2's task is still w2's
    spare.run(retried)
    w2.run(t2)
    assert [sorted(ids) for _, _, ids, _ in stack.ps.applied] == [sorted([t1.task_id, t2.task_id])]
    point = stack.jobs.points[job_id][0]
    assert (point["active_workers"], point.get("reassigned")) == (2, 1)


def test_a_task_whose_holders_all_die_fails_its_job_after_the_attempt_limit(
    stack: Stack,
) -> None:
    """A task that kills each worker that takes it (the out-of-memory killer: no report,
    ever) is not handed round for ever: at MAX_TASK_ATTEMPTS lost holders the job FAILS,
    naming the step and each lost worker; the other slot's worker is not blamed."""
    job_id, team = start(stack, job_spec())
    (w1, t1), (w2, _) = take_all(team)
    holders = [w1.worker_id]
    for k in range(MAX_TASK_ATTEMPTS - 1):
        stack.core.workers[holders[-1]].last_seen -= 60  # it died computing t1
        stack.core.tick()
        assert stack.jobs.record(job_id).status == "RUNNING"  # another worker may do it
        spare = SimWorker(stack, f"spare{k}").register()
        again = spare.take()
        assert again is not None and again.task_id == t1.task_id
        holders.append(spare.worker_id)
    stack.core.workers[holders[-1]].last_seen -= 60
    stack.core.tick()

    record = stack.jobs.record(job_id)
    assert record.status == "FAILED"
    reason = record.failure_reason or ""
    assert reason.startswith(f"step 0 could not be computed in {MAX_TASK_ATTEMPTS} attempts")
    for worker in holders:
        assert f"worker {worker}: lost while it held the task" in reason
    assert w2.worker_id not in reason
    assert job_id not in stack.core.active


def test_a_lease_expires_in_real_time() -> None:
    stack = make_stack(lease_seconds=0.5)
    _, team = start(stack, job_spec())
    (_, t1), (w2, _) = take_all(team)
    time.sleep(0.6)
    assert w2.take() is None  # w2 stays in touch; w1 does not  # w2 stays in touch; w1 does not
    stack.core.tick()
    assert set(stack.core.workers) == {"w2"}
    retried = w2.take()
    assert retried is not None and retried.task_id == t1.task_id


# -- admission of jobs that ended or that a dead scheduler was running ------------------


def test_an_ended_job_read_again_is_acknowledged_and_skipped(stack: Stack) -> None:
    job_id, team = start(stack, job_spec(steps=3))
    run_to_end(stack, job_id, team)
    applied = len(stack.ps.applied)

    stack.core.admit(job_id, "m2")
    stack.core.tick()

    assert stack.acks == ["m1", "m2"]
    assert stack.jobs.record(job_id).status is JobStatus.SUCCEEDED
    assert not stack.ps.has_job(job_id)
    assert all(w.take() is None for w in team)
    assert len(stack.ps.applied) == applied


@pytest.mark.parametrize("status", [JobStatus.FAILED, JobStatus.STOPPED])
def test_failed_stopped_and_unknown_jobs_are_acknowledged_and_skipped(
    stack: Stack, status: JobStatus
) -> None:
    team = workers(stack, 2)
    job_id = stack.jobs.add(job_spec())
    reason = "no workers" if status is JobStatus.FAILED else None
    stack.jobs.set_status(job_id, status, reason=reason)
    stack.core.admit(job_id, "m1")
    stack.core.admit("nosuchjob", "m2")
    stack.core.tick()
    assert stack.acks == ["m1", "m2"]
    assert stack.jobs.record(job_id).status is status
    assert not stack.ps.has_job(job_id)
    assert all(w.take() is None for w in team)


def successor(stack: Stack) -> Stack:
    """A new scheduler on the same Redis and parameter server, as after the old one died."""
    acks: list[str] = []
    core = SchedulerCore(
        stack.jobs,
        stack.blobs,
        FakeDatasets(),
        stack.diagnostics,
        stack.ps,
        PREFIX,
        acks.append,
        publisher=InlinePublisher(),
    )
    return Stack(core, stack.jobs, stack.ps, stack.blobs, stack.diagnostics, acks)


def test_a_job_a_dead_scheduler_was_running_resumes_from_its_checkpoint(stack: Stack) -> None:
    spec = job_spec(steps=6, checkpoint_every=2)
    job_id, team = start(stack, spec)
    rows: list[list[np.ndarray]] = []
    theta: list[Params] = []
    for _ in range(3):  # θ versions 1, 2 (checkpointed), 3
        taken = take_all(team)
        rows.append([task.indices for _, task in taken])
        theta.append(stack.ps.theta(job_id)[1])
        for worker, task in taken:
            worker.run(task)
    assert len(take_all(team)) == 2  # step 3 in flight when the scheduler dies

    # the scheduler dies; a new one reads the job's message again
    restarted = successor(stack)
    core, acks = restarted.core, restarted.acks
    new_team = workers(restarted, 2)
    core.admit(job_id, "m1")
    record = stack.jobs.record(job_id)
    assert (record.status, record.phase) == (JobStatus.RUNNING, "restoring")

    core.tick()
    assert stack.jobs.record(job_id).phase == "training"
    version, resumed = stack.ps.theta(job_id)
    assert version == 2
    for name, p in theta[2].items():
        np.testing.assert_array_equal(resumed[name], p)
    taken = take_all(new_team)
    assert [(t.step, t.base_version) for _, t in taken] == [(2, 2), (2, 2)]
    for (_, task), want in zip(taken, rows[2], strict=True):
        np.testing.assert_array_equal(task.indices, want)  # the minibatches it would have drawn

    for worker, task in taken:
        worker.run(task)
    run_to_end(restarted, job_id, new_team)
    assert stack.jobs.record(job_id).status is JobStatus.SUCCEEDED
    assert acks == ["m1"]
    steps = [(p["step"], p.get("restored_from")) for p in stack.jobs.points[job_id]]
    # step 3's point was not written yet (points go out a run at a time, and at every
    # checkpoint): the new scheduler recomputes step 3 from the checkpoint at 2, so no
    # step is missing from the series
    assert steps == [(1, None), (2, None), (3, 2), (4, None), (5, None), (6, None)]


def test_points_a_dead_leader_had_not_written_are_rebuilt_from_the_applied_step_log(
    stack: Stack,
) -> None:
    spec = job_spec(steps=6, checkpoint_every=2)
    job_id, team = start(stack, spec)
    for _ in range(2):  # θ versions 1, 2 (checkpointed)
        for worker, task in take_all(team):
            worker.run(task)
    written = stack.jobs.points[job_id]
    assert [p["step"] for p in written] == [1, 2]
    losses = [p["loss"] for p in written]
    # the leader dies with both points still in its publisher's queue: not in Redis
    stack.jobs.points[job_id] = []
    stack.jobs.records[job_id] = dataclasses.replace(stack.jobs.record(job_id), step=0)

    restarted = successor(stack)
    core = restarted.core
    new_team = workers(restarted, 2)
    core.admit(job_id, "m1")
    core.tick()
    assert stack.ps.theta(job_id)[0] == 2  # resumed at the checkpoint: 1 and 2 not redone
    rebuilt = stack.jobs.points[job_id]
    assert [(p["step"], p["samples_per_s"], p["active_workers"]) for p in rebuilt] == [
        (1, 0.0, 0),
        (2, 0.0, 0),
    ]
    assert [p["loss"] for p in rebuilt] == pytest.approx(losses)  # as the server applied them
    assert stack.jobs.record(job_id).step == 2
    run_to_end(restarted, job_id, new_team)
    assert stack.jobs.record(job_id).status is JobStatus.SUCCEEDED
    assert [p["step"] for p in stack.jobs.points[job_id]] == [1, 2, 3, 4, 5, 6]


def test_a_step_applied_just_before_theta_was_lost_gets_its_point_from_the_checkpoint(
    stack: Stack,
) -> None:
    """θ is lost (a parameter server restarted empty) after it applied and checkpointed a
    step whose completions never reached the scheduler: the job comes back at that
    checkpoint, past its last recorded step, and the step's point comes from the applied
    steps the checkpoint carries."""
    spec = job_spec(steps=4, checkpoint_every=2)
    job_id, team = start(stack, spec)
    for worker, task in take_all(team):  # θ version 1, recorded
        worker.run(task)
    pushed = [(w, t, w.compute(t)) for w, t in take_all(team)]  # step 1: applied, checkpointed
    assert stack.ps.theta(job_id)[0] == 2
    assert [p["step"] for p in stack.jobs.points[job_id]] == [1]  # its completions never came
    expected = sum(g.loss * g.samples for _, _, g in pushed) / sum(g.samples for *_, g in pushed)
    del stack.ps.store._jobs[job_id]  # the parameter server restarted empty
    worker, task, _ = pushed[0]
    worker.fail(
        task,
        error=f"parameter server said NOT_FOUND: unknown job {job_id!r}",
        failure=Failure.PARAMSERVER,
        code=grpc.StatusCode.NOT_FOUND,
    )
    points = stack.jobs.points[job_id]
    assert [p["step"] for p in points] == [1, 2]
    assert points[1]["loss"] == pytest.approx(expected)  # the loss as the server applied it
    assert stack.core.active[job_id].version == 2
    run_to_end(stack, job_id, team)
    assert stack.jobs.record(job_id).status is JobStatus.SUCCEEDED
    assert [p["step"] for p in stack.jobs.points[job_id]] == [1, 2, 3, 4]


def test_a_job_whose_start_failed_is_started_on_a_later_tick() -> None:
    clock = ManualClock()
    stack = make_stack(clock=clock)
    stack.ps.create_failures.append(FakeRpcError(grpc.StatusCode.UNAVAILABLE))
    team = workers(stack, 2)
    job_id = stack.jobs.add(job_spec())
    stack.core.admit(job_id, "m1")

    with pytest.raises(FakeRpcError):
        stack.core.tick()
    assert stack.jobs.record(job_id).status is JobStatus.PENDING
    assert all(w.take() is None for w in team)

    stack.core.tick()  # backing off: not tried again at once
    assert stack.jobs.record(job_id).status is JobStatus.PENDING
    clock.advance(StartFailure.FIRST_BACKOFF_S * 1.5)
    stack.core.tick()
    assert stack.jobs.record(job_id).status is JobStatus.RUNNING
    assert len(take_all(team)) == 2


def test_a_job_whose_start_keeps_failing_fails_after_its_pending_timeout(stack: Stack) -> None:
    """Retried with backoff while PENDING, one history entry for the phase however many
    attempts, then FAILED naming the last error once pending_timeout_s has passed."""
    stack.ps.create_failures.extend(FakeRpcError(grpc.StatusCode.UNAVAILABLE) for _ in range(100))
    workers(stack, 2)
    job_id = stack.jobs.add(job_spec(pending_timeout_s=0.6))
    stack.core.admit(job_id, "m1")
    ticks, deadline = 0, time.monotonic() + 5
    while stack.jobs.record(job_id).status is JobStatus.PENDING and time.monotonic() < deadline:
        with contextlib.suppress(FakeRpcError):
            stack.core.tick()
        ticks += 1
        time.sleep(0.01)
    record = stack.jobs.record(job_id)
    attempts = 100 - len(stack.ps.create_failures)
    assert record.status is JobStatus.FAILED
    assert 2 <= attempts < ticks / 4  # backed off: far fewer attempts than ticks
    assert record.failure_reason == (
        f"could not start within pending_timeout_s=0.6 ({attempts} attempts); the last "
        f"said: FakeRpcError: {FakeRpcError(grpc.StatusCode.UNAVAILABLE)}"
    )
    phases = [t.phase for t in record.status_transitions]
    assert phases.count("preparing") == 1, phases
    assert stack.acks == ["m1"]
    assert not stack.core.pending and not stack.core.start_failures


# -- stopping and membership ------------------------------------------------------------


def test_a_stop_request_ends_a_running_job_stopped_and_keeps_its_model(stack: Stack) -> None:
    job_id, team = start(stack, job_spec(steps=50))
    for worker, task in take_all(team):
        worker.run(task)
    stack.jobs.stops.add(job_id)
    stack.core.tick()
    record = stack.jobs.record(job_id)
    assert record.status is JobStatus.STOPPED
    assert record.message == "stopped by request at step 1"
    assert model_key(PREFIX, job_id) in stack.blobs.values
    assert stack.acks == ["m1"]
    assert not stack.ps.has_job(job_id)


def test_a_job_that_cannot_get_its_workers_fails_after_the_pending_timeout() -> None:
    clock = ManualClock()
    stack = make_stack(clock=clock)
    job_id = stack.jobs.add(job_spec(pending_timeout_s=0.05))
    workers(stack, 1)  # the job needs 2
    stack.core.admit(job_id, "m1")
    stack.core.tick()
    assert stack.jobs.record(job_id).status is JobStatus.PENDING
    clock.advance(0.1)
    stack.core.tick()
    record = stack.jobs.record(job_id)
    assert record.status is JobStatus.FAILED
    assert record.failure_reason == (
        "no workers: the job needs 2 and only 1 registered within pending_timeout_s=0.05"
    )
    assert stack.acks == ["m1"]


def test_membership_is_published_with_per_job_counts(stack: Stack) -> None:
    job_id, team = start(stack, job_spec(steps=50))
    for worker, task in take_all(team):
        worker.run(task)
    stack.core.publish_workers()
    assert stack.jobs.workers[job_id] == (2, 0)


# -- runs: a worker's tasks of several sync steps at once -----------------------------------


def test_sync_steps_go_out_in_runs_that_end_at_evaluation_steps(stack: Stack) -> None:
    job_id, team = start(stack, job_spec(steps=14, eval_every=6))
    first = take_all(team)
    assert all(not t.following for _, t in first)  # step 0 alone: workers may be arriving
    for worker, task in first:
        worker.run(task)
    runs = take_all(team)  # steps 1 .. 5: version 6 is evaluated, so the run ends there
    assert [[t.step for t in [task, *task.following]] for _, task in runs] == [[1, 2, 3, 4, 5]] * 2
    job = stack.core.active[job_id]
    for (_, task), slot in zip(runs, range(2), strict=True):
        for later in task.following:  # the same slot of each later step, this worker's
            ahead = next(s for s in job.ahead if s.step == later.step)
            assert later.task_id == ahead.tasks[slot].task_id
    for worker, task in runs:
        worker.run(task)
    run_to_end(stack, job_id, team)
    assert stack.jobs.record(job_id).status is JobStatus.SUCCEEDED
    steps = [p["step"] for p in stack.jobs.points[job_id]]
    assert steps == list(range(1, 15))  # every step recorded once, in order
    evaluated = [p["step"] for p in stack.jobs.points[job_id] if "eval_loss" in p]
    assert evaluated == [6, 12, 14]


def _theta_after(stack: Stack, job_id: str) -> Params:
    return stack.ps.final[job_id]


def test_a_run_reported_in_one_go_trains_as_step_by_step() -> None:
    """The real worker completes a run's tasks together, after all its pushes: the
    scheduler counts each step's results when the step comes, and θ, the losses and the
    steps are those of completing every task at once."""
    spec = job_spec(steps=9, eval_every=9, checkpoint_every=100)
    one_by_one = make_stack()
    job_a, team_a = start(one_by_one, spec)
    run_to_end(one_by_one, job_a, team_a)

    together = make_stack()
    job_b, team_b = start(together, spec)
    for worker, task in take_all(team_b):  # step 0
        worker.run(task)
    while job_b in together.core.active:
        runs = take_all(team_b)
        assert runs
        grads: dict[str, list[tuple[Task, Gradient]]] = {w.worker_id: [] for w, _ in runs}
        tasks = [task for _, task in runs]
        while tasks:  # push step by step (each push needs the θ of the step before)
            for (worker, _), task in zip(runs, tasks, strict=True):
                grads[worker.worker_id].append((task, worker.compute(task)))
            tasks = [w.in_hand.pop(0) for w, _ in runs] if runs[0][0].in_hand else []
        for worker, _ in runs:  # then each worker's whole run, one after the other
            for task, gradient in grads[worker.worker_id]:
                worker.complete(task, gradient)
    assert together.jobs.record(job_b).status is JobStatus.SUCCEEDED
    loss = [(p["step"], p["loss"]) for p in one_by_one.jobs.points[job_a]]
    assert [(p["step"], p["loss"]) for p in together.jobs.points[job_b]] == loss
    for name, value in _theta_after(one_by_one, job_a).items():
        np.testing.assert_array_equal(_theta_after(together, job_b)[name], value)


def test_tasks_of_a_run_handed_back_go_to_whoever_takes_their_step(stack: Stack) -> None:
    job_id, team = start(stack, job_spec(steps=8, eval_every=8))
    for worker, task in take_all(team):
        worker.run(task)
    (w1, t1), (w2, t2) = take_all(team)
    assert len(t1.following) == 6
    w1.run(t1)
    w2.run(t2)  # step 1 applied; w2 stops its run there and hands back the rest
    stack.core.release(w2.worker_id, [t.task_id for t in w2.in_hand])
    w2.in_hand.clear()
    third = SimWorker(stack, "w3").register()
    job = stack.core.active[job_id]
    assert job.version == 2
    step2 = third.take()  # w2's slot of step 2 is free now
    assert step2 is not None and step2.step == 2
    assert step2.task_id == job.step_tasks[1]
    assert [t.step for t in step2.following] == [3, 4, 5, 6, 7]  # the rest of the slot's run
    third.run(step2)
    w1.run(w1.take())  # type: ignore[arg-type]
    assert stack.core.active[job_id].version == 3


def test_a_lost_worker_frees_its_tasks_of_the_steps_ahead(stack: Stack) -> None:
    job_id, team = start(stack, job_spec(steps=8, eval_every=8))
    for worker, task in take_all(team):
        worker.run(task)
    (w1, t1), (_, t2) = take_all(team)
    w1.run(t1)
    stack.core.workers["w2"].last_seen -= 60  # w2 dies holding step 1 and its run
    stack.core.tick()
    job = stack.core.active[job_id]
    assert all(s.tasks[1].worker_id is None for s in job.ahead)
    third = SimWorker(stack, "w3").register()
    again = third.take()
    assert again is not None and again.task_id == t2.task_id  # step 1's task, requeued
    assert [t.step for t in again.following] == [2, 3, 4, 5, 6, 7]
    third.run(again)
    assert stack.core.active[job_id].version == 2


def test_steps_a_dead_worker_pushed_but_never_reported_are_recorded_without_a_rollback() -> None:
    """A worker dies in a run after its pushes of steps 1-3 (applied by the server) and
    before its Complete: the scheduler records those steps from the server's log and
    goes on, θ and losses exactly as if nothing had happened."""
    spec = job_spec(steps=8, eval_every=8, checkpoint_every=100)
    clean = make_stack()
    job_a, team_a = start(clean, spec)
    run_to_end(clean, job_a, team_a)

    stack = make_stack()
    job_id, (w1, w2) = start(stack, spec)
    for worker, task in take_all([w1, w2]):  # step 0
        worker.run(task)
    (_, t1), (_, t2) = take_all([w1, w2])  # each a run of steps 1..7
    runs = {w1.worker_id: [t1, *w1.in_hand], w2.worker_id: [t2, *w2.in_hand]}
    w1.in_hand.clear()
    w2.in_hand.clear()
    pushed = {(w.worker_id, k): w.compute(runs[w.worker_id][k]) for k in range(3) for w in (w1, w2)}
    step4 = w1.compute(runs[w1.worker_id][3])  # not applied: w2 is gone
    for k in range(3):
        w1.complete(runs[w1.worker_id][k], pushed[(w1.worker_id, k)])
    w1.complete(runs[w1.worker_id][3], step4)
    stack.core.release(w1.worker_id, [t.task_id for t in runs[w1.worker_id][4:]])
    stack.core.workers["w2"].last_seen -= 60  # w2 never reports
    stack.core.tick()
    requeued = w1.take()
    assert requeued is not None and requeued.task_id == t2.task_id  # step 1, applied long ago
    w1.fail(
        requeued,
        error="parameter server said FAILED_PRECONDITION: the server is at 4",
        failure=Failure.PARAMSERVER,
        code=grpc.StatusCode.FAILED_PRECONDITION,
    )

    job = stack.core.active[job_id]
    assert job.version == 4  # steps 1..3 recorded from the server's log; no rollback
    run_to_end(stack, job_id, [w1])
    assert stack.jobs.record(job_id).status is JobStatus.SUCCEEDED
    points = stack.jobs.points[job_id]
    assert [p["step"] for p in points] == list(range(1, 9))
    assert all("restored_from" not in p for p in points)
    want = {p["step"]: p["loss"] for p in clean.jobs.points[job_a]}
    for p in points:
        assert p["loss"] == pytest.approx(want[p["step"]], rel=1e-6)
    for name, value in _theta_after(clean, job_a).items():
        np.testing.assert_array_equal(_theta_after(stack, job_id)[name], value)


def test_a_run_ends_at_a_checkpoint_step_too(stack: Stack) -> None:
    _, team = start(stack, job_spec(steps=14, eval_every=100, checkpoint_every=4))
    for worker, task in take_all(team):
        worker.run(task)
    runs = take_all(team)  # from version 1: version 4 is checkpointed, so steps 1..3
    assert [[t.step for t in [task, *task.following]] for _, task in runs] == [[1, 2, 3]] * 2


def test_slow_steps_go_out_one_at_a_time_so_a_run_ends_well_within_a_lease(
    stack: Stack,
) -> None:
    job_id, team = start(stack, job_spec(steps=14, eval_every=100))
    stack.core.active[job_id].step_seconds = 100.0  # steps of this job take long
    for worker, task in take_all(team):
        worker.run(task)
    assert all(not task.following for _, task in take_all(team))  # no run: heartbeats go on

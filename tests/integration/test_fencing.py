"""A deposed leader can do no harm: a scheduler paused (SIGSTOP) past its lease while the
standby takes over, then resumed, steps down at once, and the parameter server refuses
its epoch. Real processes, real Redis."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import grpc
import pytest
import redis

from chainrule.cli.stack import LocalStack, free_port
from chainrule.paramserver.client import ParamServerClient
from chainrule.paramserver.fence import is_deposed
from chainrule.paramserver.records import LoggedStep
from chainrule.rpc.auth import SCHEDULER, Credentials
from chainrule.scheduler.leader import epoch_key, leader_key
from tests.support.examples import example_spec as spec
from tests.support.jobs import metric_series, run_job_to_end, submit_and_wait_for_step
from tests.support.stack import FAST_FAILOVER, running_stack

pytestmark = pytest.mark.timeout(240)
LEASE_S = float(FAST_FAILOVER["CHAINRULE_LEADER_TTL_S"])


def wait_until(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def _watch_log(
    stack: LocalStack, job_id: str, stop: threading.Event, logs: list[tuple[LoggedStep, ...]]
) -> None:
    """Read the job's applied-step log every 0.2 s into ``logs`` until ``stop``."""
    reader = ParamServerClient(
        stack.paramserver_target("paramserver"), 5, stack.leader_credentials()
    )
    try:
        while not stop.wait(0.2):
            with contextlib.suppress(grpc.RpcError):  # dropped at the end
                logs.append(reader.status(job_id, log=True).log)
            del logs[:-1]
    finally:
        reader.close()


def test_a_leader_paused_past_its_lease_steps_down_and_is_fenced_out(
    redis_url: str, tmp_path: Path
) -> None:
    client = redis.Redis.from_url(redis_url)
    steps = 6000
    standby = free_port()
    with running_stack(
        redis_url, tmp_path, extra_env=FAST_FAILOVER, standby_scheduler_port=standby
    ) as stack:
        prefix = stack.config.key_prefix
        job_spec = spec(training={"steps": steps, "checkpoint_every": 200})
        job_id = submit_and_wait_for_step(stack.gateway_url, job_spec, 100)
        assert int(client.get(epoch_key(leader_key(prefix))) or 0) == 1
        leader = stack.processes["scheduler"]
        leader.send_signal(signal.SIGSTOP)
        paused = time.monotonic()
        try:
            wait_until(  # the standby leads and trains the job on (the workers find it)
                lambda: "job resumed" in stack.log("scheduler-standby"),
                60,
                "the standby did not take the job over",
            )
            time.sleep(max(0.0, paused + 2 * LEASE_S - time.monotonic()))
        finally:
            leader.send_signal(signal.SIGCONT)
        assert leader.wait(timeout=30) == 5  # it stepped down at once, exit code 5
        assert "no longer the leader" in stack.log("scheduler")
        assert int(client.get(epoch_key(leader_key(prefix))) or 0) == 2

        # whatever the old leader might still send is refused: its epoch is 1
        old = ParamServerClient(
            stack.paramserver_target("paramserver"),
            5,
            Credentials(stack.token(SCHEDULER), epoch=1),
        )
        with pytest.raises(grpc.RpcError) as refused:
            old.drop_job(job_id)
        assert is_deposed(refused.value), refused.value
        old.close()

        # the parameter server's log of applied steps, read until the job ends (θ
        # and its log go with it): every version once, under non-decreasing epochs
        stop, logs = threading.Event(), list[tuple[LoggedStep, ...]]()
        watcher = threading.Thread(target=_watch_log, args=(stack, job_id, stop, logs))
        watcher.start()
        try:
            job = run_job_to_end(stack.gateway_url, job_id, timeout=180)
        finally:
            stop.set()
            watcher.join(timeout=30)
        assert logs, "the applied-step log could not be read"
        log = logs[-1]
        assert [e.step for e in log] == list(range(log[0].step, log[0].step + len(log)))
        epochs = [e.epoch for e in log]
        assert epochs == sorted(epochs) and set(epochs) <= {1, 2} and epochs[-1] == 2
        assert all(len(e.task_ids) == 2 for e in log)  # a task per worker slot, each step
        assert job["status"] == "SUCCEEDED", (job, stack.log("scheduler-standby")[-3000:])
        assert job["step"] == steps  # θ's version counts the job's steps
        assert job["latest_metrics"]["eval_accuracy"] == 1.0
        seen = Counter(p["step"] for p in metric_series(stack.gateway_url, job_id))
        assert set(seen) == set(range(1, steps + 1))
        twice = sorted(s for s, n in seen.items() if n > 1)
        # only the steps the new leader recomputed from the last checkpoint
        assert len(twice) <= 200, twice[:20]

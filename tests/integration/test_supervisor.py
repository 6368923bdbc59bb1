"""``chainrule up``'s supervision (cli/supervisor.py) on a real stack: every kind of child,
SIGKILLed mid-job, comes back by itself and the job succeeds; a child that exits at
every start is given up on, naming it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from chainrule.cli.stack import LocalStack
from chainrule.cli.supervisor import MAX_EXITS, CrashLoopError, Supervisor
from tests.support.examples import example_spec as spec
from tests.support.jobs import metric_series
from tests.support.stack import FAST_FAILOVER, running_stack

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def supervised(redis_url: str, tmp_path: Path) -> Iterator[tuple[LocalStack, list[str]]]:
    with running_stack(redis_url, tmp_path, extra_env=FAST_FAILOVER) as stack:
        reports: list[str] = []
        halt, gave_up = threading.Event(), threading.Event()
        supervisor = Supervisor(stack, reports.append)
        watcher = supervisor.start(halt, give_up=gave_up.set)
        try:
            yield stack, reports
        finally:
            halt.set()
            watcher.join(timeout=10)
        assert not gave_up.is_set(), reports


def job(gateway: str, job_id: str) -> dict[str, Any]:
    """The job's view, waiting through a gateway that is down or restarting."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return dict(httpx.get(f"{gateway}/api/v1/jobs/{job_id}", timeout=5).json())
        except httpx.HTTPError:
            assert time.monotonic() < deadline, "the gateway did not come back"
            time.sleep(0.2)


def wait_until(check: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_each_child_sigkilled_mid_job_comes_back_and_the_job_succeeds(
    supervised: tuple[LocalStack, list[str]],
) -> None:
    stack, reports = supervised
    steps = 4000
    job_spec = spec("digits", training={"workers": 2, "steps": steps, "eval_every": 500})
    reply = httpx.post(f"{stack.gateway_url}/api/v1/jobs", json=job_spec, timeout=10)
    assert reply.status_code == 201, reply.text
    job_id = reply.json()["id"]
    for name in ("worker-0", "paramserver", "scheduler", "gateway"):
        at = job(stack.gateway_url, job_id)["step"]
        wait_until(lambda a=at: job(stack.gateway_url, job_id)["step"] > a + 50, "no progress")
        old = stack.processes[name]
        old.kill()
        old.wait(timeout=10)
        wait_until(lambda n=name, o=old: stack.processes[n] is not o, f"{name} not restarted")
        assert any(r.startswith(f"{name} exited with code -9") for r in reports), reports
        assert any(r.startswith(f"{name} restarted") for r in reports), reports
    wait_until(
        lambda: job(stack.gateway_url, job_id)["status"] in ("SUCCEEDED", "FAILED", "STOPPED"),
        "the job did not end",
        timeout=150,
    )
    final = job(stack.gateway_url, job_id)
    assert final["status"] == "SUCCEEDED", final
    assert [p["step"] for p in metric_series(stack.gateway_url, job_id)][-1] == steps
    assert all(p.poll() is None for p in stack.processes.values())


def test_a_child_that_exits_at_every_start_is_given_up_on_naming_it(
    redis_url: str, tmp_path: Path
) -> None:
    with running_stack(redis_url, tmp_path, workers=1) as stack:
        # a worker whose token the scheduler refuses exits 4 at every start
        name = stack.add_worker({"CHAINRULE_WORKER_TOKENS": "not-the-stacks-token"})
        reports: list[str] = []
        supervisor = Supervisor(stack, reports.append)
        started = time.monotonic()
        with pytest.raises(CrashLoopError) as caught:
            while time.monotonic() - started < 60:
                supervisor.check()
                time.sleep(0.1)
        assert caught.value.name == name
        assert str(caught.value) == (
            f"{name} exited {MAX_EXITS} times within 60 s (last exit code 4); not restarting "
            f"it. Its log: {stack.log_path(name)}"
        )
        exits = [r for r in reports if r.startswith(f"{name} exited with code 4")]
        delays = [r.split("restarting it in ")[1].split(" s")[0] for r in exits]
        assert delays == ["0.5", "1", "2", "4"]  # backing off, doubling
        assert stack.processes["worker-0"].poll() is None  # the others were left alone

"""A parameter server that does not answer is waited out within the outage budget
(scheduler/outages.py): the job's phase says what it waits for, and it trains on when
the server is back; past the budget the job FAILS with the reason. Real processes, real
Redis; the parameter server is SIGKILLed, and started again or not."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from chainrule.cli.stack import LocalStack
from tests.support.examples import example_spec as spec
from tests.support.jobs import run_job_to_end, submit_and_wait_for_step
from tests.support.stack import running_stack

pytestmark = pytest.mark.timeout(240)
BUDGET_S = 8.0  # the second test's; the client's own retries ride out about 11 s


def job(stack: LocalStack, job_id: str) -> dict[str, Any]:
    return dict(httpx.get(f"{stack.gateway_url}/api/v1/jobs/{job_id}", timeout=10).json())


def wait_for(
    stack: LocalStack, job_id: str, check: Any, timeout: float, what: str
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while not check(record := job(stack, job_id)):
        assert time.monotonic() < deadline, f"{what}; the job is {record}"
        time.sleep(0.2)
    return record


def waiting_seconds(message: str, said: str) -> int:
    """The N of a waiting message ``<said>N s``."""
    return int(message[len(said) :].split()[0])


@pytest.fixture
def stack(redis_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[LocalStack]:
    env = getattr(request, "param", {})
    with running_stack(redis_url, tmp_path, extra_env=env) as running:
        yield running


def test_a_paramserver_down_for_longer_than_its_clients_retry_is_waited_out(
    stack: LocalStack,
) -> None:
    steps = 3000
    job_spec = spec(training={"steps": steps, "checkpoint_every": 200})
    job_id = submit_and_wait_for_step(stack.gateway_url, job_spec, 300)
    stack.processes["paramserver"].kill()
    stack.processes["paramserver"].wait(timeout=10)
    down = time.monotonic()

    waiting = wait_for(
        stack,
        job_id,
        lambda r: r["phase"] == "waiting_for_paramserver",
        60,
        "the job's phase did not say it waits for the parameter server",
    )
    assert waiting["status"] == "RUNNING"
    # the server as the processes were told it (CHAINRULE_PARAMSERVERS), and for how long
    said = (
        f"waiting for parameter server {stack.env()['CHAINRULE_PARAMSERVERS']} — unavailable for "
    )
    assert waiting["message"].startswith(said), waiting["message"]
    first = waiting_seconds(waiting["message"], said)
    later = wait_for(
        stack,
        job_id,
        lambda r: (
            r["message"].startswith(said) and waiting_seconds(r["message"], said) >= first + 5
        ),
        15,
        "the waiting message did not count the seconds",
    )
    assert later["workers"]["active"] == 2, later["workers"]  # both wait; neither is gone
    time.sleep(max(0.0, down + 20 - time.monotonic()))  # past every client's retries
    during = job(stack, job_id)
    assert during["status"] == "RUNNING"
    assert during["workers"]["active"] == 2, during["workers"]
    stack.respawn("paramserver")  # empty: the job resumes from its latest checkpoint

    ended = run_job_to_end(stack.gateway_url, job_id, timeout=180)
    assert ended["status"] == "SUCCEEDED", (ended, stack.log("scheduler")[-3000:])
    assert ended["step"] == steps
    assert ended["latest_metrics"]["eval_accuracy"] == 1.0
    messages = [t["message"] or "" for t in ended["status_transitions"]]
    assert any("training again: the parameter server answered after" in m for m in messages)


@pytest.mark.parametrize("stack", [{"CHAINRULE_OUTAGE_BUDGET_S": str(BUDGET_S)}], indirect=True)
def test_an_outage_past_the_budget_fails_the_job_with_the_reason(stack: LocalStack) -> None:
    job_spec = spec(training={"steps": 100_000, "checkpoint_every": 200})
    job_id = submit_and_wait_for_step(stack.gateway_url, job_spec, 100)
    stack.processes["paramserver"].kill()
    down = time.monotonic()

    ended = wait_for(stack, job_id, lambda r: r["status"] == "FAILED", 90, "the job did not fail")
    failed_after = time.monotonic() - down
    reason = ended["failure_reason"]
    assert "past the outage budget of 8 s (CHAINRULE_OUTAGE_BUDGET_S)" in reason, reason
    assert "the parameter server did not answer for" in reason
    assert BUDGET_S < failed_after < BUDGET_S + 45, failed_after  # the next report after it


def test_a_job_whose_start_keeps_failing_stays_pending_for_its_timeout_then_fails(
    stack: LocalStack,
) -> None:
    """No parameter server to create θ on: the job is PENDING (retried with backoff) for
    its pending_timeout_s, then FAILED naming the attempts and the last error; its
    history has one entry per phase change, however many attempts were made."""
    stack.processes["paramserver"].kill()
    stack.processes["paramserver"].wait(timeout=10)
    timeout_s = 15
    job_spec = spec(training={"steps": 100, "pending_timeout_s": timeout_s})
    reply = httpx.post(f"{stack.gateway_url}/api/v1/jobs", json=job_spec, timeout=10)
    assert reply.status_code == 201, reply.text
    job_id, submitted = reply.json()["id"], time.monotonic()

    ended = wait_for(
        stack, job_id, lambda r: r["status"] != "PENDING", timeout_s + 60, "it stayed PENDING"
    )
    assert time.monotonic() - submitted >= timeout_s, ended  # PENDING for all of it
    assert ended["status"] == "FAILED", ended
    reason = ended["failure_reason"]
    assert reason.startswith(f"could not start within pending_timeout_s={timeout_s} ("), reason
    assert "attempts); the last said:" in reason, reason
    changes = [(t["status"], t["phase"]) for t in ended["status_transitions"]]
    assert all(a != b for a, b in itertools.pairwise(changes)), changes
    assert len(changes) <= 4, changes  # submitted, preparing, (waiting,) failed

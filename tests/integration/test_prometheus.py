"""Prometheus metrics of the real stack: each service's metrics port and the gateway's
/metrics after a short training job, as a Prometheus server would scrape them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from chainrule.cli.stack import HOST, LocalStack
from chainrule.scheduler.job import RUN_STEPS
from tests.support.examples import example_spec as spec
from tests.support.stack import running_stack

pytestmark = pytest.mark.timeout(180)
STEPS = 40

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> tuple[str, Samples]:
    reply = httpx.get(url, timeout=10)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(reply.text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return reply.text, samples


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name`` over the series whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def has(samples: Samples, name: str, **labels: str) -> bool:
    wanted = set(labels.items())
    return any(n == name and wanted <= ls for (n, ls) in samples)


@pytest.fixture(scope="module")
def finished(
    redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LocalStack, dict[str, Any]]]:
    """A stack with metrics ports on, after one short sync job has succeeded."""
    log_dir = tmp_path_factory.mktemp("prometheus")
    with running_stack(redis_url, log_dir, metrics_ports=True) as stack:
        gateway = stack.gateway_url
        reply = httpx.post(
            f"{gateway}/api/v1/jobs",
            json=spec(training={"steps": STEPS, "eval_every": 20}),
            timeout=10,
        )
        assert reply.status_code == 201, reply.text
        job_id = reply.json()["id"]
        deadline = time.monotonic() + 120
        while (job := httpx.get(f"{gateway}/api/v1/jobs/{job_id}", timeout=10).json())[
            "status"
        ] not in ("SUCCEEDED", "FAILED", "STOPPED"):
            assert time.monotonic() < deadline, f"job {job_id} did not end: {job}"
            time.sleep(0.2)
        assert job["status"] == "SUCCEEDED", job
        yield stack, job


def service_metrics(stack: LocalStack, name: str) -> tuple[str, Samples]:
    return scrape(f"http://{HOST}:{stack.metrics_ports[name]}/metrics")


def test_every_service_gets_its_own_metrics_port(
    finished: tuple[LocalStack, dict[str, Any]],
) -> None:
    stack, _ = finished
    assert set(stack.metrics_ports) == {"paramserver", "scheduler", "worker-0", "worker-1"}
    assert len(set(stack.metrics_ports.values())) == 4


def test_paramserver_reports_push_pull_apply_and_gradient_bytes(
    finished: tuple[LocalStack, dict[str, Any]],
) -> None:
    stack, _ = finished
    _, samples = service_metrics(stack, "paramserver")
    for rpc in ("PushPull", "Plan", "Pull"):
        count = total(samples, "chainrule_paramserver_rpc_duration_seconds_count", rpc=rpc)
        assert count > 0, rpc
    # sync: one Plan call per run of steps (up to 8, each applied by the server); two
    # workers PushPull one gradient each per step
    plans = total(samples, "chainrule_paramserver_rpc_duration_seconds_count", rpc="Plan")
    assert STEPS / RUN_STEPS <= plans < STEPS
    push_pulls = total(samples, "chainrule_paramserver_rpc_duration_seconds_count", rpc="PushPull")
    assert push_pulls >= 2 * STEPS
    pushes = total(samples, "chainrule_paramserver_gradient_bytes_count")
    assert pushes >= 2 * STEPS
    # the 2-8-1 MLP has 33 float32 parameters: 132 bytes per gradient
    assert total(samples, "chainrule_paramserver_gradient_bytes_sum") == 132 * pushes
    assert total(samples, "chainrule_paramserver_params_sent_bytes_total") > 0
    assert not any(n.startswith("chainrule_worker") for n, _ in samples)


def test_workers_report_task_stages_and_outcomes(
    finished: tuple[LocalStack, dict[str, Any]],
) -> None:
    stack, _ = finished
    done = 0.0
    for name in ("worker-0", "worker-1"):
        _, samples = service_metrics(stack, name)
        done += total(samples, "chainrule_worker_tasks_total", outcome="done")
        assert total(samples, "chainrule_worker_tasks_total", outcome="failed") == 0
        for stage in ("pull", "compute", "push"):
            assert has(samples, "chainrule_worker_stage_duration_seconds_count", stage=stage)
        assert has(samples, "chainrule_worker_task_duration_seconds_bucket", le="10.0")
    assert done >= 2 * STEPS
    _, samples = service_metrics(stack, "worker-0")
    assert total(samples, "chainrule_worker_stage_duration_seconds_count", stage="push") > 0


def test_scheduler_exposes_its_series(finished: tuple[LocalStack, dict[str, Any]]) -> None:
    stack, _ = finished
    _, samples = service_metrics(stack, "scheduler")
    for name, labels in [
        ("chainrule_scheduler_steps_total", {"mode": "sync"}),
        ("chainrule_scheduler_step_duration_seconds_count", {}),
        ("chainrule_scheduler_workers_active", {}),
        ("chainrule_scheduler_jobs_ended_total", {"status": "SUCCEEDED"}),
        ("chainrule_build_info", {}),
    ]:
        assert has(samples, name, **labels), name
    assert total(samples, "process_resident_memory_bytes") > 0
    assert total(samples, "chainrule_scheduler_steps_total", mode="sync") >= STEPS
    assert total(samples, "chainrule_scheduler_step_duration_seconds_count") >= STEPS
    assert total(samples, "chainrule_scheduler_jobs_ended_total", status="SUCCEEDED") == 1


def test_gateway_metrics_count_requests_by_route_and_jobs_by_state(
    finished: tuple[LocalStack, dict[str, Any]],
) -> None:
    stack, job = finished
    text, samples = scrape(f"{stack.gateway_url}/metrics")
    assert (
        total(
            samples,
            "chainrule_http_requests_total",
            method="POST",
            route="/api/v1/jobs",
            status="201",
        )
        == 1
    )
    polls = total(
        samples,
        "chainrule_http_requests_total",
        method="GET",
        route="/api/v1/jobs/{job_id}",
        status="200",
    )
    assert polls >= 1
    assert (
        total(
            samples,
            "chainrule_http_request_duration_seconds_count",
            method="GET",
            route="/api/v1/jobs/{job_id}",
        )
        == polls
    )
    # this stack's key prefix is its own: the one job, ended
    assert total(samples, "chainrule_jobs", state="SUCCEEDED") == 1
    for state in ("PENDING", "RUNNING", "FAILED", "STOPPED"):
        assert total(samples, "chainrule_jobs", state=state) == 0
    assert job["id"] not in text


def test_no_series_names_a_job_or_a_worker(
    finished: tuple[LocalStack, dict[str, Any]],
) -> None:
    stack, job = finished
    for name in stack.metrics_ports:
        text, _ = service_metrics(stack, name)
        assert job["id"] not in text, name
        assert "worker-0" not in text and "worker-1" not in text, name

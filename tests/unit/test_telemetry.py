"""The metric catalogue follows the Prometheus conventions, and the helpers the services
call move the values a scrape would show."""

from __future__ import annotations

import re
from collections.abc import Iterator

import grpc
import pytest
from fastapi import APIRouter, FastAPI, HTTPException
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, Histogram

from chainrule import telemetry
from chainrule.gateway.prometheus import UNMATCHED, HttpMetrics

ALLOWED_LABELS = {
    "rpc",
    "code",
    "stage",
    "outcome",
    "mode",
    "status",
    "method",
    "route",
    "state",
    "priority",
}
UNIT_SUFFIXES = ("_seconds", "_bytes", "_versions")
ALL_METRICS = [m for group in telemetry.COMPONENTS.values() for m in group]


def registry_with(*components: str) -> CollectorRegistry:
    registry = CollectorRegistry()
    for component in components:
        telemetry.register(component, registry)
    return registry


@pytest.fixture
def registry() -> CollectorRegistry:
    return registry_with(*telemetry.COMPONENTS)


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


# -- naming ---------------------------------------------------------------------------------


def test_every_metric_is_named_the_prometheus_way(registry: CollectorRegistry) -> None:
    families = list(registry.collect())
    assert {f.name for f in families} >= {"chainrule_build", "chainrule_http_requests"}
    for family in families:
        assert re.fullmatch(r"chainrule_[a-z0-9_]+", family.name), family.name
        assert not re.search(r"_(ms|milliseconds|kb|mb|gb|minutes|hours)(_|$)", family.name)
        if family.type == "counter":
            assert not family.name.endswith("_total"), "the client adds _total"
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples)
        if family.type == "histogram":
            assert family.name.endswith(UNIT_SUFFIXES), f"{family.name} names no unit"
        if family.type == "gauge":
            assert not family.name.endswith("_total"), family.name


def test_labels_come_from_small_fixed_sets_and_never_name_a_job_or_worker() -> None:
    for metric in ALL_METRICS:
        labels = set(metric._labelnames)
        assert labels <= ALLOWED_LABELS, f"{metric._name}: {labels - ALLOWED_LABELS}"
        assert not labels & {"job", "job_id", "worker", "worker_id", "task_id"}


def test_counters_end_in_total_in_the_exposition(registry: CollectorRegistry) -> None:
    names = {s.name for f in registry.collect() if f.type == "counter" for s in f.samples}
    assert "chainrule_scheduler_steps_total" in names
    assert "chainrule_paramserver_params_sent_bytes_total" in names
    assert "chainrule_worker_tasks_total" in names


def histograms() -> Iterator[Histogram]:
    for metric in ALL_METRICS:
        if isinstance(metric, Histogram):
            yield metric


def test_histogram_buckets_span_the_agreed_ranges() -> None:
    for metric in histograms():
        bounds = metric._upper_bounds
        assert bounds[-1] == float("inf")
        if metric._name.endswith("_wait_seconds"):  # queues: 0.1 s to 4 h
            assert (bounds[0], bounds[-2]) == (0.1, 14400.0), metric._name
        elif metric._name.endswith("_seconds"):
            assert (bounds[0], bounds[-2]) == (0.001, 10.0), metric._name
        elif metric._name.endswith("_bytes"):
            assert (bounds[0], bounds[-2]) == (1024.0, 2.0**30), metric._name
        else:
            assert (bounds[0], bounds[-2]) == (0.0, 64.0), metric._name


def test_each_process_exposes_only_its_own_group() -> None:
    worker = {f.name for f in registry_with("worker").collect()}
    assert "chainrule_worker_tasks" in worker and "chainrule_build" in worker
    assert not any(n.startswith(("chainrule_paramserver", "chainrule_scheduler")) for n in worker)


def test_register_is_idempotent_and_names_the_components_on_a_typo() -> None:
    registry = registry_with("scheduler")
    telemetry.register("scheduler", registry)  # no DuplicateTimeseries
    with pytest.raises(ValueError, match="unknown component 'sheduler'; expected one of"):
        telemetry.register("sheduler", registry)


def test_known_label_values_read_zero_before_the_first_event(
    registry: CollectorRegistry,
) -> None:
    for rpc in telemetry.PARAMSERVER_RPCS:
        assert (
            registry.get_sample_value(
                "chainrule_paramserver_rpc_duration_seconds_count", {"rpc": rpc}
            )
            is not None
        )
    assert registry.get_sample_value("chainrule_worker_tasks_total", {"outcome": "failed"}) == 0


def test_build_info_carries_the_version(registry: CollectorRegistry) -> None:
    from chainrule import __version__

    assert value(registry, "chainrule_build_info", version=__version__) == 1.0


# -- helpers --------------------------------------------------------------------------------


class FakeContext:
    def __init__(self, code: grpc.StatusCode | None) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode | None:
        return self._code


def test_paramserver_rpc_times_calls_and_counts_refusals_by_code(
    registry: CollectorRegistry,
) -> None:
    count = "chainrule_paramserver_rpc_duration_seconds_count"
    errors = "chainrule_paramserver_rpc_errors_total"
    before = value(registry, count, rpc="Push")
    refused = value(registry, errors, rpc="Push", code="FAILED_PRECONDITION")
    with telemetry.paramserver_rpc("Push", FakeContext(None)):
        pass
    with (
        pytest.raises(RuntimeError),
        telemetry.paramserver_rpc("Push", FakeContext(grpc.StatusCode.FAILED_PRECONDITION)),
    ):
        raise RuntimeError("aborted")  # what context.abort raises
    with pytest.raises(KeyError), telemetry.paramserver_rpc("Push", FakeContext(None)):
        raise KeyError("a bug")
    assert value(registry, count, rpc="Push") == before + 3
    assert value(registry, errors, rpc="Push", code="FAILED_PRECONDITION") == refused + 1
    assert value(registry, errors, rpc="Push", code="UNKNOWN") >= 1


class Tensor:
    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes


def test_payload_sizes_are_counted_in_bytes(registry: CollectorRegistry) -> None:
    grad_sum = value(registry, "chainrule_paramserver_gradient_bytes_sum")
    small = value(registry, "chainrule_paramserver_gradient_bytes_bucket", le="1024.0")
    sent = value(registry, "chainrule_paramserver_params_sent_bytes_total")
    telemetry.record_gradient_bytes({"W1": Tensor(600), "b1": Tensor(24)})
    telemetry.record_params_sent({"W1": Tensor(4096)})
    assert value(registry, "chainrule_paramserver_gradient_bytes_sum") == grad_sum + 624
    assert value(registry, "chainrule_paramserver_gradient_bytes_bucket", le="1024.0") == small + 1
    assert value(registry, "chainrule_paramserver_params_sent_bytes_total") == sent + 4096


def test_worker_helpers_record_stages_and_outcomes(registry: CollectorRegistry) -> None:
    stage = "chainrule_worker_stage_duration_seconds_sum"
    before = {s: value(registry, stage, stage=s) for s in telemetry.WORKER_STAGES}
    done = value(registry, "chainrule_worker_tasks_total", outcome="done")
    failed = value(registry, "chainrule_worker_tasks_total", outcome="failed")
    telemetry.record_task_stages(0.25, 0.5, 0.125)
    telemetry.record_task(0.875, failed=False)
    telemetry.record_task(0.01, failed=True)
    after = {s: value(registry, stage, stage=s) - before[s] for s in telemetry.WORKER_STAGES}
    assert after == {"pull": 0.25, "compute": 0.5, "push": 0.125}
    assert value(registry, "chainrule_worker_tasks_total", outcome="done") == done + 1
    assert value(registry, "chainrule_worker_tasks_total", outcome="failed") == failed + 1


def test_scheduler_helpers_move_their_series(registry: CollectorRegistry) -> None:
    names = {
        "steps": ("chainrule_scheduler_steps_total", {"mode": "sync"}),
        "apply": ("chainrule_scheduler_apply_duration_seconds_count", {"mode": "sync"}),
        "step": ("chainrule_scheduler_step_duration_seconds_count", {}),
        "stale0": (
            "chainrule_scheduler_gradient_staleness_versions_bucket",
            {"mode": "ssp", "le": "0.0"},
        ),
        "stale4": (
            "chainrule_scheduler_gradient_staleness_versions_bucket",
            {"mode": "ssp", "le": "4.0"},
        ),
        "rejected": ("chainrule_scheduler_rejected_stale_total", {}),
        "dropped": ("chainrule_scheduler_dropped_late_total", {}),
        "reassigned": ("chainrule_scheduler_reassigned_total", {}),
        "lost": ("chainrule_scheduler_workers_lost_total", {}),
        "started": ("chainrule_scheduler_jobs_started_total", {"mode": "ssp"}),
        "ended": ("chainrule_scheduler_jobs_ended_total", {"status": "FAILED"}),
    }
    before = {k: value(registry, n, **labels) for k, (n, labels) in names.items()}
    with telemetry.apply_timer("sync"):
        pass
    with pytest.raises(grpc.RpcError), telemetry.apply_timer("sync"):
        raise grpc.RpcError()  # a failed Apply is timed but is no step
    telemetry.record_step(0.3)  # a planned sync step: one more step, no Apply
    telemetry.record_staleness("ssp", 0)
    telemetry.record_staleness("ssp", 3)
    telemetry.record_rejected_stale()
    telemetry.record_dropped_late(2)
    telemetry.record_reassigned()
    telemetry.record_workers_lost(3)
    telemetry.record_job_started("ssp")
    telemetry.record_job_ended("FAILED")
    telemetry.set_workers_active(5)
    moved = {k: value(registry, n, **labels) - before[k] for k, (n, labels) in names.items()}
    assert moved == {
        "steps": 2,
        "apply": 2,
        "step": 1,
        "stale0": 1,
        "stale4": 2,
        "rejected": 1,
        "dropped": 2,
        "reassigned": 1,
        "lost": 3,
        "started": 1,
        "ended": 1,
    }
    assert value(registry, "chainrule_scheduler_workers_active") == 5


# -- jobs by state --------------------------------------------------------------------------


def test_jobs_by_state_reports_every_state_and_skips_a_failed_count() -> None:
    registry = CollectorRegistry()
    registry.register(telemetry.JobsByState(lambda: {"RUNNING": 2, "SUCCEEDED": 7}))
    assert value(registry, "chainrule_jobs", state="RUNNING") == 2
    assert value(registry, "chainrule_jobs", state="SUCCEEDED") == 7
    assert registry.get_sample_value("chainrule_jobs", {"state": "PENDING"}) == 0

    def unreachable() -> dict[str, int]:
        raise ConnectionError("redis is down")

    broken = CollectorRegistry()
    broken.register(telemetry.JobsByState(unreachable, errors=(ConnectionError,)))
    assert list(broken.collect()) == []


# -- the gateway's HTTP middleware ----------------------------------------------------------


@pytest.fixture
def client() -> Iterator[TestClient]:
    jobs = APIRouter(prefix="/jobs")

    @jobs.get("/{job_id}")
    def get_job(job_id: str) -> dict[str, str]:
        if job_id == "missing":
            raise HTTPException(404, "no such job")
        return {"id": job_id}

    @jobs.get("/{job_id}/crash")
    def crash(job_id: str) -> None:
        raise RuntimeError("a bug")

    api = APIRouter()
    api.include_router(jobs)
    app = FastAPI()
    app.include_router(api, prefix="/api/v1")
    app.add_middleware(HttpMetrics)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def requests(registry: CollectorRegistry, method: str, route: str, status: str) -> float:
    labels = {"method": method, "route": route, "status": status}
    return value(registry, "chainrule_http_requests_total", **labels)


def test_http_requests_are_counted_by_route_template_not_by_path(client: TestClient) -> None:
    registry = registry_with("gateway")
    template = "/api/v1/jobs/{job_id}"
    ok, missing = (
        requests(registry, "GET", template, "200"),
        requests(registry, "GET", template, "404"),
    )
    crashed = requests(registry, "GET", template + "/crash", "500")
    unmatched = requests(registry, "GET", UNMATCHED, "404")
    assert client.get("/api/v1/jobs/3f9a2c71").status_code == 200
    assert client.get("/api/v1/jobs/0b1c2d3e").status_code == 200
    assert client.get("/api/v1/jobs/missing").status_code == 404
    assert client.get("/api/v1/jobs/3f9a2c71/crash").status_code == 500
    assert client.get("/no/such/3f9a2c71").status_code == 404
    assert requests(registry, "GET", template, "200") == ok + 2
    assert requests(registry, "GET", template, "404") == missing + 1
    assert requests(registry, "GET", template + "/crash", "500") == crashed + 1
    assert requests(registry, "GET", UNMATCHED, "404") == unmatched + 1
    seconds = value(
        registry, "chainrule_http_request_duration_seconds_count", method="GET", route=template
    )
    assert seconds >= 3
    routes = {
        s.labels["route"]
        for f in registry.collect()
        if f.name == "chainrule_http_requests"
        for s in f.samples
    }
    assert not any("3f9a2c71" in r or "0b1c2d3e" in r for r in routes), routes

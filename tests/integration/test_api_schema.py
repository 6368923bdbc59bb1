"""The OpenAPI document of the real gateway process, and a schemathesis run over it:
generated requests, valid and invalid, against every operation (on unknown ids and on
jobs present in every state) must get no 5xx and only documented, schema-conforming
replies. The gateway requires a token for every request (reads included), and the
run sends a valid one, so the mutating operations (submit, upload, stop, delete) run
their real code on real jobs. Bounded: a few examples per operation and a wall-clock
budget."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from chainrule.spec import JobSpec, build_mlp
from chainrule.store.checkpoints import Checkpoint, CheckpointStore
from chainrule.store.diagnostics import DiagnosticsStore
from chainrule.store.workers import WorkerRegistry
from tests.support.api import Api, point, running_gateway, save_model, submit
from tests.support.examples import example_spec

pytestmark = pytest.mark.timeout(150)

BUDGET_S = 75.0  # wall clock for the whole schemathesis run
EXAMPLES = 25  # per operation, per job it is pointed at, per generation mode
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
# the event stream of a live job never ends by itself: tests/integration/test_api_events.py
SKIPPED = r"/events$"


TOKEN = "schemathesis-token"
AUTHORIZED = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def api(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with running_gateway(
        redis_url, tmp_path_factory.mktemp("gateway"), api_tokens=TOKEN, auth_reads="true"
    ) as gateway:
        gateway.http.headers.update(AUTHORIZED)
        yield gateway


def jobs_in_every_state(api: Api) -> dict[str, str]:
    """A PENDING job; a RUNNING one with metrics, diagnostics and a checkpoint; a
    SUCCEEDED one with its model; a FAILED one; and some workers."""
    layer = {"layer": "dense1", "activation": "tanh", "grad_norm": 0.5, "activation_mean": 0.0,
             "activation_std": 0.5, "mean_abs_derivative": 0.6, "saturated_fraction": 0.0,
             "dead_fraction": 0.0}  # fmt: skip
    params = build_mlp(JobSpec.model_validate(example_spec()).model).init(np.random.default_rng(0))
    jobs = {state: submit(api)["id"] for state in ("PENDING", "RUNNING", "SUCCEEDED", "FAILED")}
    for state in ("RUNNING", "SUCCEEDED", "FAILED"):
        job_id = jobs[state]
        api.store.set_status(job_id, "RUNNING", phase="training")
        for step in range(1, 31):
            api.store.append_metrics(job_id, point(step, eval_accuracy=0.5 + step / 100))
            DiagnosticsStore(api.client, api.prefix).append(job_id, step, [layer])
        api.store.set_progress(job_id, 30)
    CheckpointStore(api.blobs, api.prefix, "0").save(
        jobs["RUNNING"], Checkpoint(params, {}, version=30, optimizer="sgd")
    )
    save_model(api, jobs["SUCCEEDED"], params)
    api.store.set_status(jobs["SUCCEEDED"], "SUCCEEDED")
    api.store.set_status(jobs["FAILED"], "FAILED", reason="diverged: loss became nan")
    workers = [{"id": "w1", "host": "h", "state": "busy", "current_job": jobs["RUNNING"],
                "last_heartbeat": time.time(), "tasks_done": 3}]  # fmt: skip
    WorkerRegistry(api.client, api.prefix).write(workers, lost_ttl_s=60)
    return jobs


def test_schemathesis_finds_no_server_errors_and_no_schema_violations(api: Api) -> None:
    jobs = jobs_in_every_state(api)
    document = api.http.get("/openapi.json").json()
    schema = schemathesis.openapi.from_dict(document).exclude(path_regex=SKIPPED)
    deadline = time.monotonic() + BUDGET_S
    failures: list[str] = []
    methods: list[str] = []  # of each run
    runs = 0
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # an invalid schema raises here
        targets: list[dict[str, Any] | None] = [None]  # generated path parameters
        method, path = operation.method.upper(), operation.path
        if "{job_id}" in path:
            # stop and delete change the jobs they reach: each gets jobs of its own
            ends = method == "DELETE" or path.endswith("/stop")
            on = jobs_in_every_state(api) if ends else jobs
            targets += [{"job_id": job_id} for job_id in on.values()]
        for path_parameters in targets:
            for mode in (
                schemathesis.GenerationMode.POSITIVE,
                schemathesis.GenerationMode.NEGATIVE,
            ):
                if time.monotonic() > deadline:
                    break
                strategy = operation.as_strategy(mode, path_parameters=path_parameters)
                error = run_examples(strategy, api.base_url, deadline)
                runs += 1
                methods.append(method)
                if error is not None:
                    where = f"{operation.method.upper()} {operation.path} {path_parameters or ''}"
                    failures.append(f"{where} ({mode.value}): {error}")

    mutating = sum(1 for m in methods if m in ("POST", "PUT", "PATCH", "DELETE"))
    print(
        f"schemathesis: {runs} runs ({mutating} of operations that change state) in "
        f"{BUDGET_S - (deadline - time.monotonic()):.1f} s"
    )
    assert mutating >= 4, methods  # submit, upload, stop and delete ran, at least
    assert runs >= 40, f"the budget ran out after {runs} runs"
    assert not failures, "\n\n".join(failures)


def run_examples(strategy: Any, base_url: str, deadline: float) -> str | None:
    """Run the strategy's examples; the first failure as text, or None."""

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def check(case: Any) -> None:
        if time.monotonic() > deadline:
            return
        response = case.call(base_url=base_url, headers=AUTHORIZED, timeout=10)
        case.validate_response(response, checks=CHECKS)

    return failure_text(check)


def failure_text(check: Callable[[], None]) -> str | None:
    try:
        check()
    except Unsatisfiable:  # no invalid request exists (an operation without parameters)
        return None
    except (Exception, BaseExceptionGroup) as exc:  # schemathesis: an exception group
        return f"{type(exc).__name__}: {exc}"[:3000]
    return None


# -- the document itself ----------------------------------------------------------------


def test_every_operation_documents_its_replies(api: Api) -> None:
    doc = api.http.get("/openapi.json").json()
    for path, methods in doc["paths"].items():
        if not path.startswith("/api/"):
            continue
        for method, operation in methods.items():
            replies = operation["responses"]
            ok = next(code for code in replies if code.startswith("2"))
            assert replies[ok].get("content") or ok == "204", (method, path)
            assert operation.get("summary") and operation.get("description"), (method, path)
            if "{job_id}" in path:
                assert "404" in replies, (method, path)
            if method in ("post", "delete") and not path.endswith("/predict"):
                assert {"401", "403"} <= set(replies), (method, path)


def test_the_submit_examples_are_accepted_as_they_stand(api: Api) -> None:
    doc = api.http.get("/openapi.json").json()
    examples = doc["paths"]["/api/v1/jobs"]["post"]["requestBody"]["content"]["application/json"][
        "examples"
    ]

    assert examples["xor"]["value"] == example_spec("xor")  # the README's example
    for name, example in examples.items():
        reply = api.http.post("/api/v1/jobs", json=example["value"])
        assert reply.status_code in (200, 201), (name, reply.text)


def test_a_non_finite_number_in_a_spec_is_422_not_500(api: Api) -> None:
    content = (
        '{"name": "x", "dataset": {"name": "xor"}, "model": {"layers": [2, 2, 1], '
        '"output": "sigmoid", "loss": "bce"}, "training": {"optimizer": {"name": "sgd", '
        '"lr": NaN}}}'
    )
    reply = api.http.post(
        "/api/v1/jobs", content=content, headers={"content-type": "application/json"}
    )
    assert reply.status_code == 422
    assert reply.json()["detail"][0]["loc"][:3] == ["body", "training", "optimizer"]

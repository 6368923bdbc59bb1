"""The whole service as real processes on loopback: paramserver, scheduler, workers and
gateway started by the same launcher as ``chainrule up``, talking to a real Redis."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest
import redis

from chainrule.cli.stack import LocalStack, StackConfig, free_port
from chainrule.data import prepare, targets
from chainrule.scheduler.batches import job_rngs, make_shards, step_batches
from chainrule.spec import JobSpec, build_training
from chainrule.store.blobs import model_key
from tests.support.examples import example_spec as spec
from tests.support.jobs import metric_series, run_job, run_job_to_end, submit_and_wait_for_step
from tests.support.stack import FAST_FAILOVER, running_stack

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    log_dir = tmp_path_factory.mktemp("stack")
    with running_stack(redis_url, log_dir, extra_env=FAST_FAILOVER) as running:
        yield running


def test_xor_reaches_full_holdout_accuracy_and_version_counts_steps(stack: LocalStack) -> None:
    job = run_job(stack.gateway_url, spec(training={"steps": 400}))
    assert job["status"] == "SUCCEEDED", job
    assert job["latest_metrics"]["eval_accuracy"] == 1.0
    points = metric_series(stack.gateway_url, job["id"])
    # one metric point per Apply, carrying the version it produced: 1, 2, ..., steps
    assert [p["step"] for p in points] == list(range(1, 401))
    assert job["step"] == 400
    assert {p["active_workers"] for p in points} == {2}


def test_services_on_one_host_call_each_other_through_their_unix_sockets(
    stack: LocalStack,
) -> None:
    """chainrule up's processes share a host: workers and the scheduler reach the
    parameter server, and workers the scheduler, on the same-host sockets, not TCP."""
    job = run_job(stack.gateway_url, spec(training={"steps": 50}))
    assert job["status"] == "SUCCEEDED", job
    assert stat.S_IMODE(os.stat(stack.socket_dir).st_mode) == 0o700
    for server, clients in (("paramserver", 3), ("scheduler", 2)):
        path = stack.socket_path(server)
        held = psutil.Process(stack.processes[server].pid).net_connections(kind="unix")
        accepted = [c for c in held if c.laddr == path and c.status != psutil.CONN_LISTEN]
        assert len(accepted) >= clients, (server, held)  # one or more per client process


def test_digits_reaches_95_percent_holdout_accuracy(stack: LocalStack) -> None:
    job = run_job(stack.gateway_url, spec("digits"))
    assert job["status"] == "SUCCEEDED", job
    assert job["latest_metrics"]["eval_accuracy"] >= 0.95, job["latest_metrics"]


def single_process_replay(job_spec: JobSpec) -> dict[str, np.ndarray]:
    """Plain SGD in this process on the minibatch sequence the scheduler hands out."""
    net, optimizer = build_training(job_spec)
    t, d = job_spec.training, job_spec.dataset
    assert d.name is not None, "a built-in dataset"
    split = prepare(d.name, d.samples, d.holdout, t.seed)
    init_rng, batch_rng = job_rngs(t.seed)
    params = net.init(init_rng)
    state = optimizer.init(params)
    shards = make_shards(len(split.X_train), t.workers, batch_rng)
    for _ in range(t.total_steps(len(split.X_train))):
        rows = np.concatenate(step_batches(shards, t.batch_size, batch_rng))
        y = targets(split.y_train[rows], net.layers[-1], net.head.loss)
        _, grads = net.loss_and_grad(params, split.X_train[rows], y)
        optimizer.update_(params, grads, state, t.optimizer.lr)
    return params


def test_sync_run_equals_single_process_sgd_on_the_same_minibatches(stack: LocalStack) -> None:
    job_spec = spec(
        dataset={"name": "moons"},
        model={
            "layers": [2, 16, 16, 2],
            "activation": "relu",
            "output": "softmax",
            "loss": "cross_entropy",
        },
        training={
            "steps": 60,
            "batch_size": 16,
            "seed": 7,
            "optimizer": {"name": "sgd", "lr": 0.2, "momentum": 0.9},
        },
    )
    job = run_job(stack.gateway_url, job_spec)
    assert job["status"] == "SUCCEEDED", job
    blob = redis.Redis.from_url(stack.redis_url).get(model_key(stack.config.key_prefix, job["id"]))
    assert blob is not None, "the final θ is stored when a job succeeds"
    with np.load(io.BytesIO(bytes(blob))) as saved:  # type: ignore[arg-type]
        distributed = {k: saved[k] for k in saved.files}
    expected = single_process_replay(JobSpec.model_validate(job_spec))
    assert distributed.keys() == expected.keys()
    for name in expected:
        np.testing.assert_allclose(distributed[name], expected[name], rtol=1e-4, atol=1e-5)


def test_invalid_spec_gets_422_naming_the_field(stack: LocalStack) -> None:
    reply = httpx.post(f"{stack.gateway_url}/api/v1/jobs", json=spec(training={"steps": 0}))
    assert reply.status_code == 422
    errors = reply.json()["detail"]
    assert any(e["loc"][-2:] == ["training", "steps"] for e in errors), errors


def test_workers_can_come_and_go_mid_job(stack: LocalStack) -> None:
    """The two original workers are stopped (SIGTERM) mid-job and a new one started:
    the newcomer must get the job's tasks, or the job could not finish."""
    job_id = submit_and_wait_for_step(stack.gateway_url, spec(training={"steps": 1500}), 50)
    originals = [n for n in stack.processes if n.startswith("worker")]
    newcomer = stack.add_worker()
    for name in originals:
        stack.processes[name].terminate()
    for name in originals:
        assert stack.processes[name].wait(timeout=20) == 0, stack.log(name)  # a clean exit
    job = run_job_to_end(stack.gateway_url, job_id)
    assert job["status"] == "SUCCEEDED", job
    assert stack.processes[newcomer].poll() is None
    for name in originals:  # restore the module's two workers for the tests after this one
        del stack.processes[name]
    stack.add_worker()


def test_embedded_redis_stack_trains_xor(tmp_path: Path) -> None:
    config = StackConfig.on_free_ports(workers=2, redis_url=None, log_dir=tmp_path)
    with LocalStack(config) as embedded:
        assert embedded.redis_url.startswith("unix://")
        job = run_job(embedded.gateway_url, spec(training={"steps": 300}))
    assert job["status"] == "SUCCEEDED", job
    assert job["latest_metrics"]["eval_accuracy"] == 1.0


def test_a_diverging_job_fails_with_the_step_and_the_value(stack: LocalStack) -> None:
    job = run_job(
        stack.gateway_url,
        spec(
            model={"layers": [2, 8, 1], "activation": "relu", "output": "identity", "loss": "mse"},
            training={"steps": 200, "optimizer": {"name": "sgd", "lr": 50.0}},
        ),
    )
    assert job["status"] == "FAILED", job
    assert job["failure_reason"].startswith("diverged:"), job["failure_reason"]
    assert " at step " in job["failure_reason"]
    assert job["step"] < 200


@pytest.mark.parametrize("service", ["scheduler", "paramserver"])
def test_a_job_resumes_from_its_checkpoint_when_a_service_is_killed(
    stack: LocalStack, service: str
) -> None:
    """SIGKILL the scheduler or the parameter server mid-job and start it again: the job
    resumes from its latest checkpoint, recomputes the steps after it, and ends with θ's
    version equal to its steps."""
    job_spec = spec(training={"steps": 500, "checkpoint_every": 50})
    job_id = submit_and_wait_for_step(stack.gateway_url, job_spec, 120)
    stack.restart(service, kill=True)
    job = run_job_to_end(stack.gateway_url, job_id)
    assert job["status"] == "SUCCEEDED", job
    assert job["step"] == 500
    assert job["latest_metrics"]["eval_accuracy"] == 1.0
    points = metric_series(stack.gateway_url, job_id)
    restores = [p for p in points if p.get("restored_from") is not None]
    if service == "paramserver" and not restores:
        # it died with θ at its latest checkpoint (a run ends at each checkpoint, and the
        # server waits there for the next run's plans): it reloaded exactly that θ, so
        # nothing was recomputed and every step was recorded once
        assert [p["step"] for p in points] == list(range(1, 501))
        return
    assert len(restores) == 1, restores
    resumed_at = restores[0]["restored_from"]
    assert resumed_at >= 100 and resumed_at % 50 == 0, resumed_at
    assert restores[0]["step"] == resumed_at + 1  # the first step recomputed after it
    # exactly once: after the restore, the versions run on without a gap or a repeat
    after = [p["step"] for p in points[points.index(restores[0]) :]]
    assert after == list(range(resumed_at + 1, 501))
    if service == "scheduler":
        assert "restoring" in [t["phase"] for t in job["status_transitions"]]


def test_cli_submit_watch_exit_code_follows_the_job(stack: LocalStack, tmp_path: Path) -> None:
    ok = tmp_path / "ok.json"
    ok.write_text(json.dumps(spec(training={"steps": 100})))
    bad = tmp_path / "diverges.yaml"
    bad.write_text(
        json.dumps(  # JSON is YAML too
            spec(
                model={
                    "layers": [2, 8, 1],
                    "activation": "relu",
                    "output": "identity",
                    "loss": "mse",
                },
                training={"steps": 100, "optimizer": {"name": "sgd", "lr": 50.0}},
            )
        )
    )
    cli = [
        sys.executable,
        "-m",
        "chainrule.cli",
        "submit",
        "--watch",
        "--gateway",
        stack.gateway_url,
    ]
    good = subprocess.run([*cli, str(ok)], capture_output=True, text=True, timeout=120)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "SUCCEEDED" in good.stdout
    failed = subprocess.run([*cli, str(bad)], capture_output=True, text=True, timeout=120)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "FAILED" in failed.stdout and "diverged" in failed.stdout


def test_a_standby_scheduler_takes_over_when_the_leader_is_killed(
    redis_url: str, tmp_path: Path
) -> None:
    """Two schedulers, one leading through its Redis lease; SIGKILL the leader and do not
    restart it: the standby takes the lease, claims the job and resumes it from its
    checkpoint; the workers find it through their list of schedulers."""
    standby = free_port()
    with running_stack(
        redis_url, tmp_path, extra_env=FAST_FAILOVER, standby_scheduler_port=standby
    ) as stack:
        job_spec = spec(training={"steps": 400, "checkpoint_every": 50})
        job_id = submit_and_wait_for_step(stack.gateway_url, job_spec, 120)
        stack.processes["scheduler"].kill()
        job = run_job_to_end(stack.gateway_url, job_id)
        assert job["status"] == "SUCCEEDED", (job, stack.log("scheduler-standby")[-3000:])
        assert job["step"] == 400
        points = metric_series(stack.gateway_url, job_id)
        assert [p["restored_from"] for p in points if p.get("restored_from") is not None]
        assert "leading" in stack.log("scheduler-standby")


def test_a_second_stack_on_taken_ports_refuses_to_start_and_leaves_nothing_running(
    stack: LocalStack, tmp_path: Path
) -> None:
    """The first stack's servers would answer the second's health checks: a second
    `chainrule up` on the same ports must fail at once, naming the port, not "start"."""
    second = LocalStack(dataclasses.replace(stack.config, log_dir=tmp_path, workers=1))
    with pytest.raises(OSError, match=f"port {stack.config.paramserver_port} for the paramserver"):
        second.start(timeout=30)
    assert second.processes == {}
    job = run_job(stack.gateway_url, spec(training={"steps": 50}))  # the first one is intact
    assert job["status"] == "SUCCEEDED", job

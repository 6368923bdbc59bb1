"""θ split over two real parameter-server processes trains to the θ one server gives:
first through the client directly, then as a whole stack with ``paramservers=2``."""

from __future__ import annotations

import io
import re
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import redis

from chainrule.cli.stack import LocalStack
from chainrule.nn import MLP
from chainrule.paramserver.client import ParamServerClient
from chainrule.paramserver.interface import ParamServer
from chainrule.paramserver.sharding import (
    ShardedParamServerClient,
    ShardsOutOfStepError,
    connect_paramservers,
)
from chainrule.rpc.auth import SCHEDULER
from chainrule.store.blobs import model_key
from tests.support.examples import example_spec
from tests.support.jobs import metric_series, run_job, run_job_to_end, submit_and_wait_for_step
from tests.support.processes import free_port, service_process, wait_for_grpc_health
from tests.support.real_redis import delete_prefixed, unique_prefix
from tests.support.stack import running_stack

pytestmark = pytest.mark.timeout(300)

Params = dict[str, np.ndarray]


@dataclass
class Servers:
    single: ParamServerClient  # a server of its own, the reference
    shards: list[ParamServerClient]  # each shard on its own, to look inside
    sharded: ShardedParamServerClient  # the two shards as one
    targets: str  # "host:port,host:port" of the shards


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    logs = Path(tmp_path_factory.mktemp("sharding"))
    targets = [f"127.0.0.1:{free_port()}" for _ in range(3)]
    with ExitStack() as cleanup:
        for i, target in enumerate(targets):
            env = {"CHAINRULE_PARAMSERVER_LISTEN": target, "CHAINRULE_PARAMSERVER_SHARD": str(i)}
            proc = cleanup.enter_context(
                service_process("chainrule.paramserver", env, str(logs / f"ps{i}.log"))
            )
            wait_for_grpc_health(target, proc)
        shards = [ParamServerClient(t) for t in targets[1:]]
        sharded = ShardedParamServerClient(shards)
        cleanup.callback(sharded.close)  # closes the shard clients too
        single = ParamServerClient(targets[0])
        cleanup.callback(single.close)
        yield Servers(single, shards, sharded, ",".join(targets[1:]))


def model(layers: list[int], seed: int = 0) -> Params:
    return MLP(layers, activation="tanh", output="softmax", loss="cross_entropy").init(
        np.random.default_rng(seed)
    )


def new_job_id() -> str:
    return f"job-{uuid.uuid4().hex[:8]}"


def gradients(params: Params, rng: np.random.Generator) -> Params:
    return {k: rng.normal(size=v.shape).astype(v.dtype) for k, v in params.items()}


def train(ps: ParamServer, job: str, params: Params, steps: int, seed: int) -> None:
    """``steps`` Applies of two pushes each, with different sample counts."""
    rng = np.random.default_rng(seed)
    for step in range(steps):
        for task, samples in ((f"{step}-a", 5), (f"{step}-b", 27)):
            assert ps.push(job, task, step, gradients(params, rng), samples, 1.0) is False
        assert ps.apply(job, step, [f"{step}-a", f"{step}-b"], 0.01) == (step + 1, False)


def pull_theta(ps: ParamServer, job: str, have: int = -1) -> tuple[int, Params]:
    version, theta = ps.pull(job, have)
    assert theta is not None, f"expected θ in the reply to a pull with have_version={have}"
    return version, theta


def assert_same_theta(a: Params, b: Params) -> None:
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-6, atol=0, err_msg=name)


def test_two_shards_train_to_the_theta_one_server_gives(servers: Servers) -> None:
    params = model([5, 32, 16, 3])  # six tensors from 3 to 512 elements
    hyper = {"beta1": 0.8, "weight_decay": 0.01}
    job = new_job_id()
    assert servers.sharded.create_job(job, params, "adam", hyper) == (0, True)
    assert servers.single.create_job(job, params, "adam", hyper) == (0, True)
    train(servers.sharded, job, params, steps=4, seed=1)
    train(servers.single, job, params, steps=4, seed=1)

    version, sharded = pull_theta(servers.sharded, job)
    assert version == 4
    _, single = pull_theta(servers.single, job)
    assert_same_theta(sharded, single)
    assert any(not np.allclose(sharded[k], params[k]) for k in params)  # it did train
    # each shard holds a part of θ (both non-empty, no tensor twice), at the same version
    parts = [pull_theta(shard, job) for shard in servers.shards]
    assert [v for v, _ in parts] == [4, 4]
    names = [set(theta) for _, theta in parts]
    assert all(names) and not names[0] & names[1] and names[0] | names[1] == set(params)


def test_a_model_with_fewer_tensors_than_shards_leaves_one_empty(servers: Servers) -> None:
    params = {"W": np.random.default_rng(2).normal(size=(4, 3)).astype(np.float32)}
    job = new_job_id()
    servers.sharded.create_job(job, params, "sgd", {"momentum": 0.9})
    servers.single.create_job(job, params, "sgd", {"momentum": 0.9})
    train(servers.sharded, job, params, steps=3, seed=3)
    train(servers.single, job, params, steps=3, seed=3)
    assert servers.shards[1].pull(job) == (3, None)  # holds no tensor but counts versions
    assert_same_theta(pull_theta(servers.sharded, job)[1], pull_theta(servers.single, job)[1])


def test_pull_of_an_unchanged_version_returns_no_theta(servers: Servers) -> None:
    params = model([3, 8, 2])
    job = new_job_id()
    servers.sharded.create_job(job, params, "sgd")
    assert servers.sharded.pull(job, have_version=0) == (0, None)
    train(servers.sharded, job, params, steps=1, seed=4)
    version, theta = pull_theta(servers.sharded, job, have=0)
    assert version == 1 and theta.keys() == params.keys()
    assert servers.sharded.pull(job, have_version=1) == (1, None)


def bad_pushes(params: Params) -> list[tuple[str, Params, str]]:
    good = {k: np.zeros_like(v) for k, v in params.items()}
    return [
        ("nan", {**good, "dense2.W": np.full_like(good["dense2.W"], np.nan)}, "contains NaN"),
        (
            "shape",
            {**good, "dense1.W": np.zeros((8, 3), np.float32)},
            r"'dense1.W' has shape \(8, 3\); expected \(3, 8\)",
        ),
        ("unknown", {**good, "extra": np.zeros(2, np.float32)}, r"unknown .*\['extra'\]"),
        ("dtype", {**good, "dense2.b": np.zeros(2, np.float64)}, "has dtype float64"),
        ("missing", {k: v for k, v in good.items() if k != "dense1.b"}, r"missing .*dense1.b"),
    ]


@pytest.mark.parametrize("case", range(5))
@pytest.mark.parametrize("fresh_client", [False, True], ids=["pulled", "never-pulled"])
def test_a_bad_push_is_rejected_whole_and_no_shard_changes(
    servers: Servers, case: int, fresh_client: bool
) -> None:
    params = model([3, 8, 2])
    job = new_job_id()
    servers.sharded.create_job(job, params, "sgd")
    name, grads, message = bad_pushes(params)[case]
    # a worker's client that has never pulled learns the job's shapes before pushing
    client = connect_paramservers(servers.targets) if fresh_client else servers.sharded
    try:
        with pytest.raises(grpc.RpcError) as err:
            client.push(job, f"bad-{name}", 0, grads, 4, 1.0)
    finally:
        if fresh_client:
            client.close()
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert re.search(message, err.value.details()), err.value.details()
    for shard in servers.shards:  # no shard buffered its part: applying it is refused
        with pytest.raises(grpc.RpcError) as refused:
            shard.apply(job, 0, [f"bad-{name}"], 0.1)
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    version, theta = pull_theta(servers.sharded, job)
    assert version == 0
    assert_same_theta(theta, params)
    # nor remembered it: the corrected gradient under the same task id is new everywhere
    good = {k: np.ones_like(v) for k, v in params.items()}
    assert servers.sharded.push(job, f"bad-{name}", 0, good, 4, 1.0) is False


def test_retries_are_duplicates_only_where_every_shard_saw_them(servers: Servers) -> None:
    params = model([3, 8, 2])
    job = new_job_id()
    servers.sharded.create_job(job, params, "sgd")
    assert servers.sharded.create_job(job, params, "sgd") == (0, False)
    grads = gradients(params, np.random.default_rng(5))
    assert servers.sharded.push(job, "t", 0, grads, 3, 1.0) is False
    assert servers.sharded.push(job, "t", 0, grads, 3, 1.0) is True
    assert servers.sharded.apply(job, 0, ["t"], 0.1) == (1, False)
    assert servers.sharded.apply(job, 0, ["t"], 0.1) == (1, True)
    servers.sharded.push(job, "late", 1, grads, 3, 1.0)
    assert servers.sharded.discard(job, ["late", "never-pushed"]) == 1
    status = servers.sharded.status(job)
    assert (status.version, status.checkpoint_version, status.restored) == (1, -1, False)
    assert servers.sharded.drop_job(job) is True
    assert servers.sharded.drop_job(job) is False
    with pytest.raises(grpc.RpcError) as err:
        servers.sharded.pull(job)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_shards_at_different_versions_are_reported_not_merged(servers: Servers) -> None:
    params = model([3, 8, 2])
    job = new_job_id()
    servers.sharded.create_job(job, params, "sgd")
    first = servers.shards[0]  # one shard moves on alone, as after a half-failed Apply
    _, part = pull_theta(first, job)
    first.push(job, "alone", 0, {k: np.ones_like(v) for k, v in part.items()}, 1, 1.0)
    first.apply(job, 0, ["alone"], 0.1)

    assert servers.sharded.status(job).version == 0  # the oldest shard's
    with pytest.raises(ShardsOutOfStepError) as err:
        servers.sharded.pull(job)
    assert isinstance(err.value, RuntimeError)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION  # as one server says it
    assert re.search(r"shard 0 \(\S+\) at 1, shard 1 \(\S+\) at 0", str(err.value)), err.value
    with pytest.raises(ShardsOutOfStepError, match=r"at 1, .* at 0"):
        servers.sharded.create_job(job, params, "sgd")


def test_one_target_gives_the_plain_client_and_several_the_sharded_one(
    servers: Servers,
) -> None:
    one = connect_paramservers(f" {servers.single.target} ")
    several = connect_paramservers(servers.targets.replace(",", " , "))
    try:
        assert type(one) is ParamServerClient
        assert isinstance(several, ShardedParamServerClient)
        assert [c.target for c in several.clients] == servers.targets.split(",")
    finally:
        one.close()
        several.close()


# -- the whole stack --------------------------------------------------------------------


def final_theta(stack: LocalStack, job: dict[str, Any]) -> Params:
    blob = redis.Redis.from_url(stack.redis_url).get(model_key(stack.config.key_prefix, job["id"]))
    assert blob is not None, "the final θ is stored when a job succeeds"
    with np.load(io.BytesIO(bytes(blob))) as saved:  # type: ignore[arg-type]
        return {k: saved[k] for k in saved.files}


def assert_theta_is_split_over_the_shards(stack: LocalStack) -> None:
    """After a SIGKILL, shard 1 comes back on its own port; a new job then trains, and
    while it does each shard holds its own part of θ."""
    stack.restart("paramserver-1", kill=True)
    job_id = submit_and_wait_for_step(stack.gateway_url, example_spec(), 5)
    parts: list[set[str]] = []
    for name in stack.config.paramserver_names:
        shard = ParamServerClient(
            stack.paramserver_target(name), credentials=stack.credentials(SCHEDULER)
        )
        try:
            parts.append(set(pull_theta(shard, job_id)[1]))
        finally:
            shard.close()
    assert all(parts) and not parts[0] & parts[1], parts
    assert parts[0] | parts[1] == {"dense1.W", "dense1.b", "dense2.W", "dense2.b"}


def train_on_stack(
    redis_url: str, logs: Path, shards: int, job_spec: dict[str, Any]
) -> tuple[dict[str, Any], Params]:
    with running_stack(redis_url, logs, paramservers=shards) as stack:
        assert set(stack.config.paramserver_names) <= set(stack.processes)
        job = run_job(stack.gateway_url, job_spec)
        assert job["status"] == "SUCCEEDED", job
        theta = final_theta(stack, job)
        if shards > 1:
            assert_theta_is_split_over_the_shards(stack)
        return job, theta


def test_a_two_shard_stack_trains_to_the_theta_of_a_one_shard_stack(
    redis_url: str, tmp_path: Path
) -> None:
    job_spec = example_spec(
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
            "optimizer": {"name": "adam", "lr": 0.01},
        },
    )
    one_job, one = train_on_stack(redis_url, tmp_path / "one", 1, job_spec)
    two_job, two = train_on_stack(redis_url, tmp_path / "two", 2, job_spec)
    assert one_job["step"] == two_job["step"] == 60
    assert one.keys() == two.keys()
    for name in one:
        np.testing.assert_allclose(two[name], one[name], rtol=1e-5, atol=1e-7, err_msg=name)


def test_a_job_resumes_from_its_checkpoint_when_one_shard_is_killed(
    redis_url: str, tmp_path: Path
) -> None:
    """SIGKILL one of two shards mid-job: it comes back at its latest checkpoint, behind
    the other shard, and the scheduler rolls both back to that checkpoint. (A kill that
    lands between two runs lands on a checkpoint, as runs end at every one: the shard
    then comes back at the version it died at and nothing is rolled back.)"""
    with running_stack(redis_url, tmp_path, paramservers=2) as stack:
        job_spec = example_spec(training={"steps": 500, "checkpoint_every": 50})
        job_id = submit_and_wait_for_step(stack.gateway_url, job_spec, 120)
        stack.restart("paramserver-1", kill=True)
        job = run_job_to_end(stack.gateway_url, job_id)
        points = metric_series(stack.gateway_url, job_id)
    assert job["status"] == "SUCCEEDED", job
    assert job["step"] == 500
    restores = [p["restored_from"] for p in points if p.get("restored_from") is not None]
    print(f"rolled back to {restores or 'nothing: the kill landed on a checkpoint'}")
    assert len(restores) <= 1 and all(r % 50 == 0 for r in restores), restores
    assert {p["step"] for p in points} == set(range(1, 501))  # no step without its point


def test_a_new_leader_resyncs_shards_one_of_which_restarted_while_it_was_away(
    redis_url: str, tmp_path: Path
) -> None:
    """The scheduler and one of two shards are SIGKILLed; the shard comes back first, at
    its latest checkpoint, behind the other: the new scheduler finds the job on shards
    at different versions and restores both to a checkpoint they share (it used to retry
    its create forever, the job RUNNING in phase "preparing")."""
    with running_stack(redis_url, tmp_path, paramservers=2) as stack:
        job_spec = example_spec(training={"steps": 500, "checkpoint_every": 50})
        job_id = submit_and_wait_for_step(stack.gateway_url, job_spec, 120)
        stack.processes["scheduler"].kill()
        stack.processes["scheduler"].wait(timeout=10)
        stack.restart("paramserver-1", kill=True)
        stack.respawn("scheduler")
        job = run_job_to_end(stack.gateway_url, job_id)
        log = stack.log("scheduler")
    assert job["status"] == "SUCCEEDED", (job, log[-3000:])
    assert job["step"] == 500
    assert "ShardsOutOfStepError" not in log


def test_shards_that_checkpointed_different_versions_restore_to_one_they_share(
    redis_url: str, tmp_path: Path
) -> None:
    """Shard 1 fails to write the checkpoint of step 4 that shard 0 wrote (it kept
    only its checkpoint of step 2): a restore brings both to step 2, the newest version
    both hold, since each shard keeps its last two checkpoints. Real processes and Redis."""
    prefix = unique_prefix()
    targets = [f"127.0.0.1:{free_port()}" for _ in range(2)]
    layers = [4, 6, 3]
    try:
        with ExitStack() as cleanup:
            for i, target in enumerate(targets):
                env = {
                    "CHAINRULE_PARAMSERVER_LISTEN": target,
                    "CHAINRULE_PARAMSERVER_SHARD": str(i),
                    "CHAINRULE_REDIS_URL": redis_url,
                    "CHAINRULE_KEY_PREFIX": prefix,
                }
                log = str(tmp_path / f"ps{i}.log")
                wait_for_grpc_health(target, cleanup.enter_context(service_process(
                    "chainrule.paramserver", env, log)))  # fmt: skip
            shards = [ParamServerClient(t) for t in targets]
            sharded = ShardedParamServerClient(shards)
            cleanup.callback(sharded.close)
            job = new_job_id()
            theta = model(layers)
            sharded.create_job(job, theta, "sgd")
            rng = np.random.default_rng(1)
            at_step_2: Params = {}
            for step in range(4):
                task = f"{job}-t{step}"
                for i, shard in enumerate(shards):  # step 3's checkpoint: shard 0's only
                    checkpoint = step == 1 or (step == 3 and i == 0)
                    shard.plan(job, step, [task], 0.1, checkpoint=checkpoint)
                grads = {k: rng.standard_normal(v.shape).astype(v.dtype) for k, v in theta.items()}
                sharded.push(job, task, step, grads, 8, 0.5)
                if step == 1:
                    _, pulled = sharded.pull(job)
                    assert pulled is not None
                    at_step_2 = {k: np.array(v) for k, v in pulled.items()}
            assert [s.status(job).checkpoint_version for s in shards] == [4, 2]

            status = sharded.restore(job)

            assert status.version == 2
            assert [s.status(job).version for s in shards] == [2, 2]
            _, restored = sharded.pull(job)
            assert restored is not None
            for name, value in at_step_2.items():
                np.testing.assert_array_equal(restored[name], value)
    finally:
        delete_prefixed(redis.Redis.from_url(redis_url), prefix)

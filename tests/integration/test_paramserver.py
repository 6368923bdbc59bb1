"""The real parameter server process over a real loopback socket."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from chainrule.nn import MLP, make_optimizer
from chainrule.paramserver.client import ParamServerClient
from chainrule.rpc.auth import Credentials
from tests.support.processes import free_port, service_process, wait_for_grpc_health

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def paramserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ParamServerClient]:
    port = free_port()
    log = Path(tmp_path_factory.mktemp("ps")) / "paramserver.log"
    env = {"CHAINRULE_PARAMSERVER_LISTEN": f"127.0.0.1:{port}"}
    with service_process("chainrule.paramserver", env, str(log)) as proc:
        wait_for_grpc_health(f"127.0.0.1:{port}", proc)
        client = ParamServerClient(f"127.0.0.1:{port}")
        yield client
        client.close()


def small_model() -> tuple[MLP, dict[str, np.ndarray]]:
    net = MLP([3, 4, 2], activation="tanh", output="softmax", loss="cross_entropy")
    return net, net.init(np.random.default_rng(0))


def new_job(ps: ParamServerClient, optimizer: str = "sgd", **hyper: float) -> tuple[str, dict]:
    job = f"job-{uuid.uuid4().hex[:8]}"
    _, params = small_model()
    assert ps.create_job(job, params, optimizer, hyper) == (0, True)
    return job, params


def pull_theta(ps: ParamServerClient, job: str, have: int = -1) -> tuple[int, dict]:
    version, theta = ps.pull(job, have)
    assert theta is not None, f"expected θ in the reply to a pull with have_version={have}"
    return version, theta


def grads_like(params: dict, rng: np.random.Generator) -> dict:
    return {k: rng.normal(size=v.shape).astype(np.float32) for k, v in params.items()}


def test_create_is_idempotent_and_does_not_reset_theta(paramserver: ParamServerClient) -> None:
    job, params = new_job(paramserver)
    g = grads_like(params, np.random.default_rng(1))
    paramserver.push(job, "t0", 0, g, 8, 1.0)
    paramserver.apply(job, 0, ["t0"], 0.1)
    assert paramserver.create_job(job, params, "sgd") == (1, False)
    version, theta = pull_theta(paramserver, job)
    assert version == 1
    np.testing.assert_allclose(
        theta["dense1.W"], params["dense1.W"] - 0.1 * g["dense1.W"], rtol=1e-6
    )


def test_pull_sends_theta_only_when_newer(paramserver: ParamServerClient) -> None:
    job, params = new_job(paramserver)
    version, theta = pull_theta(paramserver, job)
    assert version == 0 and theta is not None
    np.testing.assert_array_equal(theta["dense2.b"], params["dense2.b"])
    assert paramserver.pull(job, have_version=0) == (0, None)


def test_apply_is_the_sample_weighted_mean_then_one_optimizer_step(
    paramserver: ParamServerClient,
) -> None:
    job, params = new_job(paramserver, "sgd", momentum=0.9)
    rng = np.random.default_rng(2)
    opt = make_optimizer("sgd", momentum=0.9)
    expected = {k: v.copy() for k, v in params.items()}
    state = opt.init(expected)
    for step in range(3):
        g1, g2 = grads_like(params, rng), grads_like(params, rng)
        paramserver.push(job, f"s{step}a", step, g1, 1, 0.5)
        paramserver.push(job, f"s{step}b", step, g2, 3, 0.5)
        assert paramserver.apply(job, step, [f"s{step}a", f"s{step}b"], 0.05) == (step + 1, False)
        mean = {k: 0.25 * g1[k] + 0.75 * g2[k] for k in g1}
        opt.update_(expected, mean, state, 0.05)
    version, theta = pull_theta(paramserver, job)
    assert version == 3  # the version counts applied steps exactly
    for k in expected:
        np.testing.assert_allclose(theta[k], expected[k], rtol=1e-5, atol=1e-6)


def test_duplicated_push_and_apply_change_nothing(paramserver: ParamServerClient) -> None:
    job, params = new_job(paramserver)
    g = grads_like(params, np.random.default_rng(3))
    assert paramserver.push(job, "t", 0, g, 4, 1.0) is False
    assert paramserver.push(job, "t", 0, {k: 100 * v for k, v in g.items()}, 4, 1.0) is True
    assert paramserver.apply(job, 0, ["t"], 0.1) == (1, False)
    _, after_first = pull_theta(paramserver, job)
    assert paramserver.apply(job, 0, ["t"], 0.1) == (1, True)
    assert paramserver.push(job, "t", 0, g, 4, 1.0) is True  # already applied: still a no-op
    version, after_replay = pull_theta(paramserver, job)
    assert version == 1
    for k in params:
        np.testing.assert_array_equal(after_replay[k], after_first[k])
        np.testing.assert_allclose(after_first[k], params[k] - 0.1 * g[k], rtol=1e-6)


def bad_pushes(params: dict) -> list[tuple[str, dict, str]]:
    good = {k: np.zeros_like(v) for k, v in params.items()}
    nan = {**good, "dense1.W": np.full_like(params["dense1.W"], np.nan)}
    shape = {**good, "dense1.W": np.zeros((4, 3), np.float32)}
    unknown = {**good, "dense9.W": np.zeros(2, np.float32)}
    dtype = {**good, "dense2.b": np.zeros(2, np.float64)}
    missing = {k: v for k, v in good.items() if k != "dense2.b"}
    return [
        ("nan", nan, "'dense1.W' contains NaN"),
        ("shape", shape, r"'dense1.W' has shape \(4, 3\); expected \(3, 4\)"),
        ("unknown", unknown, r"unknown gradient tensor\(s\) \['dense9.W'\]"),
        ("dtype", dtype, "'dense2.b' has dtype float64; expected float32"),
        ("missing", missing, r"missing gradient tensor\(s\) \['dense2.b'\]"),
    ]


@pytest.mark.parametrize("case", range(5))
def test_bad_push_is_rejected_with_a_precise_status_and_theta_is_untouched(
    paramserver: ParamServerClient, case: int
) -> None:
    job, params = new_job(paramserver)
    name, grads, message = bad_pushes(params)[case]
    with pytest.raises(grpc.RpcError) as err:
        paramserver.push(job, f"bad-{name}", 0, grads, 4, 1.0)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert re.search(message, err.value.details()), err.value.details()
    # the task was not buffered: applying it is refused, and θ is as created
    with pytest.raises(grpc.RpcError) as err2:
        paramserver.apply(job, 0, [f"bad-{name}"], 0.1)
    assert err2.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    version, theta = pull_theta(paramserver, job)
    assert version == 0
    for k in params:
        np.testing.assert_array_equal(theta[k], params[k])


def test_unknown_job_and_future_step_get_clear_statuses(paramserver: ParamServerClient) -> None:
    with pytest.raises(grpc.RpcError) as err:
        paramserver.pull("no-such-job")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert "unknown job 'no-such-job'" in err.value.details()
    job, params = new_job(paramserver)
    paramserver.push(job, "t", 0, grads_like(params, np.random.default_rng(4)), 2, 1.0)
    with pytest.raises(grpc.RpcError) as err:
        paramserver.apply(job, 5, ["t"], 0.1)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "next step to apply is 0" in err.value.details()


def test_drop_job_forgets_it(paramserver: ParamServerClient) -> None:
    job, _ = new_job(paramserver)
    assert paramserver.drop_job(job) is True
    assert paramserver.drop_job(job) is False
    with pytest.raises(grpc.RpcError) as err:
        paramserver.pull(job)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_a_25m_parameter_model_moves_both_ways(paramserver: ParamServerClient) -> None:
    job = f"big-{uuid.uuid4().hex[:8]}"
    big = {"W": np.random.default_rng(5).standard_normal((5000, 5000), dtype=np.float32)}
    assert big["W"].nbytes == 100_000_000
    paramserver.create_job(job, big, "sgd")
    _, theta = pull_theta(paramserver, job)
    np.testing.assert_array_equal(theta["W"], big["W"])
    paramserver.push(job, "g", 0, {"W": np.ones_like(big["W"])}, 1, 0.0)
    paramserver.apply(job, 0, ["g"], 0.5)
    _, theta = pull_theta(paramserver, job, 0)
    np.testing.assert_allclose(theta["W"][:2, :2], big["W"][:2, :2] - 0.5)
    paramserver.drop_job(job)


def test_a_second_paramserver_on_a_taken_port_exits_at_once_naming_it(
    paramserver: ParamServerClient, tmp_path: Path
) -> None:
    """gRPC Python's default SO_REUSEPORT would let it "serve" beside the first."""
    env = {"CHAINRULE_PARAMSERVER_LISTEN": paramserver.target}
    log = tmp_path / "second.log"
    with service_process("chainrule.paramserver", env, str(log)) as proc:
        code = proc.wait(timeout=30)
    assert code != 0
    assert f"could not bind gRPC server to {paramserver.target}" in log.read_text()
    job_id, _ = new_job(paramserver)  # the first one still serves every call
    assert paramserver.pull(job_id, -1)[0] == 0


def test_an_apply_another_leader_made_is_refused_and_the_log_names_who_applied_what(
    tmp_path: Path,
) -> None:
    """Leader 1 applies step 0; leader 2 (a successor) sending the same Apply is told
    that another leader applied it (FAILED_PRECONDITION: resync), not "duplicate"; then
    leader 1 is fenced out, and Status's log shows each version once with its epoch."""
    port = free_port()
    env = {"CHAINRULE_PARAMSERVER_LISTEN": f"127.0.0.1:{port}"}
    with service_process("chainrule.paramserver", env, str(tmp_path / "ps.log")) as proc:
        wait_for_grpc_health(f"127.0.0.1:{port}", proc)
        first, second = (
            ParamServerClient(f"127.0.0.1:{port}", credentials=Credentials(epoch=e)) for e in (1, 2)
        )
        job, params = new_job(first)
        g = grads_like(params, np.random.default_rng(5))
        first.push(job, "t0", 0, g, 4, 1.0)
        assert first.apply(job, 0, ["t0"], 0.1) == (1, False)
        assert first.apply(job, 0, ["t0"], 0.1) == (1, True)  # its own retry
        with pytest.raises(grpc.RpcError) as other:
            second.apply(job, 0, ["t0"], 0.1)
        assert other.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "applied under leader epoch 1, not under this caller's 2" in other.value.details()
        second.push(job, "t1", 1, g, 4, 1.0)
        assert second.apply(job, 1, ["t1"], 0.1) == (2, False)
        with pytest.raises(grpc.RpcError) as fenced:
            first.apply(job, 1, ["t1"], 0.1)
        assert fenced.value.code() == grpc.StatusCode.ABORTED  # deposed: it may not retry
        log = second.status(job, log=True).log
        assert [(e.step, e.epoch, e.task_ids) for e in log] == [(0, 1, ("t0",)), (1, 2, ("t1",))]
        assert second.status(job).log == ()  # only when asked
        first.close()
        second.close()

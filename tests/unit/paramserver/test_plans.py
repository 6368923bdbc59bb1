"""Plans: the scheduler defines a sync step in advance; the parameter server applies it
the moment its gradients are in, summed in plan order whatever order they arrive in."""

import itertools

import numpy as np
import pytest

from chainrule.paramserver.state import MAX_PLANS, OutOfOrderError, ParameterStore


def store_with_job() -> ParameterStore:
    store = ParameterStore()
    store.create("j", {"W": np.zeros((3, 2), np.float32)}, "sgd")
    return store


def gradients(n: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(7)
    return [{"W": rng.standard_normal((3, 2)).astype(np.float32) * 1e3} for _ in range(n)]


def test_a_plan_applies_when_its_last_gradient_arrives_before_or_after_it() -> None:
    grads = gradients(2)
    early, late = store_with_job(), store_with_job()
    early.plan("j", 0, ["a", "b"], lr=0.1)
    early.push("j", "a", 0, grads[0], 1, 0.0)
    assert early.job("j").version == 0  # waits for b
    early.push("j", "b", 0, grads[1], 1, 0.0)
    for name, g in zip("ab", grads, strict=True):
        late.push("j", name, 0, g, 1, 0.0)
    assert late.job("j").version == 0  # no plan yet: nothing moves
    assert late.plan("j", 0, ["a", "b"], lr=0.1) == (1, False)
    assert early.job("j").version == 1
    np.testing.assert_array_equal(early.job("j").params["W"], late.job("j").params["W"])
    expected = -0.1 * (grads[0]["W"] * np.float32(0.5) + grads[1]["W"] * np.float32(0.5))
    np.testing.assert_allclose(early.job("j").params["W"], expected, rtol=1e-6)


def test_the_sum_follows_plan_order_bit_for_bit_whatever_the_arrival_order() -> None:
    grads = gradients(4)
    names = ["s0", "s1", "s2", "s3"]
    results = []
    for order in itertools.permutations(range(4)):
        store = store_with_job()
        store.plan("j", 0, names, lr=1.0)
        for i in order:
            store.push("j", names[i], 0, grads[i], i + 1, 0.0)
        results.append(store.job("j").params["W"].tobytes())
    assert len(set(results)) == 1


def test_a_quorum_plan_applies_on_the_first_k_and_later_ones_are_no_ops() -> None:
    store = store_with_job()
    grads = gradients(3)
    store.plan("j", 0, ["a", "b", "c"], lr=1.0, quorum=2)
    store.push("j", "c", 0, grads[2], 1, 0.0)
    store.push("j", "a", 0, grads[0], 1, 0.0)
    assert store.job("j").version == 1
    theta = store.job("j").params["W"].copy()
    assert store.push("j", "b", 0, grads[1], 1, 0.0) is True  # late: a duplicate, a no-op
    np.testing.assert_array_equal(store.job("j").params["W"], theta)
    assert store.job("j").buffers == {}


def test_plans_are_idempotent_and_bounded() -> None:
    store = store_with_job()
    store.plan("j", 0, ["a"], lr=1.0)
    store.push("j", "a", 0, gradients(1)[0], 1, 0.0)
    assert store.plan("j", 0, ["a"], lr=1.0) == (1, True)  # applied already: a replay
    store.plan("j", 1, ["x"], lr=1.0)
    store.plan("j", 1, ["y"], lr=1.0)  # rolled back and re-planned: the new plan holds
    store.push("j", "x", 1, gradients(1)[0], 1, 0.0)
    assert store.job("j").version == 1
    store.push("j", "y", 1, gradients(1)[0], 1, 0.0)
    assert store.job("j").version == 2
    with pytest.raises(OutOfOrderError, match=f"more than {MAX_PLANS} steps ahead"):
        store.plan("j", 2 + MAX_PLANS, ["z"], lr=1.0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"task_ids": []}, "at least one task id"),
        ({"task_ids": ["a", "a"]}, "names each task once"),
        ({"quorum": 3}, r"quorum must lie in \[0, 2\]; got 3"),
        ({"lr": float("nan")}, "lr must be finite; got nan"),
    ],
)
def test_a_bad_plan_is_refused_and_changes_nothing(kwargs: dict, match: str) -> None:
    store = store_with_job()
    args = {"job_id": "j", "step": 0, "task_ids": ["a", "b"], "lr": 0.1, **kwargs}
    with pytest.raises(ValueError, match=match):
        store.plan(**args)
    assert store.job("j").plans == {}


def test_waiting_for_a_version_returns_when_it_is_reached_or_times_out() -> None:
    store = store_with_job()
    job = store.job("j")
    with job.lock:
        assert job.wait_for(0, 0.0) is True
        assert job.wait_for(1, 0.01) is False


def test_a_runs_plans_apply_in_turn_and_a_bad_one_registers_none() -> None:
    from chainrule.paramserver.records import PlannedStep

    store = store_with_job()
    grads = gradients(4)
    bad_run = [PlannedStep(0, ["a"], 0.1), PlannedStep(1, ["b", "b"], 0.1)]
    with pytest.raises(ValueError, match="names each task once"):
        store.plan_run("j", bad_run)
    assert store.job("j").plans == {}  # the good first plan was not kept either
    run = [PlannedStep(s, [f"t{s}"], 0.1) for s in range(3)]
    assert store.plan_run("j", run) == (0, False)
    for s in range(3):
        store.push("j", f"t{s}", s, grads[s], 1, 0.5 + s)
        assert store.job("j").version == s + 1  # each step as its gradient arrives
    assert [(a.step, a.loss, a.tasks) for a in store.job("j").applied_steps] == [
        (0, 0.5, 1),
        (1, 1.5, 1),
        (2, 2.5, 1),
    ]
    assert store.plan_run("j", run[-1:]) == (3, True)  # a replay changes nothing
    with pytest.raises(OutOfOrderError, match="ahead"):
        store.plan_run("j", [PlannedStep(3, ["x"], 0.1), PlannedStep(3 + MAX_PLANS, ["y"], 0.1)])
    assert store.job("j").plans == {}

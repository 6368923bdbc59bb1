"""The applied-step log: every version a job's θ went through, once, with the leader
epoch and the tasks of the step; an Apply repeated under another epoch is refused."""

import numpy as np
import pytest

from chainrule.paramserver.records import APPLIED_LOG, LoggedStep
from chainrule.paramserver.state import OutOfOrderError, ParameterStore


def store_with_job() -> ParameterStore:
    store = ParameterStore()
    store.create("j", {"W": np.zeros(2, np.float32)}, "sgd")
    return store


def grad() -> dict[str, np.ndarray]:
    return {"W": np.ones(2, np.float32)}


def test_applies_and_plans_are_logged_once_each_with_their_epoch_and_tasks() -> None:
    store = store_with_job()
    store.push("j", "a", 0, grad(), 1, 0.0)
    store.apply("j", 0, ["a"], 0.1, epoch=1)
    store.apply("j", 0, ["a"], 0.1, epoch=1)  # a retry: a duplicate, not logged again
    store.plan("j", 1, ["c", "b"], 0.1, epoch=2)
    store.push("j", "b", 1, grad(), 1, 0.0)
    store.push("j", "c", 1, grad(), 1, 0.0)
    job = store.job("j")
    assert list(job.log) == [LoggedStep(0, 1, ("a",)), LoggedStep(1, 2, ("c", "b"))]
    assert [store.applied_epoch(job, s) for s in (0, 1, 2)] == [1, 2, None]


def test_a_duplicate_apply_under_another_epoch_is_refused_and_changes_nothing() -> None:
    store = store_with_job()
    store.push("j", "a", 0, grad(), 1, 0.0)
    store.apply("j", 0, ["a"], 0.1, epoch=1)
    theta = store.job("j").params["W"].copy()
    assert store.apply("j", 0, ["a"], 0.1, epoch=1) == (1, True)  # its own retry
    with pytest.raises(OutOfOrderError, match=r"applied under leader epoch 1, not under .* 2"):
        store.apply("j", 0, ["a"], 0.1, epoch=2)  # the step another leader applied
    np.testing.assert_array_equal(store.job("j").params["W"], theta)
    assert store.job("j").version == 1 and len(store.job("j").log) == 1


def test_the_log_is_bounded_and_finds_what_it_still_holds() -> None:
    store = store_with_job()
    steps = APPLIED_LOG + 5
    for step in range(steps):
        store.push("j", f"t{step}", step, grad(), 1, 0.0)
        store.apply("j", step, [f"t{step}"], 0.0, epoch=3)
    job = store.job("j")
    assert len(job.log) == APPLIED_LOG and job.log[0].step == 5
    assert store.applied_epoch(job, 4) is None and store.applied_epoch(job, 5) == 3
    assert store.apply("j", 2, ["t2"], 0.0, epoch=4) == (steps, True)  # forgotten: a duplicate

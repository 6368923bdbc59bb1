"""ParameterStore with checkpoints: a drop never costs a job its checkpoint. A create
after a drop resumes from the checkpoint instead of overwriting it with version 0; the
scheduler's explicit restore brings a dropped job back; a worker's call does not."""

from __future__ import annotations

import numpy as np
import pytest

from chainrule.paramserver import state
from chainrule.paramserver.records import PlannedStep
from chainrule.paramserver.state import ParameterStore, ThetaNotFoundError
from tests.unit.fakes import MemoryCheckpoints

THETA = {"w": np.array([1.0, 2.0], np.float32)}


def trained_two_steps(store: ParameterStore) -> None:
    store.create("j", THETA, "sgd")
    for step in (0, 1):
        store.plan("j", step, [f"t{step}"], 0.5, checkpoint=True)
        store.push("j", f"t{step}", step, {"w": np.ones(2, np.float32)}, 1, 0.1)


def test_a_create_after_a_drop_resumes_from_the_checkpoint() -> None:
    checkpoints = MemoryCheckpoints()
    store = ParameterStore(checkpoints)
    trained_two_steps(store)
    assert checkpoints.version("j") == 2
    store.drop("j")
    with pytest.raises(ThetaNotFoundError, match="dropped"):  # a worker's pull
        store.job("j")
    assert store.create("j", THETA, "sgd") == (2, False)  # not (0, True)
    assert checkpoints.version("j") == 2  # nothing overwritten
    np.testing.assert_allclose(store.job("j").params["w"], [0.0, 1.0])  # 2 steps of lr 0.5


def test_the_schedulers_restore_brings_a_dropped_job_back() -> None:
    store = ParameterStore(MemoryCheckpoints())
    trained_two_steps(store)
    store.drop("j")
    job, restored = store.restore("j")
    assert restored and job.version == 2
    assert store.job("j") is job  # held again: workers reach it


def test_without_a_checkpoint_a_dropped_job_is_gone() -> None:
    store = ParameterStore(MemoryCheckpoints())
    store.create("k", THETA, "sgd")
    store.drop("k")
    store.checkpoints.saved.clear()  # type: ignore[union-attr]
    with pytest.raises(ThetaNotFoundError):
        store.restore("k")
    assert store.create("k", THETA, "sgd") == (0, True)


def test_tombstones_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state, "MAX_TOMBSTONES", 3)
    store = ParameterStore()
    for i in range(5):
        store.drop(f"j{i}")
    assert list(store._dropped) == ["j2", "j3", "j4"]


def test_plans_are_kept_in_a_run_after_a_restore() -> None:
    store = ParameterStore(MemoryCheckpoints())
    trained_two_steps(store)
    store.drop("j")
    store.restore("j")
    assert store.plan_run("j", [PlannedStep(2, ["t2"], 0.5)]) == (2, False)

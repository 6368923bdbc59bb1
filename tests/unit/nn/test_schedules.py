"""Learning-rate schedules: values at chosen steps, warmup, and argument validation."""

from __future__ import annotations

import math
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chainrule.nn import SCHEDULES, Schedule


def test_constant() -> None:
    schedule = Schedule("constant", lr=0.3)
    assert [schedule(s) for s in (0, 1, 10, 10**6)] == [0.3, 0.3, 0.3, 0.3]


def test_step_decay_drops_by_gamma_every_step_size_steps() -> None:
    schedule = Schedule("step", lr=0.1, gamma=0.5, step_size=10)
    assert schedule(0) == pytest.approx(0.1)
    assert schedule(9) == pytest.approx(0.1)
    assert schedule(10) == pytest.approx(0.05)
    assert schedule(19) == pytest.approx(0.05)
    assert schedule(25) == pytest.approx(0.025)
    assert schedule(100) == pytest.approx(0.1 * 0.5**10)


def test_exponential_decay_is_gamma_to_the_step() -> None:
    schedule = Schedule("exponential", lr=0.2, gamma=0.9)
    assert schedule(0) == pytest.approx(0.2)
    assert schedule(1) == pytest.approx(0.18)
    assert schedule(3) == pytest.approx(0.2 * 0.729)


def test_cosine_decays_from_lr_to_min_lr_and_stays() -> None:
    schedule = Schedule("cosine", lr=1.0, min_lr=0.1, decay_steps=100)
    assert schedule(0) == pytest.approx(1.0)
    assert schedule(25) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4)))
    assert schedule(50) == pytest.approx(0.55)  # halfway: the mean of lr and min_lr
    assert schedule(100) == pytest.approx(0.1)
    assert schedule(1000) == pytest.approx(0.1)


def test_cosine_defaults_to_zero_at_the_end() -> None:
    assert Schedule("cosine", lr=0.5, decay_steps=10)(10) == pytest.approx(0.0, abs=1e-15)


def test_warmup_climbs_linearly_to_lr() -> None:
    schedule = Schedule("constant", lr=0.2, warmup_steps=4)
    assert [schedule(s) for s in range(6)] == pytest.approx([0.05, 0.1, 0.15, 0.2, 0.2, 0.2])


def test_decay_starts_after_warmup() -> None:
    step = Schedule("step", lr=0.1, gamma=0.5, step_size=10, warmup_steps=5)
    assert step(0) == pytest.approx(0.02)
    assert step(4) == pytest.approx(0.1)
    assert step(14) == pytest.approx(0.1)  # 9 steps after warmup
    assert step(15) == pytest.approx(0.05)  # 10 steps after warmup
    exponential = Schedule("exponential", lr=1.0, gamma=0.5, warmup_steps=2)
    assert [exponential(s) for s in range(5)] == pytest.approx([0.5, 1.0, 1.0, 0.5, 0.25])
    cosine = Schedule("cosine", lr=1.0, decay_steps=10, warmup_steps=10)
    assert cosine(9) == pytest.approx(1.0)
    assert cosine(10) == pytest.approx(1.0)
    assert cosine(15) == pytest.approx(0.5)
    assert cosine(20) == pytest.approx(0.0, abs=1e-15)


@pytest.mark.parametrize("name", SCHEDULES)
@settings(max_examples=50, deadline=None, derandomize=True)
@given(
    lr=st.floats(1e-6, 10.0),
    gamma=st.floats(0.01, 1.0),
    warmup=st.integers(0, 20),
    steps=st.lists(st.integers(0, 5000), min_size=2, max_size=10),
)
def test_rate_never_exceeds_lr_and_never_grows_after_warmup(
    name: str, lr: float, gamma: float, warmup: int, steps: list[int]
) -> None:
    schedule = Schedule(name, lr=lr, gamma=gamma, warmup_steps=warmup, step_size=7, decay_steps=50)
    after_warmup = sorted(s + warmup for s in steps)
    rates = [schedule(s) for s in after_warmup]
    assert all(0 <= r <= lr * (1 + 1e-12) for r in rates)
    assert all(later <= earlier * (1 + 1e-12) for earlier, later in pairwise(rates))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "linear"}, r"unknown lr schedule 'linear'; expected one of: constant, step"),
        ({"lr": 0.0}, "lr must be a finite number > 0; got 0.0"),
        ({"lr": -0.1}, "lr must be a finite number > 0; got -0.1"),
        ({"lr": math.nan}, "lr must be a finite number > 0; got nan"),
        ({"lr": math.inf}, "lr must be a finite number > 0; got inf"),
        ({"gamma": 0.0}, r"gamma must lie in \(0, 1\]; got 0.0"),
        ({"gamma": 1.5}, r"gamma must lie in \(0, 1\]; got 1.5"),
        ({"warmup_steps": -1}, "warmup_steps must be an integer >= 0; got -1"),
        ({"warmup_steps": 2.5}, "warmup_steps must be an integer >= 0; got 2.5"),
        ({"step_size": 0}, "step_size must be an integer >= 1; got 0"),
        ({"decay_steps": 0}, "decay_steps must be an integer >= 1; got 0"),
        ({"lr": 0.1, "min_lr": 0.2}, r"min_lr must lie in \[0, lr=0.1\]; got 0.2"),
        ({"min_lr": -0.01}, r"min_lr must lie in \[0, lr=0.01\]; got -0.01"),
    ],
)
def test_invalid_arguments(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Schedule(**kwargs)  # type: ignore[arg-type]


def test_negative_step_is_rejected() -> None:
    with pytest.raises(ValueError, match="step must be >= 0; got -1"):
        Schedule()(-1)

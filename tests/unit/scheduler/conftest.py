"""The scheduler unit tests' fixture: a fresh simulated stack per test."""

from __future__ import annotations

import pytest

from tests.support.scheduler_sim import Stack, make_stack


@pytest.fixture
def stack() -> Stack:
    return make_stack()

"""Retrying idempotent RPCs through transient failures."""

from __future__ import annotations

import time
from typing import Any

import grpc
import pytest

from chainrule.rpc.retry import with_retries


class FakeRpcError(grpc.RpcError):  # type: ignore[misc]
    def __init__(self, code: grpc.StatusCode) -> None:
        super().__init__(code.name)
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code


class Flaky:
    """A call that raises the given errors in turn, then returns "ok"."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


@pytest.mark.parametrize(
    "code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED], ids=str
)
def test_transient_failures_are_retried_until_the_call_succeeds(code: grpc.StatusCode) -> None:
    call = Flaky(FakeRpcError(code), FakeRpcError(code))
    assert with_retries(call, attempts=4, pause=0) == "ok"
    assert call.calls == 3


def test_other_rpc_errors_are_raised_at_once() -> None:
    call = Flaky(FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT))
    with pytest.raises(FakeRpcError) as raised:
        with_retries(call, attempts=4, pause=0)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert call.calls == 1


def test_errors_that_are_not_rpc_errors_are_not_retried() -> None:
    call = Flaky(ValueError("bad gradient shape"))
    with pytest.raises(ValueError, match="bad gradient shape"):
        with_retries(call, attempts=4, pause=0)
    assert call.calls == 1


def test_a_transient_failure_on_the_last_attempt_is_raised() -> None:
    call = Flaky(*[FakeRpcError(grpc.StatusCode.UNAVAILABLE) for _ in range(3)])
    with pytest.raises(FakeRpcError) as raised:
        with_retries(call, attempts=3, pause=0)
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    assert call.calls == 3


def test_the_pause_between_attempts_doubles(monkeypatch: pytest.MonkeyPatch) -> None:
    pauses: list[float] = []

    def fake_sleep(seconds: float) -> Any:
        pauses.append(seconds)

    monkeypatch.setattr(time, "sleep", fake_sleep)
    call = Flaky(*[FakeRpcError(grpc.StatusCode.UNAVAILABLE) for _ in range(4)])
    with pytest.raises(FakeRpcError):
        with_retries(call, attempts=4, pause=0.25)
    assert pauses == [0.25, 0.5, 1.0]  # none after the last attempt


def test_the_pause_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    pauses: list[float] = []
    monkeypatch.setattr(time, "sleep", pauses.append)
    call = Flaky(*[FakeRpcError(grpc.StatusCode.UNAVAILABLE) for _ in range(6)])
    assert with_retries(call, attempts=7, pause=0.5, max_pause=2.0) == "ok"
    assert pauses == [0.5, 1.0, 2.0, 2.0, 2.0, 2.0]

"""paramserver.fence: the highest epoch seen wins; control calls of a lower one are refused."""

from __future__ import annotations

from typing import Any, NamedTuple

import grpc
import pytest

from chainrule.paramserver.fence import FenceInterceptor

CONTROL, DATA = "/ps/Apply", "/ps/Push"
PASSED = object()


class Details(NamedTuple):
    method: str
    invocation_metadata: tuple[tuple[str, str], ...]


class AbortedError(Exception):
    pass


class Context:
    def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise AbortedError(code, details)


def call(fence: FenceInterceptor, method: str, epoch: int | None) -> Any:
    metadata = (("chainrule-epoch", str(epoch)),) if epoch is not None else ()
    handler = fence.intercept_service(lambda d: PASSED, Details(method, metadata))
    if handler is PASSED or handler is None:
        return PASSED
    with pytest.raises(AbortedError) as refused:
        handler.unary_unary(b"", Context())
    return refused.value.args


def test_a_lower_epoch_is_refused_once_a_higher_one_was_seen() -> None:
    fence = FenceInterceptor([CONTROL])
    assert call(fence, CONTROL, None) is PASSED  # nothing seen yet: 0 is the highest
    assert call(fence, CONTROL, 1) is PASSED
    assert call(fence, CONTROL, 2) is PASSED
    assert fence.epoch == 2
    for stale in (1, 0, None):
        code, details = call(fence, CONTROL, stale)
        assert code == grpc.StatusCode.ABORTED and details.startswith("deposed")
        assert "epoch 2" in details
    assert call(fence, DATA, 1) is PASSED  # a worker's calls are not fenced
    assert call(fence, CONTROL, 2) is PASSED and fence.epoch == 2

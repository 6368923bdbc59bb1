"""The parameter server's metrics: its RPCs' latency and errors, the tensor bytes in and
out; updated by its servicer through the helpers below."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from prometheus_client import Counter, Histogram

from chainrule.telemetry.common import LATENCY_BUCKETS, children

PARAMSERVER_RPCS = ("Push", "Pull", "PushPull", "Plan", "Apply")
#: payload sizes from 1 KiB to 1 GiB, in steps of 4
BYTES_BUCKETS = tuple(float(2**exponent) for exponent in range(10, 31, 2))

PARAMSERVER_RPC_SECONDS = Histogram(
    "chainrule_paramserver_rpc_duration_seconds",
    "Time the parameter server took to answer Push, Pull and Apply, errors included.",
    ["rpc"],
    buckets=LATENCY_BUCKETS,
    registry=None,
)
PARAMSERVER_RPC_ERRORS_TOTAL = Counter(
    "chainrule_paramserver_rpc_errors_total",
    "Push, Pull and Apply calls refused or failed, by gRPC status code "
    "(INVALID_ARGUMENT: bad tensors; FAILED_PRECONDITION: out of order; NOT_FOUND: no such job).",
    ["rpc", "code"],
    registry=None,
)
GRADIENT_BYTES = Histogram(
    "chainrule_paramserver_gradient_bytes",
    "Size of the gradient tensors received in one Push (raw tensor bytes); "
    "the sum is all gradient bytes received.",
    buckets=BYTES_BUCKETS,
    registry=None,
)
PARAMS_SENT_BYTES_TOTAL = Counter(
    "chainrule_paramserver_params_sent_bytes_total",
    "Bytes of θ sent in Pull replies (raw tensor bytes; an unchanged θ sends none).",
    registry=None,
)

METRICS = (
    PARAMSERVER_RPC_SECONDS,
    PARAMSERVER_RPC_ERRORS_TOTAL,
    GRADIENT_BYTES,
    PARAMS_SENT_BYTES_TOTAL,
)

_RPC_SECONDS = children(PARAMSERVER_RPC_SECONDS, "rpc", PARAMSERVER_RPCS)


@contextmanager
def paramserver_rpc(rpc: str, context: Any) -> Iterator[None]:
    """Time one paramserver RPC; an RPC that leaves by an exception (``context.abort``
    included) is counted under the status code set on ``context`` (UNKNOWN if none)."""
    started = time.perf_counter()
    try:
        yield
    except BaseException:
        PARAMSERVER_RPC_ERRORS_TOTAL.labels(rpc=rpc, code=_code_name(context)).inc()
        raise
    finally:
        seconds = _RPC_SECONDS.get(rpc) or PARAMSERVER_RPC_SECONDS.labels(rpc=rpc)
        seconds.observe(time.perf_counter() - started)


def _code_name(context: Any) -> str:
    code = context.code() if hasattr(context, "code") else None
    return str(getattr(code, "name", "UNKNOWN") if code is not None else "UNKNOWN")


def record_gradient_bytes(tensors: Mapping[str, Any]) -> None:
    """One Push's gradients (name -> ndarray) arrived."""
    GRADIENT_BYTES.observe(sum(int(t.nbytes) for t in tensors.values()))


def record_params_sent(tensors: Mapping[str, Any]) -> None:
    """θ (name -> ndarray) goes out in a Pull reply."""
    PARAMS_SENT_BYTES_TOTAL.inc(sum(int(t.nbytes) for t in tensors.values()))

"""θ split over several parameter servers (shards) behind the one :class:`ParamServer` API.

``CHAINRULE_PARAMSERVERS=host:port,host:port,...`` names the shards, in the same order in
every process. Each tensor lives whole on one shard (placement.py says which, and why the
split is exact). Workers push and pull per shard in parallel; Apply goes to every shard,
and each shard counts the same versions (a shard may hold none of a small model's tensors
and still counts them).

Consistency: a failure half way (one shard refused an Apply, a shard was restored from an
older checkpoint) can leave the shards at different versions. Every call that reports a
version checks that the shards agree and raises :class:`ShardsOutOfStepError` naming them
when they do not; ``status()`` reports the oldest shard and ``restore()`` brings every shard
back to its latest checkpoint, which is how the scheduler resynchronises them. Because every
mutation is idempotent, retrying a half-done Push or Apply completes it.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from typing import TypeVar

import grpc
import numpy as np

from chainrule.nn import Params
from chainrule.paramserver.client import ParamServerClient
from chainrule.paramserver.interface import ParamServer
from chainrule.paramserver.placement import merge, split
from chainrule.paramserver.records import PlannedStep, ThetaStatus
from chainrule.rpc.auth import Credentials
from chainrule.rpc.codec import check_like

T = TypeVar("T")

VERSION_SETTLE_SECONDS = 2.0
"""How long a pull waits for shards behind the others: an Apply reaches the shards in
parallel, so a pull racing it may see them one version apart for a moment."""

SHARD_WAIT_FACTOR = 12
"""A safety net against a hung thread, in client timeouts: every shard call ends by its
own gRPC deadline, and the single-server client retries a transient failure ten times."""

REMEMBERED_LAYOUTS = 256
"""How many jobs' tensor names, shapes and dtypes a client keeps to check pushes against."""


class ShardsOutOfStepError(RuntimeError, grpc.RpcError):  # type: ignore[misc]
    """The shards hold a job at different versions; ``restore()`` resynchronises them.

    Also a gRPC error with FAILED_PRECONDITION, the status one server gives when θ is not
    at the version the caller expects (it was restored from a checkpoint), so callers
    that resynchronise on that status handle this the same way."""

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.FAILED_PRECONDITION

    def details(self) -> str:
        return str(self)


class RejectedError(grpc.RpcError):  # type: ignore[misc]
    """A request refused before any shard saw it, with the status a server would give."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


class ShardedParamServerClient(ParamServer):
    """:class:`ParamServer` over K shards: it holds one :class:`ParamServerClient` per
    shard (``clients``, in shard order) and makes one call per shard, in parallel.

    Pushes are checked here against the job's tensor names, shapes and dtypes (learnt
    from ``create_job`` or a pull) before any shard sees them, so a bad gradient is
    refused whole, never buffered by some shards.
    """

    def __init__(self, clients: list[ParamServerClient]) -> None:
        if not clients:
            raise ValueError("a sharded parameter server needs at least one shard")
        self.clients = list(clients)
        self.target = ",".join(c.target for c in self.clients)
        self.timeout = max(c.timeout for c in self.clients)
        self._pool = ThreadPoolExecutor(len(self.clients), thread_name_prefix="paramserver-shard")
        self._layouts: OrderedDict[str, Params] = OrderedDict()
        self._lock = threading.Lock()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        for client in self.clients:
            client.close()

    def create_job(
        self,
        job_id: str,
        params: Params,
        optimizer: str,
        hyper: Mapping[str, float] | None = None,
        flags: Mapping[str, bool] | None = None,
    ) -> tuple[int, bool]:
        parts = split(params, len(self.clients))
        replies = self._each(lambda i, c: c.create_job(job_id, parts[i], optimizer, hyper, flags))
        version = self._agreed(job_id, "create_job", [v for v, _ in replies])
        if all(created for _, created in replies):
            self._remember(job_id, params)
        else:  # the job was there already, maybe with other shapes: learn them from a pull
            self._forget(job_id)
        return version, any(created for _, created in replies)

    def pull(
        self, job_id: str, have_version: int = -1, min_version: int = 0, wait_seconds: float = 0.0
    ) -> tuple[int, Params | None]:
        """(version, θ merged from every shard) or (version, None) when ``have_version``
        is current; shards behind the others get :data:`VERSION_SETTLE_SECONDS` to catch up."""
        replies = self._each(lambda _, c: c.pull(job_id, have_version, min_version, wait_seconds))
        deadline = time.monotonic() + VERSION_SETTLE_SECONDS
        while True:
            newest = max(v for v, _ in replies)
            behind = [i for i, (v, _) in enumerate(replies) if v != newest]
            if not behind:
                break
            if time.monotonic() >= deadline:
                raise self._out_of_step(job_id, "pull", [v for v, _ in replies])
            time.sleep(0.01)
            again = self._each(lambda _, c: c.pull(job_id, have_version), behind)
            for i, reply in zip(behind, again, strict=True):
                replies[i] = reply
        if newest == have_version:
            return newest, None
        # an empty shard's reply carries no tensors (None) even when θ is sent
        theta = merge(job_id, [p or {} for _, p in replies], self.target)
        self._remember(job_id, theta)
        return newest, theta

    def push(
        self, job_id: str, task_id: str, base_version: int, grads: Params, samples: int, loss: float
    ) -> bool:
        """True only if every shard had this task already (a retried push)."""
        try:
            check_like(grads, self._layout(job_id))
        except ValueError as e:  # the message a server gives; no shard was asked
            raise RejectedError(grpc.StatusCode.INVALID_ARGUMENT, str(e)) from None
        parts = split(grads, len(self.clients))
        duplicates = self._each(
            lambda i, c: c.push(job_id, task_id, base_version, parts[i], samples, loss)
        )
        return all(duplicates)

    def push_pull(
        self,
        job_id: str,
        task_id: str,
        base_version: int,
        grads: Params,
        samples: int,
        loss: float,
        wait_seconds: float,
    ) -> tuple[int, Params | None]:
        """Each shard's part pushed and pulled in parallel; θ only when every shard
        applied the step (else the caller pulls, waiting for the slowest shard)."""
        try:
            check_like(grads, self._layout(job_id))
        except ValueError as e:
            raise RejectedError(grpc.StatusCode.INVALID_ARGUMENT, str(e)) from None
        parts = split(grads, len(self.clients))
        replies = self._each(
            lambda i, c: c.push_pull(
                job_id, task_id, base_version, parts[i], samples, loss, wait_seconds
            )
        )
        versions = {v for v, _ in replies}
        version = min(versions)
        if len(versions) != 1 or version <= base_version:
            return version, None
        theta = merge(job_id, [p or {} for _, p in replies], self.target)
        self._remember(job_id, theta)
        return version, theta

    def plan_run(
        self, job_id: str, plans: Sequence[PlannedStep], epoch: int = 0
    ) -> tuple[int, bool]:
        """The run's plans on every shard; each applies them when its own parts are in,
        so the shards may answer one version apart: the oldest is reported."""
        replies = self._each(lambda _, c: c.plan_run(job_id, plans, epoch))
        return min(v for v, _ in replies), all(d for _, d in replies)

    def apply(
        self,
        job_id: str,
        step: int,
        task_ids: list[str],
        lr: float,
        checkpoint: bool = False,
        scheduler_state: str = "",
    ) -> tuple[int, bool]:
        """One step on every shard; a duplicate only if every shard had applied it."""
        replies = self._each(
            lambda _, c: c.apply(job_id, step, task_ids, lr, checkpoint, scheduler_state)
        )
        version = self._agreed(job_id, "apply", [v for v, _ in replies])
        return version, all(duplicate for _, duplicate in replies)

    def discard(self, job_id: str, task_ids: list[str]) -> int:
        """How many of the tasks were buffered (each task is on every shard: the most any
        shard forgot)."""
        return max(self._each(lambda _, c: c.discard(job_id, task_ids)))

    def status(self, job_id: str, log: bool = False) -> ThetaStatus:
        """The oldest shard's view: the lowest version and checkpoint, with the scheduler
        state saved at that checkpoint (and the first shard's log: each shard's own is
        its client's)."""
        return combine_statuses(self._each(lambda _, c: c.status(job_id, log)))

    def restore(self, job_id: str, at_most: int | None = None) -> ThetaStatus:
        """Every shard back to its latest checkpoint (up to ``at_most``). Shards whose
        latest differ (one failed while the others checkpointed) go back to the newest
        version they all hold: each keeps its last two. They must end at one version."""
        statuses = self._each(lambda _, c: c.restore(job_id, at_most))
        versions = [s.version for s in statuses]
        if len(set(versions)) > 1:
            common = min(versions)
            statuses = self._each(lambda _, c: c.restore(job_id, common))
            versions = [s.version for s in statuses]
        self._agreed(job_id, "restore", versions)
        return combine_statuses(statuses)

    def drop_job(
        self, job_id: str, final_checkpoint: bool = False, scheduler_state: str = ""
    ) -> bool:
        self._forget(job_id)
        return any(self._each(lambda _, c: c.drop_job(job_id, final_checkpoint, scheduler_state)))

    # -- internals ----------------------------------------------------------------------

    def _each(
        self, call: Callable[[int, ParamServerClient], T], shards: Sequence[int] | None = None
    ) -> list[T]:
        """``call(i, client)`` for each shard in parallel; every call has ended before this
        returns or raises (the first shard's error, in shard order, as its client raised
        it: a shard that does not answer is a ParamServerUnavailableError with that
        shard's ``target``), bar a hung thread."""
        indices = range(len(self.clients)) if shards is None else shards
        futures = [self._pool.submit(call, i, self.clients[i]) for i in indices]
        limit = SHARD_WAIT_FACTOR * self.timeout + 30
        _, pending = wait(futures, timeout=limit)
        if pending:
            raise TimeoutError(f"parameter server shards did not answer within {limit:.0f} s")
        for future in futures:
            error = future.exception()
            if error is not None:
                raise error
        return [future.result() for future in futures]

    def _agreed(self, job_id: str, call: str, versions: list[int]) -> int:
        if len(set(versions)) != 1:
            raise self._out_of_step(job_id, call, versions)
        return versions[0]

    def _out_of_step(self, job_id: str, call: str, versions: list[int]) -> ShardsOutOfStepError:
        each = ", ".join(
            f"shard {i} ({c.target}) at {v}"
            for i, (c, v) in enumerate(zip(self.clients, versions, strict=True))
        )
        return ShardsOutOfStepError(
            f"{call}: the parameter server shards hold job {job_id!r} at different versions "
            f"({each}); the scheduler must resynchronise them (restore)"
        )

    def _layout(self, job_id: str) -> Params:
        """Stand-ins with the job's tensor names, shapes and dtypes (a pull if unknown)."""
        with self._lock:
            layout = self._layouts.get(job_id)
        if layout is None:
            self.pull(job_id)
            with self._lock:
                layout = self._layouts[job_id]
        return layout

    def _remember(self, job_id: str, params: Params) -> None:
        # zero-strided views: a shape and dtype without the memory
        layout = {n: np.broadcast_to(np.zeros((), a.dtype), a.shape) for n, a in params.items()}
        with self._lock:
            self._layouts[job_id] = layout
            self._layouts.move_to_end(job_id)
            while len(self._layouts) > REMEMBERED_LAYOUTS:
                self._layouts.popitem(last=False)

    def _forget(self, job_id: str) -> None:
        with self._lock:
            self._layouts.pop(job_id, None)


def combine_statuses(statuses: list[ThetaStatus]) -> ThetaStatus:
    """The lowest version and checkpoint over the shards, the scheduler state saved with
    that checkpoint (the first shard that has it), restored if any shard was; the steps
    every shard applied (each applies the same plans to its part of θ)."""
    oldest = min(statuses, key=lambda s: s.checkpoint_version)
    version = min(s.version for s in statuses)
    return ThetaStatus(
        version=version,
        checkpoint_version=oldest.checkpoint_version,
        scheduler_state=oldest.scheduler_state,
        restored=any(s.restored for s in statuses),
        applied=tuple(a for a in statuses[0].applied if a.step < version),
        log=tuple(e for e in statuses[0].log if e.step < version),
    )


def connect_paramservers(
    targets: str,
    timeout: float = 30.0,
    credentials: Credentials | None = None,
    on_deposed: Callable[[str], None] | None = None,
) -> ParamServer:
    """A client for ``host:port`` (one server) or ``host:port,host:port,...`` (shards);
    ``local:PATH`` names a server's same-host socket instead. ``credentials``: rpc.auth; ``on_deposed``:
    see ParamServerClient."""
    entries = [t.strip() for t in targets.split(",")]
    if not all(entries):
        raise ValueError(
            f"parameter server list {targets!r} (CHAINRULE_PARAMSERVERS) has an empty entry; "
            "expected host:port or host:port,host:port,..."
        )
    repeated = sorted({t for t in entries if entries.count(t) > 1})
    if repeated:
        raise ValueError(
            f"parameter server list {targets!r} (CHAINRULE_PARAMSERVERS) names {repeated} "
            "more than once; each shard must be a server of its own"
        )
    if len(entries) == 1:
        return ParamServerClient(entries[0], timeout, credentials, on_deposed)
    clients = [ParamServerClient(t, timeout, credentials, on_deposed) for t in entries]
    return ShardedParamServerClient(clients)

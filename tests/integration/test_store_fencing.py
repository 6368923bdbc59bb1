"""The scheduler's Redis writes are fenced by the leader lease (store/fencing.py), against
the real Redis: while the lease is its own they go through; once another scheduler took
it (or it lapsed), every one is refused, changes nothing, and tells the writer it was
deposed. The gateway's store (no fence) writes regardless."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import redis

from chainrule.scheduler.leader import LeaderLease, leader_key
from chainrule.spec import JobSpec
from chainrule.store import JobStatus, JobStore
from chainrule.store.blobs import BlobStore, model_key
from chainrule.store.diagnostics import DiagnosticsStore, diagnostics_key
from chainrule.store.fencing import DeposedError, Fence
from chainrule.store.queue import GROUP, JobQueue

pytestmark = pytest.mark.timeout(60)

POINT = {"step": 3, "loss": 0.5, "lr": 0.1, "samples_per_s": 100.0, "active_workers": 2}
LAYERS = [{"layer": "dense1", "mean_abs_derivative": 0.5}]


class Leader:
    """A scheduler's fenced stores, as scheduler/__main__.py makes them, under a lease
    it holds."""

    def __init__(self, client: redis.Redis, prefix: str, name: str) -> None:
        self.lease = LeaderLease(client, leader_key(prefix), name, ttl_seconds=30)
        assert self.lease.acquire(), "the lease is free at the start of each test"
        self.deposed: list[str] = []
        self.fence = Fence(self.lease.key, self.lease.owner, self.lease.epoch, self.deposed.append)
        self.jobs = JobStore(client, prefix=prefix, fence=self.fence)
        self.diagnostics = DiagnosticsStore(client, prefix, fence=self.fence)
        self.queue = JobQueue(client, prefix, name, fence=self.fence)
        self.blobs = BlobStore(client, fence=self.fence)


@pytest.fixture
def spec(spec_json: dict[str, object]) -> JobSpec:
    return JobSpec.model_validate(spec_json)


def writes(leader: Leader, job_id: str, message_id: str) -> dict[str, Callable[[], Any]]:
    """Every kind of write a scheduler makes of a job's state."""
    return {
        "status": lambda: leader.jobs.set_status(job_id, JobStatus.FAILED, reason="test"),
        "phase": lambda: leader.jobs.set_phase(job_id, "waiting", "waiting for a test"),
        "progress": lambda: leader.jobs.set_progress(job_id, 7),
        "metrics": lambda: leader.jobs.append_metrics_many(job_id, [POINT], progress=3),
        "workers": lambda: leader.jobs.set_workers(job_id, 2, 1),
        "diagnostics": lambda: leader.diagnostics.append_many(job_id, [(3, LAYERS)]),
        "ack": lambda: leader.queue.ack(message_id),
        "model": lambda: leader.blobs.put(model_key(leader.jobs.prefix, job_id), b"theta"),
    }


def state(client: redis.Redis, store: JobStore, job_id: str) -> dict[str, Any]:
    """Everything the writes above could change."""
    prefix = store.prefix
    return {
        "record": client.hgetall(store.job_key(job_id)),
        "history": client.llen(store.history_key(job_id)),
        "metrics": client.xlen(store.metrics_key(job_id)),
        "events": client.xlen(store.events_key(job_id)),
        "diagnostics": client.exists(diagnostics_key(prefix, job_id))
        and client.xlen(diagnostics_key(prefix, job_id)),
        "pending": client.xpending(store.queue_key, GROUP)["pending"],
        "model": client.get(model_key(prefix, job_id)),
    }


def submitted(leader: Leader, spec: JobSpec) -> tuple[str, str]:
    """A RUNNING job whose queue message the leader has read (not yet acknowledged)."""
    job_id = leader.jobs.submit(spec).id
    [(message_id, read)] = leader.queue.read(block_ms=100)
    assert read == job_id
    leader.jobs.set_status(job_id, JobStatus.RUNNING)
    return job_id, message_id


def take_over(client: redis.Redis, lease_key: str, name: str) -> None:
    """Another scheduler takes the lease, as one does after the holder's lapsed."""
    client.delete(lease_key)
    assert LeaderLease(client, lease_key, name, ttl_seconds=30).acquire()


KINDS = ["status", "phase", "progress", "metrics", "workers", "diagnostics", "ack", "model"]


@pytest.mark.parametrize("kind", KINDS)
def test_the_leaders_writes_go_through(
    redis_client: redis.Redis, key_prefix: str, spec: JobSpec, kind: str
) -> None:
    leader = Leader(redis_client, key_prefix, "s1")
    job_id, message_id = submitted(leader, spec)
    before = state(redis_client, leader.jobs, job_id)

    writes(leader, job_id, message_id)[kind]()

    assert state(redis_client, leader.jobs, job_id) != before
    assert leader.deposed == []


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("how", ["another leads", "the lease lapsed", "a newer epoch"])
def test_a_deposed_leaders_writes_change_nothing(
    redis_client: redis.Redis, key_prefix: str, spec: JobSpec, kind: str, how: str
) -> None:
    leader = Leader(redis_client, key_prefix, "s1")
    job_id, message_id = submitted(leader, spec)
    if how == "another leads":
        take_over(redis_client, leader.lease.key, "s2")
    elif how == "the lease lapsed":
        redis_client.delete(leader.lease.key)
    else:  # the same holder's name, but the counter moved on: not this incarnation's
        redis_client.incr(f"{leader.lease.key}:epoch")
    before = state(redis_client, leader.jobs, job_id)

    with pytest.raises(DeposedError, match=f"epoch {leader.lease.epoch} is over"):
        writes(leader, job_id, message_id)[kind]()

    assert state(redis_client, leader.jobs, job_id) == before
    # told once, before the error (a scheduler steps down then), and who leads now
    holder, epoch = {
        "another leads": ("s2", 2),
        "the lease lapsed": ("nobody", 1),
        "a newer epoch": ("s1", 2),
    }[how]
    assert leader.deposed == [f"the leader lease is held by {holder} under epoch {epoch} now"]


def test_the_gateways_store_is_not_fenced(
    redis_client: redis.Redis, key_prefix: str, spec: JobSpec
) -> None:
    leader = Leader(redis_client, key_prefix, "s1")
    job_id, _ = submitted(leader, spec)
    take_over(redis_client, leader.lease.key, "s2")
    gateway = JobStore(redis_client, prefix=key_prefix)

    record = gateway.request_stop(job_id)

    assert record.phase == "stopping"
    assert gateway.get(job_id) == record

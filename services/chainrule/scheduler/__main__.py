"""``python -m chainrule.scheduler``: read jobs from the Redis queue, serve workers."""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from dataclasses import replace
from typing import Any, NoReturn

import redis
from grpc_health.v1 import health

from chainrule import telemetry
from chainrule.logs import configure_logging, get_logger
from chainrule.paramserver.sharding import connect_paramservers
from chainrule.rpc.auth import SCHEDULER, server_auth
from chainrule.rpc.server import set_serving, start_server
from chainrule.rpc.v1 import scheduler_pb2, scheduler_pb2_grpc
from chainrule.scheduler.core import SchedulerCore
from chainrule.scheduler.leader import LeaderLease, leader_key
from chainrule.scheduler.servicer import SchedulerServicer
from chainrule.scheduler.settings import SchedulerSettings
from chainrule.signals import shutdown_event
from chainrule.store import binary_client, connect
from chainrule.store.blobs import BlobStore
from chainrule.store.datasets import DatasetStore
from chainrule.store.diagnostics import DiagnosticsStore
from chainrule.store.fencing import Fence
from chainrule.store.jobs import JobStore
from chainrule.store.queue import JobQueue
from chainrule.store.retention import Retention
from chainrule.store.workers import WorkerRegistry

SERVICE = scheduler_pb2.DESCRIPTOR.services_by_name["Scheduler"]
SERVICE_NAME = SERVICE.full_name
WORKER_METHODS = [m.name for m in SERVICE.methods]  # all of them are a worker's (rpc.auth)


def main() -> None:
    settings = SchedulerSettings()
    configure_logging()
    log = get_logger("scheduler", scheduler_id=settings.scheduler_id)
    telemetry.serve_metrics(settings.metrics_port, "scheduler")
    stop = shutdown_event()
    client = connect(settings.redis_url)
    lease = LeaderLease(
        client,
        leader_key(settings.key_prefix),
        f"{settings.scheduler_id}-{uuid.uuid4().hex[:8]}",
        settings.leader_ttl_s,
    )
    # every write of job state is checked against the lease (its epoch set once this
    # scheduler leads): a deposed leader's writes change nothing, and it steps down
    fence = Fence(
        lease.key,
        lease.owner,
        on_deposed=lambda why: step_down(log, f"Redis refused a write: {why}"),
    )
    queue = JobQueue(client, settings.key_prefix, settings.scheduler_id, fence=fence)
    paramserver = connect_paramservers(settings.paramservers)  # replaced once leading
    jobs = JobStore(client, settings.key_prefix, fence=fence, max_points=settings.max_series_points)
    core = SchedulerCore(
        jobs,
        BlobStore(binary_client(settings.redis_url), fence=fence),
        DatasetStore(binary_client(settings.redis_url), settings.key_prefix),
        DiagnosticsStore(client, settings.key_prefix, fence, settings.max_series_points),
        paramserver,
        settings.key_prefix,
        queue.ack,
        settings.worker_lease_s,
        log,
        WorkerRegistry(client, settings.key_prefix),
        outage_budget_s=settings.outage_budget_s,
    )
    retention = Retention(jobs, settings.retention_days)
    servicer = SchedulerServicer(core)
    health_servicer = health.HealthServicer()
    try:
        server, port = start_server(
            lambda s: scheduler_pb2_grpc.add_SchedulerServicer_to_server(servicer, s),
            [SERVICE_NAME],
            settings.scheduler_listen,
            max_workers=64,
            health_servicer=health_servicer,
            local_socket=settings.local_socket or None,
            interceptors=server_auth(
                settings, settings.scheduler_listen, SERVICE_NAME, WORKER_METHODS
            ),
            tls=settings.server_tls(),
        )
    except (OSError, ValueError) as e:  # the address is taken (or not ours): another server has it
        log.error("cannot serve", listen=settings.scheduler_listen, error=str(e))
        raise SystemExit(f"scheduler: {e}") from e
    set_serving(health_servicer, [SERVICE_NAME], False)
    log.info("standing by for the leader lease", listen=settings.scheduler_listen, port=port)
    while not stop.is_set() and not _acquired(lease, log):
        stop.wait(settings.leader_ttl_s / 4)
    if not stop.is_set():
        # every call to a parameter server carries this leader's epoch from now on: one
        # of an older leader's is refused there, and this one steps down if refused so
        credentials = replace(settings.credentials(SCHEDULER), epoch=lease.epoch)
        paramserver.close()
        core.paramserver = connect_paramservers(
            settings.paramservers,
            credentials=credentials,
            on_deposed=lambda why: step_down(log, f"a parameter server refused us: {why}"),
        )
        core.state.epoch = fence.epoch = lease.epoch
        core.state.leading = True
        set_serving(health_servicer, [SERVICE_NAME], True)
        lead(core, queue, lease, stop, settings.leader_ttl_s, log, retention)
    server.stop(grace=2).wait()
    lease.release()
    log.info("stopped")


def _acquired(lease: LeaderLease, log: Any) -> bool:
    """Whether this scheduler took the lease; a standby rides out a Redis outage."""
    try:
        return lease.acquire()
    except redis.RedisError as e:
        log.warning("Redis unavailable; standing by", error=str(e))
        return False


def lead(
    core: SchedulerCore,
    queue: JobQueue,
    lease: LeaderLease,
    stop: threading.Event,
    ttl: float,
    log: Any,
    retention: Retention | None = None,
) -> None:
    """Run as the active scheduler until asked to stop, or until the lease is lost."""
    log.info("leading")

    def housekeeping() -> None:
        published = 0.0
        while not stop.is_set():
            try:
                core.tick()
                if time.monotonic() - published >= 1.0:
                    core.publish_workers()
                    published = time.monotonic()
                if retention is not None and retention.due():
                    expired = retention.sweep()
                    if expired:
                        log.info("ended jobs expired", jobs=expired, days=retention.days)
            except Exception:
                log.exception("housekeeping failed; retrying")
            stop.wait(0.2)

    def renewing() -> None:
        """On a thread of its own, so that nothing the main loop waits for delays it: a
        lease not renewed within its TTL (Redis hung, the process stopped) may be
        another's already, so this one steps down."""
        renewed = time.monotonic()
        while not stop.wait(ttl / 3):
            try:
                if not lease.renew():
                    step_down(log, "lost the leader lease to another scheduler")
                renewed = time.monotonic()
            except redis.RedisError as e:
                log.warning("could not renew the leader lease; retrying", error=str(e))
            if time.monotonic() - renewed > ttl:
                step_down(log, f"the leader lease was not renewed for {ttl:g} s")

    threading.Thread(target=renewing, name="lease", daemon=True).start()
    threading.Thread(target=housekeeping, name="tick", daemon=True).start()
    for message_id, job_id in queue.recover(claim_idle_ms=0):  # everything: we lead now
        core.admit(job_id, message_id)
    while not stop.is_set():
        try:
            for message_id, job_id in queue.read(block_ms=500):
                log.info("job received", job_id=job_id)
                core.admit(job_id, message_id)
        except redis.RedisError as e:  # an outage past the client's own retries: wait it
            log.warning("Redis unavailable; waiting", error=str(e))  # out (the lease
            stop.wait(1.0)  # thread steps down if it lasts past the lease)


EXIT_DEPOSED = 5


def step_down(log: Any, why: str) -> NoReturn:
    """Stop acting at once: another scheduler leads (or may), and anything this one did
    now would race it. The process exits, every thread with it; compose or Kubernetes
    starts it again, as a standby."""
    log.error("no longer the leader; exiting", reason=why)
    logging.shutdown()
    os._exit(EXIT_DEPOSED)


if __name__ == "__main__":
    main()

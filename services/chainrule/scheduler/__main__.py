"""``python -m chainrule.scheduler``: read jobs from the Redis queue, serve workers."""

from __future__ import annotations

import threading

import redis

from chainrule.logs import configure_logging, get_logger
from chainrule.paramserver.sharding import connect_paramservers
from chainrule.rpc.server import start_server
from chainrule.rpc.v1 import scheduler_pb2, scheduler_pb2_grpc
from chainrule.scheduler.core import SchedulerCore
from chainrule.scheduler.servicer import SchedulerServicer
from chainrule.scheduler.settings import SchedulerSettings
from chainrule.signals import shutdown_event
from chainrule.store import connect
from chainrule.store.blobs import BlobStore
from chainrule.store.diagnostics import DiagnosticsStore
from chainrule.store.jobs import JobStore
from chainrule.store.queue import JobQueue

SERVICE_NAME = scheduler_pb2.DESCRIPTOR.services_by_name["Scheduler"].full_name


def main() -> None:
    settings = SchedulerSettings()
    configure_logging()
    log = get_logger("scheduler", scheduler_id=settings.scheduler_id)
    stop = shutdown_event()
    client = connect(settings.redis_url)
    queue = JobQueue(client, settings.key_prefix, settings.scheduler_id)
    paramserver = connect_paramservers(settings.paramservers)
    core = SchedulerCore(
        JobStore(client, prefix=settings.key_prefix),
        BlobStore(redis.Redis.from_url(settings.redis_url)),  # binary values: no decoding
        DiagnosticsStore(client, settings.key_prefix),
        paramserver,
        settings.key_prefix,
        queue.ack,
        settings.worker_lease_s,
        log,
    )
    servicer = SchedulerServicer(core)
    server, port = start_server(
        lambda s: scheduler_pb2_grpc.add_SchedulerServicer_to_server(servicer, s),
        [SERVICE_NAME],
        settings.scheduler_listen,
        max_workers=64,
    )
    log.info("serving", listen=settings.scheduler_listen, port=port)

    def housekeeping() -> None:
        while not stop.is_set():
            try:
                core.tick()
            except Exception:
                log.exception("housekeeping failed; retrying")
            stop.wait(0.2)

    threading.Thread(target=housekeeping, name="tick", daemon=True).start()
    for message_id, job_id in queue.recover():
        core.admit(job_id, message_id)
    while not stop.is_set():
        for message_id, job_id in queue.read(block_ms=500):
            log.info("job received", job_id=job_id)
            core.admit(job_id, message_id)
    server.stop(grace=2).wait()
    log.info("stopped")


if __name__ == "__main__":
    main()

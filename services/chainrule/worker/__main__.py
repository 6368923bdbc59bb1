"""``python -m chainrule.worker``: serve tasks until SIGTERM (the task in hand finishes)."""

from __future__ import annotations

from threadpoolctl import threadpool_limits

from chainrule import telemetry
from chainrule.logs import configure_logging, get_logger
from chainrule.paramserver.sharding import connect_paramservers
from chainrule.rpc.auth import WORKER
from chainrule.signals import shutdown_event
from chainrule.store import binary_client
from chainrule.store.blobs import BlobStore
from chainrule.worker.loop import IncompatibleError, Worker, WorkerReplacedError
from chainrule.worker.settings import WorkerSettings


def main() -> None:
    settings = WorkerSettings()
    threadpool_limits(settings.blas_threads)  # before any matrix product
    configure_logging()
    log = get_logger("worker", worker_id=settings.worker_id)
    telemetry.serve_metrics(settings.metrics_port, "worker")
    stop = shutdown_event()
    paramserver = connect_paramservers(
        settings.paramservers, credentials=settings.credentials(WORKER)
    )
    blobs = BlobStore(binary_client(settings.redis_url))
    worker = Worker(
        settings.worker_id,
        settings.scheduler,
        paramserver,
        blobs,
        stop,
        settings.poll_seconds,
        log,
        settings.task_delay_s,
        settings.credentials(WORKER),
    )
    log.info("started", scheduler=settings.scheduler, incarnation=worker.incarnation)
    try:
        worker.run()
    except WorkerReplacedError as e:
        log.error("replaced by a newer incarnation; exiting", reason=str(e))
        raise SystemExit(3) from e
    except IncompatibleError as e:
        log.error("refused by the scheduler; exiting", reason=str(e))
        raise SystemExit(4) from e
    finally:
        paramserver.close()
    log.info("stopped")


if __name__ == "__main__":
    main()

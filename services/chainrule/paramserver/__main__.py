"""``python -m chainrule.paramserver``: read settings, serve until SIGTERM/SIGINT."""

from __future__ import annotations

from chainrule import telemetry
from chainrule.logs import configure_logging, get_logger
from chainrule.paramserver.server import serve
from chainrule.paramserver.settings import ParamServerSettings
from chainrule.paramserver.state import ParameterStore
from chainrule.signals import wait_for_shutdown
from chainrule.store import binary_client
from chainrule.store.checkpoints import CheckpointStore


def main() -> None:
    settings = ParamServerSettings()
    configure_logging()
    log = get_logger("paramserver")
    telemetry.serve_metrics(settings.metrics_port, "paramserver")
    checkpoints = None
    if settings.redis_url:
        client = binary_client(settings.redis_url)  # binary values: no decoding
        checkpoints = CheckpointStore(client, settings.key_prefix, settings.paramserver_shard)
    try:
        server, port = serve(
            settings.paramserver_listen,
            ParameterStore(checkpoints),
            settings.local_socket or None,
            settings,
        )
    except (OSError, ValueError) as e:  # the address is taken (or not ours): another server has it
        log.error("cannot serve", listen=settings.paramserver_listen, error=str(e))
        raise SystemExit(f"paramserver: {e}") from e
    log.info(
        "serving",
        listen=settings.paramserver_listen,
        port=port,
        shard=settings.paramserver_shard,
        checkpoints=bool(checkpoints),
        local_socket=settings.local_socket or None,
    )
    wait_for_shutdown()
    server.stop(grace=2).wait()
    log.info("stopped")


if __name__ == "__main__":
    main()

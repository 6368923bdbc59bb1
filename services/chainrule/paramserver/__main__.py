"""``python -m chainrule.paramserver``: read settings, serve until SIGTERM/SIGINT."""

from __future__ import annotations

from chainrule.logs import configure_logging, get_logger
from chainrule.paramserver.server import serve
from chainrule.paramserver.settings import ParamServerSettings
from chainrule.signals import wait_for_shutdown


def main() -> None:
    settings = ParamServerSettings()
    configure_logging()
    log = get_logger("paramserver")
    server, port = serve(settings.listen)
    log.info("serving", listen=settings.listen, port=port)
    wait_for_shutdown()
    server.stop(grace=2).wait()
    log.info("stopped")


if __name__ == "__main__":
    main()

"""``python -m chainrule.gateway``: read settings, serve HTTP until SIGTERM/SIGINT."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import uvicorn

from chainrule.gateway.main import create_app
from chainrule.gateway.settings import GatewaySettings
from chainrule.logs import configure_logging, get_logger


def redact(url: str) -> str:
    """``url`` with any password replaced, fit for a log line."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def main() -> None:
    settings = GatewaySettings()
    configure_logging(settings.log_level)
    log = get_logger("gateway")
    log.info(
        "serving",
        host=settings.gateway_host,
        port=settings.gateway_port,
        redis_url=redact(settings.redis_url),
        key_prefix=settings.key_prefix,
    )
    # log_config=None: uvicorn's own records go through the root logger, to stderr
    uvicorn.run(
        create_app(settings),
        host=settings.gateway_host,
        port=settings.gateway_port,
        log_config=None,
        log_level=settings.log_level.lower(),
        # HTTPS only, when both are set (CHAINRULE_GATEWAY_TLS_CERT/_KEY, PEM files)
        ssl_certfile=settings.gateway_tls_cert,
        ssl_keyfile=settings.gateway_tls_key,
    )  # returns, or re-raises SIGTERM/SIGINT, after a graceful shutdown


if __name__ == "__main__":
    main()

"""``python -m chainrule.gateway``: read settings, serve HTTP until SIGTERM/SIGINT."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import uvicorn
from pydantic import ValidationError

from chainrule.gateway.main import create_app
from chainrule.gateway.principals import TokenConfigError
from chainrule.gateway.settings import GatewaySettings
from chainrule.logs import configure_logging, get_logger


def redact(url: str) -> str:
    """``url`` with any password replaced, fit for a log line."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def settings_errors(error: ValidationError) -> str:
    """The settings' errors without the values given: one of them may be a token."""
    return "; ".join(
        f"{'.'.join(str(part) for part in each['loc']) or 'settings'}: {each['msg']}"
        for each in error.errors(include_input=False, include_url=False)
    )


def main() -> None:
    try:
        settings = GatewaySettings()
    except ValidationError as err:
        raise SystemExit(f"gateway: bad settings: {settings_errors(err)}") from None
    configure_logging(settings.log_level)
    log = get_logger("gateway")
    try:
        app = create_app(settings)
    except TokenConfigError as err:
        raise SystemExit(f"gateway: {err}") from None
    log.info(
        "serving",
        host=settings.gateway_host,
        port=settings.gateway_port,
        redis_url=redact(settings.redis_url),
        key_prefix=settings.key_prefix,
    )
    # log_config=None: uvicorn's own records go through the root logger, to stderr
    uvicorn.run(
        app,
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

"""What every command that talks to the gateway shares: the --gateway, --token and
--json options, and turning a failed request into a message and exit code 2.

Exit codes: 0 done (for a followed job: it SUCCEEDED); 1 the followed job ended FAILED
or STOPPED; 2 the command could not do what was asked (bad usage or input, a refused
request, an unknown job, a missing or wrong token, an unreachable gateway).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, NoReturn

import typer
from rich.markup import escape

from chainrule.cli.client import (
    DEFAULT_GATEWAY,
    TOKEN_ENV,
    TOKEN_FILE,
    GatewayClient,
    GatewayError,
    resolve_token,
)
from chainrule.cli.output import stderr_console

USAGE_ERROR = 2

GatewayOption = Annotated[
    str, typer.Option("--gateway", envvar="CHAINRULE_GATEWAY_URL", help="Gateway base URL.")
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        help=f"API token; else ${TOKEN_ENV}, else {TOKEN_FILE} (written by `chainrule up`).",
        show_default=False,
    ),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print machine-readable JSON and nothing else.")
]

__all__ = ["DEFAULT_GATEWAY", "GatewayOption", "JsonOption", "TokenOption", "fail", "gateway"]


def fail(message: str, code: int = USAGE_ERROR) -> NoReturn:
    """Say what went wrong on stderr (stdout stays clean for --json) and exit."""
    stderr_console().print(f"[red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@contextmanager
def gateway(url: str, token: str | None) -> Iterator[GatewayClient]:
    """A client of the gateway at ``url`` with the resolved token; a request that fails
    inside the block ends the command with the message and exit code 2."""
    client = GatewayClient(url, resolve_token(token, os.environ, TOKEN_FILE))
    try:
        yield client
    except GatewayError as err:
        fail(str(err))
    finally:
        client.close()

"""``chainrule up`` and ``chainrule submit``: run the local stack, send it jobs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.console import Console

from chainrule.cli.jobs import GatewayClient, GatewayError, load_spec, report, watch
from chainrule.cli.stack import LocalStack, StackConfig
from chainrule.signals import shutdown_event

DEFAULT_GATEWAY = "http://127.0.0.1:8000"


def up(
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes to start.")] = 2,
    paramservers: Annotated[
        int, typer.Option(min=1, max=16, help="Parameter-server shards to split θ over.")
    ] = 1,
    redis_url: Annotated[
        str | None,
        typer.Option(envvar="CHAINRULE_REDIS_URL", help="External Redis; embedded when unset."),
    ] = None,
    port: Annotated[int, typer.Option(help="Gateway HTTP port.")] = 8000,
    submit_spec: Annotated[
        Path | None,
        typer.Option(
            "--submit",
            exists=True,
            dir_okay=False,
            help="Submit this job, follow it, stop the stack when it ends.",
        ),
    ] = None,
    log_dir: Annotated[Path, typer.Option(help="Where each process writes its log.")] = Path(
        ".chainrule/logs"
    ),
) -> None:
    """Start Redis (embedded unless CHAINRULE_REDIS_URL is set), the parameter server
    (K shards), the scheduler, N workers and the gateway; stop them all on Ctrl-C or SIGTERM."""
    console = Console()
    config = StackConfig(
        workers=workers,
        paramservers=paramservers,
        redis_url=redis_url,
        gateway_port=port,
        log_dir=log_dir,
    )
    stack = LocalStack(config)
    stop = shutdown_event()
    shards = f", {paramservers} parameter-server shards" if paramservers > 1 else ""
    console.print(f"starting {workers} workers{shards}, logs in {log_dir}/ ...")
    with stack:
        where = redis_url or "embedded Redis"
        console.print(
            f"[bold]gateway listening on {stack.gateway_url}[/] ({where}); "
            f"API docs at {stack.gateway_url}/docs"
        )
        if submit_spec is not None:
            raise typer.Exit(_submit_and_watch(stack.gateway_url, submit_spec, console))
        console.print("press Ctrl-C to stop")
        while not stop.wait(0.5):
            pass
    console.print("stopped")


def submit(
    spec: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="Job spec (.json or .yaml).")
    ],
    watch_job: Annotated[
        bool, typer.Option("--watch", help="Follow the job; exit 0 only if it SUCCEEDED.")
    ] = False,
    gateway: Annotated[
        str, typer.Option(envvar="CHAINRULE_GATEWAY_URL", help="Gateway base URL.")
    ] = DEFAULT_GATEWAY,
) -> None:
    """Submit a training job; with --watch, follow it to the end."""
    console = Console()
    if watch_job:
        raise typer.Exit(_submit_and_watch(gateway, spec, console))
    client = GatewayClient(gateway)
    try:
        job = _submit(client, spec, console)
    finally:
        client.close()
    console.print(job["id"])


def _submit(client: GatewayClient, spec: Path, console: Console) -> dict[str, object]:
    try:
        return client.submit(load_spec(spec))
    except (GatewayError, ValueError) as e:
        console.print(f"[red]{e}[/]")
        raise typer.Exit(2) from None
    except httpx.HTTPError as e:
        console.print(f"[red]cannot reach the gateway at {client.http.base_url}: {e}[/]")
        raise typer.Exit(2) from None


def _submit_and_watch(gateway: str, spec: Path, console: Console) -> int:
    client = GatewayClient(gateway)
    try:
        job = _submit(client, spec, console)
        console.print(f"submitted job {job['id']} ({job['name']})")
        return report(watch(client, str(job["id"]), console), console)
    finally:
        client.close()

"""``chainrule up``, ``run`` and ``submit``: run the local stack, send it jobs.

``up`` guards the stack's gateway with an API token: a random one, unless
CHAINRULE_API_TOKENS is set. It writes a generated token to ``.chainrule/token``
(mode 0600) where the other commands find it, and removes the file when it stops.
"""

from __future__ import annotations

import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from chainrule.cli import options
from chainrule.cli.client import TOKEN_FILE, GatewayClient, GatewayError
from chainrule.cli.job_commands import INTERRUPTED, follow
from chainrule.cli.jobs import SpecError, load_spec, report, watch
from chainrule.cli.options import JsonOption, fail
from chainrule.cli.output import print_json, stderr_console, stdout_console
from chainrule.cli.stack import LocalStack, StackConfig, free_port
from chainrule.cli.supervisor import Supervisor
from chainrule.gateway.principals import TokenConfigError, parse_api_tokens
from chainrule.signals import shutdown_event

SpecPath = Annotated[
    Path, typer.Argument(exists=True, dir_okay=False, help="Job spec (.json or .yaml).")
]
Workers = Annotated[int, typer.Option(min=1, max=64, help="Worker processes to start.")]
Paramservers = Annotated[
    int, typer.Option(min=1, max=16, help="Parameter-server shards to split θ over.")
]
Schedulers = Annotated[
    int,
    typer.Option(
        min=1, max=2, help="2: a standby scheduler beside the leader, taking over if it dies."
    ),
]
RedisUrl = Annotated[
    str | None,
    typer.Option(envvar="CHAINRULE_REDIS_URL", help="External Redis; embedded when unset."),
]
Port = Annotated[int, typer.Option(min=1, max=65535, help="Gateway HTTP port.")]
LogDir = Annotated[Path, typer.Option(help="Where each process writes its log.")]
FreePorts = Annotated[
    bool,
    typer.Option(
        "--free-ports",
        help="Put the scheduler and parameter servers on free ports, not 50052 and 50051+.",
    ),
]
ApiTokens = Annotated[
    str | None,
    typer.Option(
        envvar="CHAINRULE_API_TOKENS",
        show_default=False,
        help=f"Tokens the gateway accepts, comma-separated; when unset, a random one, "
        f"written to {TOKEN_FILE} for the other commands.",
    ),
]


@dataclass
class StackOptions:
    workers: int = 2
    paramservers: int = 1
    redis_url: str | None = None
    port: int = 8000
    log_dir: Path = Path(".chainrule/logs")
    free_ports: bool = False
    api_tokens: str | None = None
    schedulers: int = 1

    def config(self, tokens: str) -> StackConfig:
        settings: dict[str, Any] = {
            "workers": self.workers,
            "paramservers": self.paramservers,
            "redis_url": self.redis_url,
            "gateway_port": self.port,
            "log_dir": self.log_dir,
            "extra_env": {"CHAINRULE_API_TOKENS": tokens},
        }
        if self.schedulers > 1:
            settings["standby_scheduler_port"] = free_port() if self.free_ports else 50053
        if self.free_ports:
            return StackConfig.on_free_ports(**settings)
        return StackConfig(**settings)


def up(
    workers: Workers = 2,
    paramservers: Paramservers = 1,
    schedulers: Schedulers = 1,
    redis_url: RedisUrl = None,
    port: Port = 8000,
    submit_spec: Annotated[
        Path | None,
        typer.Option(
            "--submit",
            exists=True,
            dir_okay=False,
            help="Submit this job, follow it, stop the stack when it ends.",
        ),
    ] = None,
    log_dir: LogDir = Path(".chainrule/logs"),
    free_ports: FreePorts = False,
    api_tokens: ApiTokens = None,
    json_output: Annotated[
        bool,
        typer.Option(
            "--json",
            help="JSON only: one object when the stack is ready (with --submit: the final job).",
        ),
    ] = False,
) -> None:
    """Start the whole stack as local processes; stop it with Ctrl-C or SIGTERM.

    Redis (embedded unless CHAINRULE_REDIS_URL is set), the parameter server (K shards),
    the scheduler (and a standby), N workers and the gateway, whose API token goes to
    .chainrule/token."""
    options = StackOptions(
        workers, paramservers, redis_url, port, log_dir, free_ports, api_tokens, schedulers
    )
    raise typer.Exit(run_stack(options, submit_spec, json_output))


def run(
    spec: SpecPath,
    workers: Workers = 2,
    paramservers: Paramservers = 1,
    redis_url: RedisUrl = None,
    port: Port = 8000,
    log_dir: LogDir = Path(".chainrule/logs"),
    free_ports: FreePorts = False,
    api_tokens: ApiTokens = None,
    json_output: JsonOption = False,
) -> None:
    """Start the local stack, train SPEC, stop the stack: `up --submit SPEC`.

    Shows a progress bar; exits 0 only if the job SUCCEEDED."""
    options = StackOptions(workers, paramservers, redis_url, port, log_dir, free_ports, api_tokens)
    raise typer.Exit(run_stack(options, spec, json_output))


CRASH_LOOP = 3
"""``up``'s exit code when a child kept exiting and the stack was stopped (cli/supervisor.py)."""


def run_stack(options: StackOptions, submit_spec: Path | None, json_output: bool) -> int:
    """Run the stack until SIGINT/SIGTERM, or until the submitted job ends; the exit code."""
    info = stderr_console() if json_output else stdout_console()
    info.soft_wrap = True  # a URL split over two lines cannot be copied
    job_spec = None if submit_spec is None else _spec(submit_spec)  # a bad file: before starting
    generated = not options.api_tokens
    tokens = options.api_tokens or secrets.token_urlsafe(32)
    try:  # the gateway would refuse them: say so before anything starts
        submit_token = parse_api_tokens(tokens).first_token()
    except TokenConfigError as err:
        fail(str(err))
    stop = shutdown_event()
    stack = LocalStack(options.config(tokens))
    shards = f", {options.paramservers} parameter-server shards" if options.paramservers > 1 else ""
    standby = ", a standby scheduler" if options.schedulers > 1 else ""
    info.print(
        f"starting {options.workers} workers{shards}{standby}, logs in {options.log_dir}/ ..."
    )
    try:
        stack.start()
    except (RuntimeError, TimeoutError, OSError) as err:  # start() stops what it began
        fail(f"the local stack did not start: {err}")
    token_file = write_token_file(TOKEN_FILE, tokens) if generated else None
    halt = threading.Event()  # the supervisor's: set before the stack stops
    code = 0
    errors = stderr_console()
    errors.soft_wrap = True  # a log path split over two lines cannot be copied
    supervisor = Supervisor(stack, lambda message: errors.print(escape(message), highlight=False))
    watcher = supervisor.start(halt, give_up=stop.set)
    try:
        where = options.redis_url or "embedded Redis"
        info.print(
            f"[bold]gateway listening on {stack.gateway_url}[/] ({escape(where)}); "
            f"API docs at {stack.gateway_url}/docs",
            highlight=False,
        )
        info.print(
            f"API token in {TOKEN_FILE} (mode 0600) for chainrule commands run here"
            if token_file
            else "API tokens from CHAINRULE_API_TOKENS",
            highlight=False,
        )
        if job_spec is not None:
            code = _submit_to_stack(stack, submit_token, job_spec, stop, json_output)
        else:
            if json_output:
                print_json(_ready(stack, options, token_file), one_line=True)
            info.print("press Ctrl-C to stop")
            while not stop.wait(0.5):
                pass
    finally:
        halt.set()
        watcher.join(timeout=10)
        if token_file is not None:
            remove_token_file(token_file, tokens)
        stack.stop()
    if supervisor.gave_up is not None:
        stderr_console().print(f"stopped: {escape(str(supervisor.gave_up))}")
        return CRASH_LOOP
    if job_spec is not None:
        return code
    info.print("stopped")
    return 0


def _ready(stack: LocalStack, options: StackOptions, token_file: Path | None) -> dict[str, object]:
    return {
        "gateway_url": stack.gateway_url,
        "token_file": None if token_file is None else str(token_file),
        "redis": options.redis_url or "embedded",
        "workers": options.workers,
        "paramservers": options.paramservers,
        "schedulers": options.schedulers,
        "log_dir": str(stack.log_dir),
    }


def _submit_to_stack(
    stack: LocalStack, token: str, spec: dict[str, Any], stop: threading.Event, json_output: bool
) -> int:
    console = stdout_console()
    with GatewayClient(stack.gateway_url, token) as client:
        try:
            job, _ = client.submit(spec)
            if not json_output:
                console.print(f"submitted job {job['id']} ({escape(str(job['name']))})")
            job = watch(client, str(job["id"]), console, stop, quiet=json_output)
        except GatewayError as err:
            fail(str(err))
    if stop.is_set():
        stderr_console().print(f"interrupted; job {job['id']} stays {job['status']} in Redis")
        return INTERRUPTED
    if json_output:
        print_json(job)
        return 0 if job["status"] == "SUCCEEDED" else 1
    return report(job, console)


def write_token_file(path: Path, token: str) -> Path:
    """Write ``token`` to ``path``, readable by this user only (0600 even if the file
    was there before with wider permissions)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        os.fchmod(out.fileno(), 0o600)
        out.write(token + "\n")
    return path


def remove_token_file(path: Path, token: str) -> None:
    """Remove the token file if it still holds ``token`` (another ``up`` started in the
    same directory since keeps its own)."""
    try:
        if path.read_text(encoding="utf-8").strip() == token:
            path.unlink()
    except FileNotFoundError:
        pass


def submit(
    spec: SpecPath,
    watch_job: Annotated[
        bool, typer.Option("--watch", help="Follow the job; exit 0 only if it SUCCEEDED.")
    ] = False,
    submission_id: Annotated[
        str | None,
        typer.Option(
            help="Submit idempotently: the same id and spec again returns the first job; "
            "the same id with another spec is refused.",
        ),
    ] = None,
    gateway_url: options.GatewayOption = options.DEFAULT_GATEWAY,
    token: options.TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """Submit a training job and print its id; with --watch, follow it to the end."""
    body = _spec(spec)
    with options.gateway(gateway_url, token) as client:
        job, created = client.submit(body, submission_id)
    if not created:
        stderr_console().print(
            f"submission id {escape(str(submission_id))} was used before with this spec: "
            f"job {job['id']} ({job['status']})",
            highlight=False,
            soft_wrap=True,
        )
    if watch_job:
        if created and not json_output:
            stdout_console().print(f"submitted job {job['id']} ({escape(str(job['name']))})")
        raise typer.Exit(follow(gateway_url, token, str(job["id"]), json_output))
    if json_output:
        print_json(job)
    else:
        typer.echo(job["id"])


def _spec(path: Path) -> dict[str, Any]:
    try:
        return load_spec(path)
    except SpecError as err:
        fail(str(err))

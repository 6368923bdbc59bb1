"""``chainrule list | status | watch | stop | metrics | download | predict | workers``:
the gateway's REST API for people (tables, panels, a progress bar) and scripts (--json)."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from chainrule.cli.client import Json
from chainrule.cli.csvio import RowsError, metrics_csv, parse_feature_rows, series_csv
from chainrule.cli.jobs import report, watch
from chainrule.cli.options import (
    DEFAULT_GATEWAY,
    GatewayOption,
    JsonOption,
    TokenOption,
    fail,
    gateway,
)
from chainrule.cli.output import (
    downsampled_note,
    job_panel,
    jobs_table,
    latest_table,
    predictions_table,
    print_json,
    series_table,
    stderr_console,
    stdout_console,
    workers_table,
)

INTERRUPTED = 130  # the shell's code for Ctrl-C


class JobState(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    STOPPED = "STOPPED"


JobId = Annotated[str, typer.Argument(help="The job's id (from submit or list).")]


def list_jobs(
    status: Annotated[
        JobState | None, typer.Option(case_sensitive=False, help="Only jobs in this state.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="Show at most this many, newest first.")] = 20,
    gateway_url: GatewayOption = DEFAULT_GATEWAY,
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """Jobs, newest first: id, name, status, phase, step/total, created."""
    with gateway(gateway_url, token) as client:
        jobs, next_page = client.jobs_upto(limit, status.value if status else None)
    if json_output:
        print_json({"data": jobs, "count": len(jobs), "next_page_token": next_page})
        return
    table = jobs_table(jobs)
    if next_page:
        table.caption = f"the {len(jobs)} newest; more with --limit"
    stdout_console().print(table)


def status(
    job_id: JobId,
    gateway_url: GatewayOption = DEFAULT_GATEWAY,
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """A job's status, progress with ETA, latest metrics, workers and history.

    Also its phase, message, failure reason, timestamps and status transitions."""
    with gateway(gateway_url, token) as client:
        job = client.job(job_id)
    if json_output:
        print_json(job)
    else:
        stdout_console().print(job_panel(job))


def watch_job(
    job_id: JobId,
    gateway_url: GatewayOption = DEFAULT_GATEWAY,
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """Follow a job with a progress bar until it ends.

    Exit 0 only if it SUCCEEDED, 1 if it FAILED or was STOPPED."""
    raise typer.Exit(follow(gateway_url, token, job_id, json_output))


def follow(gateway_url: str, token: str | None, job_id: str, json_output: bool) -> int:
    """Watch, report, and return the exit code; Ctrl-C stops watching, not the job."""
    console = stdout_console()
    with gateway(gateway_url, token) as client:
        try:
            job = watch(client, job_id, console, quiet=json_output)
        except KeyboardInterrupt:
            stderr_console().print(
                f"stopped watching; job {job_id} goes on (`chainrule stop {job_id}` stops it)"
            )
            return INTERRUPTED
    if json_output:
        print_json(job)
        return 0 if job["status"] == "SUCCEEDED" else 1
    return report(job, console)


def stop(
    job_id: JobId,
    gateway_url: GatewayOption = DEFAULT_GATEWAY,
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """Stop a job (PENDING or RUNNING; a job that has ended stays as it is)."""
    with gateway(gateway_url, token) as client:
        job = client.stop(job_id)
    if json_output:
        print_json(job)
        return
    phase = f" ({job['phase']})" if job.get("phase") else ""
    stdout_console().print(f"job {job['id']}: {job['status']}{phase}", highlight=False)


def metrics(
    job_id: JobId,
    name: Annotated[
        str | None, typer.Option(help="One metric's series (e.g. loss, eval_accuracy).")
    ] = None,
    csv: Annotated[bool, typer.Option("--csv", help="CSV on stdout instead of a table.")] = False,
    start_step: Annotated[int | None, typer.Option(min=0, help="From this step on.")] = None,
    max_points: Annotated[
        int | None,
        typer.Option(min=2, help="With --name: at most this many points (server-side buckets)."),
    ] = None,
    gateway_url: GatewayOption = DEFAULT_GATEWAY,
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """A job's metrics: names and latest values, or one metric's series.

    Without --name: every metric's name and latest value (--csv: the whole series, a
    column per metric). With --name: that metric's series as a table or as `step,value`
    CSV, downsampled by the server when it is long (and then it says so)."""
    if csv and json_output:
        fail("--csv and --json each choose the output; pass one of them")
    with gateway(gateway_url, token) as client:
        if name is not None:
            _show_series(
                client.metric_series(job_id, name, start_step, max_points), csv, json_output
            )
        elif csv:
            whole = client.all_metrics(job_id, start_step)
            sys.stdout.write(metrics_csv(whole.get("names") or [], whole.get("points") or []))
        elif json_output:
            latest = client.metrics(job_id, start_step, limit=1)
            print_json({k: v for k, v in latest.items() if k in ("job_id", "names", "latest")})
        else:
            stdout_console().print(latest_table(client.metrics(job_id, start_step, limit=1)))


def _show_series(series: Json, csv: bool, json_output: bool) -> None:
    if json_output:
        print_json(series)
    elif csv:
        if series.get("downsampled"):
            stderr_console().print(
                f"note: {downsampled_note(series)}", highlight=False, soft_wrap=True
            )
        sys.stdout.write(series_csv(series.get("points") or []))
    else:
        stdout_console().print(series_table(series))


def download(
    job_id: JobId,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", dir_okay=False, help="Where to write it [default: ID.npz]."),
    ] = None,
    gateway_url: GatewayOption = DEFAULT_GATEWAY,
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """Save a job's trained θ and its spec as an .npz file."""
    path = output or Path(f"{job_id}.npz")
    with gateway(gateway_url, token) as client:
        blob = client.model(job_id)
    try:
        path.write_bytes(blob)
    except OSError as err:
        fail(f"cannot write {path}: {err}")
    if json_output:
        print_json({"job_id": job_id, "path": str(path), "bytes": len(blob)})
    else:
        stdout_console().print(f"wrote {path} ({len(blob)} bytes)", highlight=False)


def predict(
    job_id: JobId,
    input_csv: Annotated[
        Path,
        typer.Option(
            "--input",
            "-i",
            dir_okay=False,
            allow_dash=True,
            help="CSV of feature rows, one sample a line, header optional; - for stdin.",
        ),
    ],
    gateway_url: GatewayOption = DEFAULT_GATEWAY,
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """Predictions and class probabilities for the rows of a CSV file.

    Each line holds one sample's features, as numbers in training order. A first line
    with any non-number in it is a header and is skipped."""
    try:
        text = sys.stdin.read() if str(input_csv) == "-" else input_csv.read_text("utf-8")
        rows = parse_feature_rows(text)
    except (OSError, UnicodeDecodeError, RowsError) as err:
        fail(f"{input_csv}: {err}")
    with gateway(gateway_url, token) as client:
        reply = client.predict(job_id, rows)
    if json_output:
        print_json(reply)
    else:
        stdout_console().print(predictions_table(reply))


def workers(
    gateway_url: GatewayOption = DEFAULT_GATEWAY,
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """Workers: id, host, state, current job, last heartbeat, tasks done."""
    with gateway(gateway_url, token) as client:
        data = client.workers()
    if json_output:
        print_json({"data": data, "count": len(data)})
    else:
        stdout_console().print(workers_table(data))

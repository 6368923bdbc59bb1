"""How the CLI shows the gateway's replies: rich tables and panels for people, JSON for
scripts. Text that comes from the server is escaped, never read as rich markup."""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from rich.console import Console, Group, RenderableType
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

Json = dict[str, Any]

STATUS_STYLE = {
    "PENDING": "yellow",
    "RUNNING": "cyan",
    "SUCCEEDED": "green",
    "FAILED": "red",
    "STOPPED": "magenta",
}
# the metrics a progress line shows: name, label, format
HEADLINE_METRICS = (
    ("loss", "loss", "{:.4g}"),
    ("eval_accuracy", "holdout acc", "{:.3f}"),
    ("eval_r2", "holdout R²", "{:.3f}"),
)


def stdout_console() -> Console:
    console = Console()
    if not console.is_terminal:  # logs and pipes: do not squeeze the tables into 80 columns
        console.width = max(console.width, 120)
    return console


def stderr_console() -> Console:
    return Console(stderr=True)


def print_json(value: object, one_line: bool = False) -> None:
    """``value`` as JSON on stdout, and nothing else (no colour, no wrapping); on one
    line for a process that goes on running after it (``up --json``)."""
    sys.stdout.write(json.dumps(value, indent=None if one_line else 2) + "\n")
    sys.stdout.flush()


# -- values ---------------------------------------------------------------------------------


class JobProgress(NamedTuple):
    step: int
    total_steps: int | None
    percent: float | None
    eta_seconds: float | None


def progress_of(job: Mapping[str, Any]) -> JobProgress:
    """A job's ``progress``; a summary may carry only ``step`` and ``total_steps``."""
    p = job.get("progress") or {}
    step = int(p.get("step", job.get("step")) or 0)
    total = p.get("total_steps", job.get("total_steps"))
    percent = p.get("percent")
    if percent is None and total:
        percent = 100.0 * step / total
    return JobProgress(step, total, percent, p.get("eta_seconds"))


def status_text(job: Mapping[str, Any]) -> str:
    status = str(job.get("status", "?"))
    return f"[{STATUS_STYLE.get(status, 'bold')}]{escape(status)}[/]"


def steps_text(progress: JobProgress) -> str:
    total = "?" if progress.total_steps is None else str(progress.total_steps)
    return f"{progress.step}/{total}"


def eta_text(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "--:--"
    return str(timedelta(seconds=round(max(0.0, seconds))))


def number_text(value: object) -> str:
    if value is None:
        return "—"  # a NaN or infinite value travels as null
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return escape(str(value))
    if isinstance(value, int):
        return str(value)
    return f"{value:.4g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.3e}"


def merge_metrics(known: Mapping[str, Any], latest: Mapping[str, Any] | None) -> Json:
    """The newest value of each metric: a point's holdout metrics are null between
    evaluations, so the earlier value stands; a null loss (it diverged) is news."""
    merged = dict(known)
    for name, value in (latest or {}).items():
        if value is not None or name == "loss":
            merged[name] = value
    return merged


def headline_metrics(latest: Mapping[str, Any] | None) -> str:
    """``loss 0.1234  holdout acc 0.950`` from a job's latest metrics ('' when none yet);
    a diverged loss shows as ``loss —``."""
    latest = latest or {}
    parts = []
    for name, label, template in HEADLINE_METRICS:
        value = latest.get(name)
        if isinstance(value, (int, float)):
            parts.append(f"{label} {template.format(value)}")
        elif name == "loss" and name in latest:
            parts.append(f"{label} —")
    return "  ".join(parts)


def parse_time(value: object) -> datetime | None:
    """An ISO 8601 timestamp or Unix seconds, as an aware datetime."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(float(value)).astimezone()
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.astimezone()
    return None


def time_text(value: object) -> str:
    """Local time, to the second; the raw value when it is not a timestamp."""
    parsed = parse_time(value)
    if parsed is None:
        return "" if value is None else escape(str(value))
    return parsed.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def ago_text(value: object, now: float | None = None) -> str:
    """How long before ``now`` (Unix seconds) a timestamp was: ``4.2 s ago``."""
    parsed = parse_time(value)
    if parsed is None:
        return "never" if value is None else escape(str(value))
    seconds = (time.time() if now is None else now) - parsed.timestamp()
    if seconds < 60:
        return f"{max(0.0, seconds):.1f} s ago"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h ago"
    return f"{seconds / 86400:.0f} days ago"


# -- renderables ----------------------------------------------------------------------------


def _titled(title: str) -> Table:
    """A table whose title stays on one line however narrow its columns are."""
    return Table(title=title, title_justify="left", min_width=Text.from_markup(title).cell_len)


def jobs_table(jobs: Sequence[Mapping[str, Any]]) -> Table:
    table = _titled("Jobs")
    for name in ("id", "name", "status", "phase"):
        table.add_column(name, overflow="fold")
    table.add_column("step/total", justify="right")
    table.add_column("created")
    for job in jobs:
        table.add_row(
            escape(str(job.get("id", ""))),
            escape(str(job.get("name", ""))),
            status_text(job),
            escape(str(job.get("phase") or "")),
            steps_text(progress_of(job)),
            time_text(job.get("created_at")),
        )
    return table


def job_panel(job: Mapping[str, Any]) -> RenderableType:
    """The status panel of ``chainrule status``, then its status transitions."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    phase = f" ({escape(str(job['phase']))})" if job.get("phase") else ""
    grid.add_row("status", status_text(job) + phase)
    for label, key in (("message", "message"), ("failure reason", "failure_reason")):
        if job.get(key):
            grid.add_row(label, escape(str(job[key])))
    progress = progress_of(job)
    percent = "" if progress.percent is None else f" ({progress.percent:.0f}%)"
    grid.add_row(
        "progress", f"{steps_text(progress)} steps{percent}, ETA {eta_text(progress.eta_seconds)}"
    )
    for label, key in (("created", "created_at"), ("started", "started_at"), ("ended", "ended_at")):
        grid.add_row(label, time_text(job.get(key)) or "—")
    grid.add_row("latest metrics", _metrics_line(job.get("latest_metrics")))
    workers = job.get("workers") or {}
    grid.add_row("workers", f"{workers.get('active', 0)} active, {workers.get('lost', 0)} lost")
    title = f"job {escape(str(job.get('id')))}  {escape(str(job.get('name', '')))}"
    parts: list[RenderableType] = [Panel(grid, title=title, title_align="left", expand=False)]
    transitions = job.get("status_transitions") or []
    if transitions:
        parts.append(_transitions_table(transitions))
    return Group(*parts)


def _metrics_line(latest: Mapping[str, Any] | None) -> str:
    if not latest:
        return "none yet"
    shown = {k: v for k, v in latest.items() if k != "time" and (v is not None or k == "loss")}
    return "  ".join(f"{escape(k)} {number_text(v)}" for k, v in shown.items())


def _transitions_table(transitions: Sequence[Mapping[str, Any]]) -> Table:
    table = _titled("Status transitions")
    for name in ("at", "status", "phase", "message", "reason"):
        table.add_column(name, overflow="fold")
    for t in transitions:
        table.add_row(
            time_text(t.get("at")),
            status_text(t),
            escape(str(t.get("phase") or "")),
            escape(str(t.get("message") or "")),
            escape(str(t.get("reason") or "")),
        )
    return table


def latest_table(reply: Mapping[str, Any]) -> Table:
    """Metric names and their latest values (``metrics ID`` without --name)."""
    latest = reply.get("latest") or {}
    table = _titled(f"Metrics of job {escape(str(reply.get('job_id')))}")
    table.add_column("name")
    table.add_column("latest", justify="right")
    for name in reply.get("names") or list(latest):
        table.add_row(escape(str(name)), number_text(latest.get(name)))
    if "step" in latest:
        table.caption = f"at step {latest['step']}"
    return table


def series_table(series: Mapping[str, Any]) -> RenderableType:
    """One metric's (possibly downsampled) points, saying whether they were downsampled."""
    name = escape(str(series.get("name")))
    table = _titled(f"{name} of job {escape(str(series.get('job_id')))}")
    table.add_column("step", justify="right")
    table.add_column(name, justify="right")
    points = series.get("points") or []
    for point in points:
        table.add_row(str(point.get("step")), number_text(point.get("value")))
    note = f"{len(points)} points"
    if series.get("downsampled"):
        note += f", {downsampled_note(series)}"
    return Group(table, escape(note))


def downsampled_note(series: Mapping[str, Any]) -> str:
    return (
        f"downsampled by the server into buckets of {series.get('bucket_size')} steps, "
        "each keeping its min and max (--max-points asks for more)"
    )


def workers_table(workers: Sequence[Mapping[str, Any]], now: float | None = None) -> Table:
    table = _titled("Workers")
    for name in ("id", "host", "state", "current job", "last heartbeat"):
        table.add_column(name, overflow="fold")
    table.add_column("tasks done", justify="right")
    for w in workers:
        table.add_row(
            escape(str(w.get("id", ""))),
            escape(str(w.get("host") or "")),
            escape(str(w.get("state") or "")),
            escape(str(w.get("current_job") or "—")),
            ago_text(w.get("last_heartbeat"), now),
            str(w.get("tasks_done", "")),
        )
    return table


def predictions_table(reply: Mapping[str, Any]) -> Table:
    """One line per input row: the prediction, then a probability per class (if any)."""
    probabilities = reply.get("probabilities") or []
    widest = max((len(p) for p in probabilities if p), default=0)
    # without class names the columns are the class indices the predictions use
    classes = [str(c) for c in reply.get("classes") or range(widest)]
    title = f"Predictions of job {escape(str(reply.get('job_id')))}"
    if reply.get("version") is not None:
        title += f" (θ version {reply['version']})"
    table = _titled(title)
    table.add_column("row", justify="right")
    table.add_column("prediction", justify="right")
    for name in classes:
        table.add_column(f"p({escape(name)})", justify="right")
    for i, prediction in enumerate(reply.get("predictions") or []):
        row_p = probabilities[i] if i < len(probabilities) and probabilities[i] else []
        cells = [f"{p:.4f}" for p in row_p][: len(classes)]
        cells += [""] * (len(classes) - len(cells))
        table.add_row(str(i + 1), number_text(prediction), *cells)
    return table

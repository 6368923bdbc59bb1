"""Reading job specs, following a job until it ends, and saying how it ended: what
``submit --watch``, ``watch`` and ``up --submit`` share. All through the REST API."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn

from chainrule.cli.client import GatewayClient, GatewayError, GatewayUnreachableError, Json
from chainrule.cli.output import (
    eta_text,
    headline_metrics,
    merge_metrics,
    progress_of,
    status_text,
    steps_text,
)
from chainrule.store.job_records import TERMINAL

POLL_S = 0.5
# how long a watch rides out a gateway it cannot reach (a restart) before it gives up
UNREACHABLE_GRACE_S = 15.0
PLAIN_EVERY_PERCENT = 10  # without a terminal, a progress line per this much of the job
RECENT_STEPS = 1000  # how far back a watch looks for holdout metrics, at most


class SpecError(ValueError):
    """A spec file that is not a JSON/YAML object."""


def load_spec(path: Path) -> dict[str, Any]:
    """A job spec from a .json or .yaml/.yml file."""
    try:
        text = path.read_text(encoding="utf-8")
        data = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    except (OSError, ValueError, yaml.YAMLError) as err:
        raise SpecError(f"cannot read the job spec {path}: {err}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path} must hold a JSON/YAML object; got {type(data).__name__}")
    return data


class Follower:
    """Polls one job until it ends, riding out a short gateway outage."""

    def __init__(
        self, client: GatewayClient, job_id: str, stop: threading.Event | None = None
    ) -> None:
        self.client = client
        self.job_id = job_id
        self.stop = stop or threading.Event()

    def jobs(self) -> Iterator[Json]:
        """The job's record now, then after each poll, until it ends (the last one yielded
        is terminal) or ``stop`` is set (then the iteration just ends)."""
        job = self.client.job(self.job_id)
        reached = time.monotonic()
        while True:
            yield job
            if job["status"] in TERMINAL or self.stop.wait(POLL_S):
                return
            try:
                job = self.client.job(self.job_id)
                reached = time.monotonic()
            except GatewayUnreachableError:
                if time.monotonic() - reached > UNREACHABLE_GRACE_S:
                    raise


class LatestMetrics:
    """The newest value of each metric while a job runs. The job's latest point lacks the
    holdout metrics between evaluations, so the points since the last look are read too."""

    def __init__(self, client: GatewayClient, job_id: str) -> None:
        self.client = client
        self.job_id = job_id
        self.known: Json = {}
        self.next_step: int | None = None
        self.reads_points = True

    def update(self, job: Json) -> Json:
        points = [job.get("latest_metrics") or {}, *self._new_points(progress_of(job).step)]
        for point in sorted(points, key=lambda p: int(p.get("step") or 0)):
            if int(point.get("step") or 0) >= int(self.known.get("step") or 0):
                self.known = merge_metrics(self.known, point)
        return self.known

    def _new_points(self, step: int) -> list[Json]:
        if not self.reads_points:
            return []
        start = max(self.next_step or 0, step - RECENT_STEPS)
        if step < start:
            return []
        try:
            page = self.client.metrics(self.job_id, start, RECENT_STEPS)
        except GatewayUnreachableError:
            return []  # the job's own poll decides when an outage is too long
        except GatewayError:
            self.reads_points = False  # a gateway without the paged series: the job's point
            return []
        points = list(page.get("points") or [])
        following = page.get("next_start_step")
        if following is not None:
            self.next_step = int(following)
        elif points:
            self.next_step = int(points[-1]["step"]) + 1
        return points


def watch(
    client: GatewayClient,
    job_id: str,
    console: Console,
    stop: threading.Event | None = None,
    quiet: bool = False,
) -> Json:
    """Follow a job until it ends, with a live progress bar on a terminal (a line per
    10 % elsewhere, nothing when ``quiet``); returns its last record, which is not
    terminal only when ``stop`` was set."""
    jobs = Follower(client, job_id, stop).jobs()
    if quiet:
        return _last(jobs)
    metrics = LatestMetrics(client, job_id)
    if console.is_terminal:
        return _live_bar(jobs, metrics, console)
    return _plain_lines(jobs, metrics, console)


def _last(jobs: Iterator[Json]) -> Json:
    job: Json = {}
    for job in jobs:  # noqa: B007 - the last one is the answer
        pass
    return job


def _live_bar(jobs: Iterator[Json], metrics: LatestMetrics, console: Console) -> Json:
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("step {task.fields[steps]}"),
        TextColumn("{task.fields[metrics]}"),
        TextColumn("ETA {task.fields[eta]}"),
        TextColumn("{task.fields[state]}"),
    )
    job: Json = {}
    bar = Progress(*columns, console=console, transient=False)
    task = bar.add_task("", total=None, steps="", metrics="", eta="", state="")
    try:
        for job in jobs:
            p = progress_of(job)
            known = metrics.update(job)
            bar.update(
                task,
                description=escape(str(job.get("name", ""))),
                completed=p.step,
                total=p.total_steps,
                steps=steps_text(p),
                metrics=escape(headline_metrics(known)),
                eta=eta_text(p.eta_seconds),
                state=_state(job),
            )
            bar.start()  # once the first record is in: no empty bar (later calls do nothing)
    finally:
        bar.stop()
    return job


def _plain_lines(jobs: Iterator[Json], metrics: LatestMetrics, console: Console) -> Json:
    """For logs and pipes: a line when the status or phase changes, and per 10 %."""
    job: Json = {}
    shown: tuple[object, ...] = ()
    for job in jobs:
        p = progress_of(job)
        known = metrics.update(job)
        tenth = int((p.percent or 0) // PLAIN_EVERY_PERCENT)
        if (job["status"], job.get("phase"), tenth) != shown:
            shown = (job["status"], job.get("phase"), tenth)
            parts = [
                f"step {steps_text(p)}",
                escape(headline_metrics(known)),
                "" if job["status"] in TERMINAL else f"ETA {eta_text(p.eta_seconds)}",
                _state(job),
            ]
            line = "  ".join(part for part in parts if part)
            console.print(line, highlight=False, soft_wrap=True)
    return job


def _state(job: Json) -> str:
    phase = job.get("phase")
    return status_text(job) + (f" {escape(str(phase))}" if phase else "")


def report(job: Json, console: Console) -> int:
    """Print how a job ended; the exit code: 0 only for SUCCEEDED."""
    m = job.get("latest_metrics") or {}
    acc = m.get("eval_accuracy")
    steps = progress_of(job).step
    if job["status"] == "SUCCEEDED":
        tail = f", final holdout accuracy {acc:.4f}" if acc is not None else ""
        console.print(
            f"[green]job {escape(str(job['id']))} SUCCEEDED[/] after {steps} steps{tail}",
            soft_wrap=True,
        )
        return 0
    why = job.get("failure_reason") or job.get("message") or "no reason given"
    console.print(
        f"[red]job {escape(str(job['id']))} {job['status']}[/] at step {steps}: {escape(str(why))}",
        soft_wrap=True,
    )
    return 1

"""Submitting and following jobs through the gateway's REST API (never its internals)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import yaml
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


class GatewayError(RuntimeError):
    pass


class GatewayClient:
    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        self.http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout)

    def submit(self, spec: dict[str, Any]) -> dict[str, Any]:
        reply = self.http.post("/api/v1/jobs", json=spec)
        if reply.status_code == 422:
            raise GatewayError(_validation_message(reply.json()))
        reply.raise_for_status()
        return dict(reply.json())

    def job(self, job_id: str) -> dict[str, Any]:
        reply = self.http.get(f"/api/v1/jobs/{job_id}")
        reply.raise_for_status()
        return dict(reply.json())

    def close(self) -> None:
        self.http.close()


def load_spec(path: Path) -> dict[str, Any]:
    """A job spec from a .json or .yaml/.yml file."""
    text = path.read_text()
    data = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON/YAML object; got {type(data).__name__}")
    return data


def _validation_message(body: dict[str, Any]) -> str:
    lines = ["the job spec was rejected:"]
    for err in body.get("detail", []):
        where = ".".join(str(p) for p in err.get("loc", []) if p != "body")
        lines.append(f"  {where}: {err.get('msg')}")
    return "\n".join(lines)


def watch(
    client: GatewayClient, job_id: str, console: Console, poll: float = 0.5
) -> dict[str, Any]:
    """Follow a job with a progress bar until it ends; returns its final record."""
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("step {task.completed:.0f}/{task.total:.0f}"),
        TextColumn("{task.fields[metrics]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        job = client.job(job_id)
        bar = progress.add_task(job["name"], total=job["total_steps"], metrics="")
        while True:
            progress.update(bar, completed=job["step"], metrics=_metrics_text(job))
            if job["status"] in TERMINAL:
                return job
            time.sleep(poll)
            job = client.job(job_id)


def _metrics_text(job: dict[str, Any]) -> str:
    m = job.get("latest_metrics") or {}
    parts = [job["status"].lower()]
    if m.get("loss") is not None:
        parts.append(f"loss {m['loss']:.4f}")
    if m.get("eval_accuracy") is not None:
        parts.append(f"holdout acc {m['eval_accuracy']:.3f}")
    return "  ".join(parts)


def report(job: dict[str, Any], console: Console) -> int:
    """Print how a job ended; the exit code: 0 only for SUCCEEDED."""
    m = job.get("latest_metrics") or {}
    acc = m.get("eval_accuracy")
    if job["status"] == "SUCCEEDED":
        tail = f", final holdout accuracy {acc:.4f}" if acc is not None else ""
        console.print(f"[green]job {job['id']} SUCCEEDED[/] after {job['step']} steps{tail}")
        return 0
    console.print(
        f"[red]job {job['id']} {job['status']}[/]: {job.get('failure_reason') or job.get('message')}"
    )
    return 1

"""Driving jobs through a gateway's REST API, as a user would, with bounded waits."""

from __future__ import annotations

import time
from typing import Any

import httpx


def run_job(gateway: str, job_spec: dict[str, Any], timeout: float = 180) -> dict[str, Any]:
    """Submit ``job_spec`` and return the job once it has ended."""
    reply = httpx.post(f"{gateway}/api/v1/jobs", json=job_spec, timeout=10)
    assert reply.status_code == 201, reply.text
    return run_job_to_end(gateway, reply.json()["id"], timeout)


def run_job_to_end(gateway: str, job_id: str, timeout: float = 120) -> dict[str, Any]:
    """The job once it is SUCCEEDED, FAILED or STOPPED (TimeoutError if it does not end)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = httpx.get(f"{gateway}/api/v1/jobs/{job_id}", timeout=10).json()
        if job["status"] in ("SUCCEEDED", "FAILED", "STOPPED"):
            return dict(job)
        time.sleep(0.2)
    raise TimeoutError(f"job {job_id} did not end within {timeout} s")


def submit_and_wait_for_step(gateway: str, job_spec: dict[str, Any], step: int) -> str:
    """Submit a job and return its id once it has done ``step`` steps."""
    job_id = str(httpx.post(f"{gateway}/api/v1/jobs", json=job_spec, timeout=10).json()["id"])
    wait_for_step(gateway, job_id, step)
    return job_id


def wait_for_step(gateway: str, job_id: str, step: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while httpx.get(f"{gateway}/api/v1/jobs/{job_id}", timeout=10).json()["step"] < step:
        assert time.monotonic() < deadline, f"job {job_id} did not reach step {step}"
        time.sleep(0.05)


def metric_series(gateway: str, job_id: str) -> list[dict[str, Any]]:
    """The job's metric points, one per applied step."""
    return list(httpx.get(f"{gateway}/api/v1/jobs/{job_id}/metrics", timeout=10).json()["points"])

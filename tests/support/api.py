"""What the REST API tests share: a real gateway process on a loopback port with the
real Redis behind it (its own key prefix, deleted afterwards), the stores a scheduler
would write through, and a small Server-Sent Events reader."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import redis

from chainrule.nn import Params
from chainrule.store import JobStore, binary_client
from tests.support.examples import example_spec
from tests.support.processes import free_port, service_process, wait_for_health
from tests.support.real_redis import delete_prefixed, unique_prefix


@dataclass
class Api:
    http: httpx.Client
    store: JobStore  # the keys the gateway reads, written as the scheduler writes them
    client: redis.Redis  # replies as str
    blobs: redis.Redis  # replies as bytes: models, checkpoints, preprocessing
    prefix: str
    base_url: str


@contextmanager
def running_gateway(redis_url: str, log_dir: Path, **env: str) -> Iterator[Api]:
    """``python -m chainrule.gateway`` with ``CHAINRULE_<KEY>=value`` for each ``env``
    item; its keys are deleted afterwards."""
    port, prefix = free_port(), unique_prefix()
    log = log_dir / "gateway.log"
    settings = {
        "CHAINRULE_REDIS_URL": redis_url,
        "CHAINRULE_KEY_PREFIX": prefix,
        "CHAINRULE_GATEWAY_HOST": "127.0.0.1",
        "CHAINRULE_GATEWAY_PORT": str(port),
        **{f"CHAINRULE_{k.upper()}": v for k, v in env.items()},
    }
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    blobs = binary_client(redis_url)
    base_url = f"http://127.0.0.1:{port}"
    try:
        with (
            service_process("chainrule.gateway", settings, str(log)) as proc,
            httpx.Client(base_url=base_url, timeout=10.0) as http,
        ):
            wait_for_health(http, proc, log, timeout=30.0)
            yield Api(http, JobStore(client, prefix=prefix), client, blobs, prefix, base_url)
    finally:
        delete_prefixed(client, prefix)
        client.close()
        blobs.close()


def submit(api: Api, spec: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    reply = api.http.post("/api/v1/jobs", json={**(spec or example_spec()), **extra})
    assert reply.status_code == 201, reply.text
    body: dict[str, Any] = reply.json()
    return body


def running_job(api: Api, spec: dict[str, Any] | None = None) -> str:
    job_id: str = submit(api, spec)["id"]
    api.store.set_status(job_id, "RUNNING", phase="training")
    return job_id


def point(step: int, **fields: Any) -> dict[str, Any]:
    return {
        "step": step,
        "time": 1000.0 + step,
        "loss": 1.0 / (step + 1),
        "lr": 0.5,
        "samples_per_s": 512.0,
        "active_workers": 2,
        **fields,
    }


def npz(arrays: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def save_model(api: Api, job_id: str, params: Params) -> None:
    """θ as the scheduler stores it when a job ends: np.savez of the params dict."""
    api.blobs.set(f"{api.prefix}:job:{job_id}:model", npz(dict(params)))


@dataclass
class Sse:
    """One Server-Sent Event, or a comment line (``comment`` set, the rest empty)."""

    id: str | None = None
    event: str | None = None
    data: str = ""
    comment: str | None = None


def read_sse(lines: Iterator[str]) -> Iterator[Sse]:
    """Events (and comments) from the lines of an SSE response, as a browser reads them."""
    current = Sse()
    fields = False
    for line in lines:
        if line == "":
            if fields:
                yield current
            current, fields = Sse(), False
        elif line.startswith(":"):
            yield Sse(comment=line[1:].strip())
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            fields = True
            if name == "id":
                current.id = value
            elif name == "event":
                current.event = value
            elif name == "data":
                current.data = f"{current.data}\n{value}" if current.data else value

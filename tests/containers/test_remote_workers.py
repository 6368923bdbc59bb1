"""Workers on another host: the stack publishes the scheduler, the parameter server and
Redis on one address (docker-compose.remote-workers.yml), and workers started with the
README's plain `docker run` command on another Docker network (the default bridge, which
reaches the stack only through those published ports) join a running job and do its
work. The command is the README's, verbatim but for HOST."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from tests.support.compose import REMOTE_UP, REMOTE_WORKER, Stack, compose_stack, docker
from tests.support.examples import example_spec

pytestmark = pytest.mark.timeout(600)


def bridge_address() -> str:
    """The host's address on Docker's default bridge: what the "other host" reaches it by."""
    out = subprocess.run(
        ["ip", "-4", "-o", "addr", "show", "docker0"],
        capture_output=True, text=True, timeout=10, check=True,
    ).stdout  # fmt: skip
    return out.split("inet ")[1].split("/")[0]


@pytest.fixture
def host() -> str:
    return bridge_address()


@pytest.fixture
def stack(host: str) -> Iterator[Stack]:
    with compose_stack(REMOTE_UP, CHAINRULE_PUBLISH_ADDRESS=host) as stack:
        yield stack


def test_workers_on_another_network_join_a_running_job_through_published_ports(
    stack: Stack, host: str
) -> None:
    # the other network cannot reach the stack's own addresses, only what is published
    internal = stack.inspect(stack.containers("paramserver")[0])["NetworkSettings"]["Networks"]
    paramserver_ip = next(iter(internal.values()))["IPAddress"]
    reach = (
        "import socket, sys\n"
        "def ok(a):\n"
        "    try:\n        socket.create_connection(a, timeout=3).close(); return 'open'\n"
        "    except OSError: return 'closed'\n"
        f"print(ok(('{paramserver_ip}', 50051)), ok(('{host}', 50051)))\n"
    )
    out = docker("run", "--rm", "chainrule:0.1.0", "python", "-c", reach, timeout=60)
    assert out.split() == ["closed", "open"], out

    # an async job starts once `training.workers` are live, then takes every free worker
    spec = example_spec("xor", training={"mode": "async", "workers": 2, "steps": 1_000_000})
    job_id = stack.submit(spec)
    try:
        stack.wait(job_id, lambda j: j["workers"]["active"] == 2, "served by the stack's 2 workers")
        command = REMOTE_WORKER.replace("HOST", host)
        remote = []
        for _ in range(2):
            container = stack.sh(command).strip()
            stack.extra_containers.append(container)
            remote.append(container[:12])  # its host name
        job = stack.wait(job_id, lambda j: j["workers"]["active"] == 4, "served by 4 workers", 90)
        workers = stack.api.get("/api/v1/workers").json()["data"]
        done = {w["host"]: w["tasks_done"] for w in workers if w["host"] in remote}
        assert set(done) == set(remote), workers
        assert all(n > 0 for n in done.values()), done
        print(f"remote workers' tasks: {done}; job at step {job['step']}")
    finally:
        stack.api.post(f"/api/v1/jobs/{job_id}/stop")
    assert stack.run_to_end(job_id)["status"] == "STOPPED"

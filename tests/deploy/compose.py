"""Reading compose files the way ``docker compose`` does, without Docker: YAML with
anchors and merge keys, ``${VAR}`` interpolation, override files merged onto the base,
profiles, and the environment each service's containers get."""

from __future__ import annotations

import copy
import importlib.resources
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

Model = dict[str, Any]

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error},
# ${NAME:+alternative}, ${NAME+alternative}, $NAME; "$$" is a literal "$"
_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)
# fields that are lists and that an override file adds to instead of replacing
_APPENDED = frozenset({"ports", "expose", "volumes", "profiles", "dns", "extra_hosts"})


class InterpolationError(ValueError):
    """A required variable (``${NAME:?message}``) is missing, or ``${`` is malformed."""


def compose_schema() -> dict[str, Any]:
    """The Compose Specification's JSON schema, as shipped by check-jsonschema."""
    vendor = importlib.resources.files("check_jsonschema") / "builtin_schemas" / "vendor"
    schema: dict[str, Any] = json.loads((vendor / "compose-spec.json").read_text("utf-8"))
    return schema


def load(path: Path) -> Model:
    model = yaml.safe_load(path.read_text("utf-8"))  # resolves anchors and `<<` merge keys
    assert isinstance(model, dict), f"{path} is not a YAML mapping"
    return model


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """``value`` with every ``${...}`` in its strings (not its keys) resolved from ``env``,
    as compose resolves them from the shell and the .env file."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["named"]
        op, arg = match["op"] or "", match["arg"] or ""
        present = name in env if not op.startswith(":") else bool(env.get(name))
        if op.endswith("-"):
            return env[name] if present else interpolate(arg, env)
        if op.endswith("?"):
            if not present:
                raise InterpolationError(f"required variable {name} is missing a value: {arg}")
            return env[name]
        if op.endswith("+"):
            return interpolate(arg, env) if present else ""
        return env.get(name, "")

    result = _VARIABLE.sub(substitute, value)
    if "${" in value.replace("$$", "") and "${" in result:
        raise InterpolationError(f"malformed variable reference in {value!r}")
    return result


def merge(base: Model, override: Model) -> Model:
    """``override`` merged onto ``base`` as ``docker compose -f base -f override`` does:
    mappings merge key by key, the fields in _APPENDED are concatenated, others replace."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        elif key in _APPENDED and isinstance(value, list) and isinstance(merged.get(key), list):
            merged[key] = [*merged[key], *(v for v in value if v not in merged[key])]
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def load_project(files: list[Path], env: Mapping[str, str]) -> Model:
    """The model of ``docker compose -f files[0] -f files[1] ...``, interpolated."""
    model: Model = {}
    for path in files:
        model = merge(model, load(path))
    interpolated: Model = interpolate(model, env)
    return interpolated


def active_services(model: Model, profiles: frozenset[str] = frozenset()) -> dict[str, Model]:
    """The services ``docker compose up`` starts with ``profiles`` enabled."""
    return {
        name: service
        for name, service in model.get("services", {}).items()
        if not service.get("profiles") or profiles & set(service["profiles"])
    }


def environment(service: Model) -> dict[str, str]:
    """A service's ``environment``, as a mapping (it may be written as a list of K=V)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) if "=" in item else (item, "") for item in env)
        return {k: v for k, v in pairs}
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def healthcheck_command(service: Model) -> list[str] | None:
    """The exec-form command of a service's healthcheck (None if it has none)."""
    test = (service.get("healthcheck") or {}).get("test")
    if not test:
        return None
    assert isinstance(test, list) and test[0] == "CMD", f"use exec form ['CMD', ...]: {test}"
    return [str(part) for part in test[1:]]


def depends_on(service: Model) -> dict[str, str]:
    """``{dependency: condition}`` (the short list form means service_started)."""
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: "service_started" for name in deps}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def replicas(service: Model) -> int:
    return int((service.get("deploy") or {}).get("replicas", 1))


def exposed_ports(service: Model) -> set[int]:
    """Container ports the service declares: ``expose`` and the targets of ``ports``."""
    ports = {int(str(p).split("/")[0]) for p in service.get("expose", [])}
    for mapping in service.get("ports", []):
        target = mapping.get("target") if isinstance(mapping, dict) else str(mapping).split(":")[-1]
        ports.add(int(str(target).split("/")[0]))
    return ports


def startup_order(services: Mapping[str, Model]) -> list[str]:
    """The services in an order where every one comes after what it depends on."""
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in order:
            return
        assert name not in visiting, f"depends_on has a cycle through {name}"
        assert name in services, f"depends_on names {name!r}, which is not a service"
        visiting.add(name)
        for dependency in depends_on(services[name]):
            visit(dependency)
        visiting.discard(name)
        order.append(name)

    for name in services:
        visit(name)
    return order

"""docker-compose.yml (and the shard override) without a Docker engine: the Compose
Specification's schema, and the rules that make the stack start and scale."""

from __future__ import annotations

import re
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest

from tests.deploy import compose
from tests.deploy.common import (
    COMPOSE_FILE,
    HEALTHCHECK_MODULE,
    PREFIX,
    REMOTE_WORKERS_FILE,
    RPC_TOKENS,
    SHARDS_FILE,
    assert_runnable_module,
    entry_module,
    listen_ports,
    port_of,
    service_of,
    unknown_variables,
)

pytestmark = pytest.mark.timeout(60)

# what a user sets in the shell or .env: the required secrets, nothing else
USER_ENV = {"CHAINRULE_API_TOKENS": "a-token", **RPC_TOKENS}
ALL_PROFILES = frozenset({"monitoring"})
FILE_SETS = {"base": [COMPOSE_FILE], "shards": [COMPOSE_FILE, SHARDS_FILE]}


def project(files: str = "base") -> compose.Model:
    return compose.load_project(FILE_SETS[files], USER_ENV)


def chainrule_services(model: compose.Model) -> dict[str, compose.Model]:
    """The services that run the chainrule image (a ``python -m chainrule.*`` command)."""
    return {
        name: service
        for name, service in compose.active_services(model, ALL_PROFILES).items()
        if str(service.get("image", "")).startswith("chainrule:")
    }


@pytest.mark.parametrize(
    "path", [COMPOSE_FILE, SHARDS_FILE, REMOTE_WORKERS_FILE], ids=lambda p: p.name
)
def test_the_files_validate_against_the_compose_specification(path: Any) -> None:
    schema = compose.compose_schema()
    validator = jsonschema.Draft202012Validator(schema)
    env = {**USER_ENV, "CHAINRULE_PUBLISH_ADDRESS": "10.0.0.5"}
    for model in (compose.load(path), compose.interpolate(compose.load(path), env)):
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(model)]
        assert not errors, f"{path.name} breaks the Compose Specification:\n" + "\n".join(errors)


def test_the_compose_schema_is_the_real_one() -> None:
    """A sanity check of the check: the schema rejects what compose rejects."""
    schema = compose.compose_schema()
    assert schema["title"] == "Compose Specification"
    validator = jsonschema.Draft202012Validator(schema)
    assert validator.is_valid({"services": {"worker": {"image": "x", "deploy": {"replicas": 2}}}})
    for bad in ({"bogus": 1}, {"deploy": {"replicas": [2]}}, {"depends_on": {"x": {"when": 1}}}):
        assert not validator.is_valid({"services": {"worker": {"image": "x", **bad}}}), bad


def test_the_stack_has_the_services_of_the_design() -> None:
    services = compose.active_services(project())
    assert set(services) == {"redis", "paramserver", "scheduler", "worker", "gateway"}
    monitoring = set(compose.active_services(project(), ALL_PROFILES)) - set(services)
    assert monitoring == {"prometheus", "grafana"}


def test_workers_scale_with_docker_compose_up_scale() -> None:
    worker = project()["services"]["worker"]
    for pinned in ("container_name", "ports", "hostname"):
        assert pinned not in worker, f"worker sets {pinned}: `--scale worker=N` would clash"
    assert compose.replicas(worker) == 2
    assert "CHAINRULE_WORKER_ID" not in compose.environment(worker), "ids must differ per replica"


@pytest.mark.parametrize("files", FILE_SETS)
def test_every_service_has_a_healthcheck_and_a_restart_policy(files: str) -> None:
    for name, service in compose.active_services(project(files), ALL_PROFILES).items():
        assert compose.healthcheck_command(service), f"{name} has no healthcheck"
        assert service.get("restart") in ("unless-stopped", "always", "on-failure"), name


@pytest.mark.parametrize("files", FILE_SETS)
def test_dependencies_wait_until_healthy(files: str) -> None:
    services = compose.active_services(project(files), ALL_PROFILES)
    compose.startup_order(services)  # no cycle, no unknown name
    for name, service in services.items():
        for dependency, condition in compose.depends_on(service).items():
            assert condition == "service_healthy", f"{name} -> {dependency}: {condition}"
            assert compose.healthcheck_command(services[dependency]), dependency


@pytest.mark.parametrize("files", FILE_SETS)
def test_every_command_is_an_entry_point_of_the_image(files: str) -> None:
    services = chainrule_services(project(files))
    assert services, "no service runs the chainrule image"
    for name, service in services.items():
        module = entry_module(service["command"])
        assert_runnable_module(module)
        service_of(module)
        check = compose.healthcheck_command(service)
        assert check is not None
        assert entry_module(check) == HEALTHCHECK_MODULE, f"{name}: {check}"
        assert_runnable_module(HEALTHCHECK_MODULE)


@pytest.mark.parametrize("files", FILE_SETS)
def test_every_variable_is_a_setting_of_the_service_that_gets_it(files: str) -> None:
    for name, service in chainrule_services(project(files)).items():
        env = compose.environment(service)
        not_ours = [k for k in env if not k.startswith(PREFIX)]
        assert not not_ours, f"{name}: configuration only through {PREFIX}*; got {not_ours}"
        unknown = unknown_variables(service_of(entry_module(service["command"])), env)
        assert not unknown, f"{name} sets {unknown}, which its settings class does not read"


@pytest.mark.parametrize("files", FILE_SETS)
def test_healthchecks_and_addresses_point_at_ports_that_listen(files: str) -> None:
    """A service's healthcheck asks a port it listens on (and exposes); every
    ``service:port`` in a variable names a service that exposes that port."""
    services = compose.active_services(project(files))
    for name, service in chainrule_services(project(files)).items():
        env = compose.environment(service)
        listening = listen_ports(service_of(entry_module(service["command"])), env)
        assert listening <= compose.exposed_ports(service), f"{name} does not expose {listening}"
        check = compose.healthcheck_command(service) or []
        target = check[check.index("--http") + 1] if "--http" in check else check[3]
        port = int(re.search(r":(\d+)", target.removeprefix("http://"))[1])  # type: ignore[index]
        assert port in listening, (
            f"{name}'s healthcheck asks port {port}; it listens on {listening}"
        )
        for value in env.values():
            for host, port_text in re.findall(r"(?:^|[/,@])([a-z][a-z0-9-]*):(\d+)", value):
                assert host in services, f"{name}: {value} names no service {host!r}"
                assert int(port_text) in compose.exposed_ports(services[host]), (name, value)


def test_redis_persists_to_a_named_volume() -> None:
    model = project()
    redis = model["services"]["redis"]
    assert redis["command"][:3] == ["redis-server", "--appendonly", "yes"]
    command = redis["command"]
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert "--maxmemory" in command
    volume, _, target = redis["volumes"][0].partition(":")
    assert target == "/data" and volume in model["volumes"], redis["volumes"]


def test_the_api_token_is_required_and_the_gateway_is_published() -> None:
    with pytest.raises(compose.InterpolationError, match="CHAINRULE_API_TOKENS"):
        compose.load_project([COMPOSE_FILE], RPC_TOKENS)
    gateway = project()["services"]["gateway"]
    assert compose.environment(gateway)["CHAINRULE_API_TOKENS"] == "a-token"
    assert gateway["ports"] == ["8000:8000"]


def test_the_rpc_tokens_are_required_by_every_grpc_service_and_client() -> None:
    for variable in ("CHAINRULE_WORKER_TOKENS", "CHAINRULE_SCHEDULER_TOKENS"):
        without = {k: v for k, v in USER_ENV.items() if k != variable}
        for files in FILE_SETS.values():
            with pytest.raises(compose.InterpolationError, match=variable):
                compose.load_project(files, without)
    services = chainrule_services(project("shards"))
    for name, service in services.items():
        env = compose.environment(service)
        if name == "gateway":  # it calls no gRPC service
            assert "CHAINRULE_WORKER_TOKENS" not in env
            continue
        assert env["CHAINRULE_WORKER_TOKENS"] == "a-worker-token", name
        # the scheduler's token only where it is sent or accepted: a worker cannot use it
        expected = None if name == "worker" else "a-scheduler-token"
        assert env.get("CHAINRULE_SCHEDULER_TOKENS") == expected, name


def test_images_are_pinned_and_chainrule_services_share_one() -> None:
    services = compose.active_services(project("shards"), ALL_PROFILES)
    for name, service in services.items():
        image = str(service["image"])
        assert re.search(r":[^/]*\d", image) and not image.endswith(":latest"), (name, image)
    chainrule = {s["image"] for s in chainrule_services(project("shards")).values()}
    assert chainrule == {"chainrule:0.1.0"}


def test_the_shard_override_lists_every_shard_in_order_everywhere() -> None:
    services = chainrule_services(project("shards"))
    shards = {
        name: compose.environment(s)["CHAINRULE_PARAMSERVER_SHARD"]
        for name, s in services.items()
        if entry_module(s["command"]) == "chainrule.paramserver"
    }
    assert shards == {"paramserver": "0", "paramserver-1": "1"}
    for client in ("scheduler", "worker"):
        listed = compose.environment(services[client])["CHAINRULE_PARAMSERVERS"].split(",")
        assert [a.split(":")[0] for a in listed] == ["paramserver", "paramserver-1"], client
        assert {port_of(a) for a in listed} == {50051}
        assert {"paramserver", "paramserver-1"} <= set(compose.depends_on(services[client]))


def test_the_remote_workers_override_publishes_what_a_worker_needs_on_one_address() -> None:
    files = [COMPOSE_FILE, REMOTE_WORKERS_FILE]
    with pytest.raises(compose.InterpolationError, match="CHAINRULE_PUBLISH_ADDRESS"):
        compose.load_project(files, USER_ENV)  # never on every address by default
    model = compose.load_project(files, {**USER_ENV, "CHAINRULE_PUBLISH_ADDRESS": "10.0.0.5"})
    services = compose.active_services(model)
    published = {name: s.get("ports") for name, s in services.items() if s.get("ports")}
    assert published == {
        "redis": ["10.0.0.5:6379:6379"],
        "paramserver": ["10.0.0.5:50051:50051"],
        "scheduler": ["10.0.0.5:50052:50052"],
        "gateway": ["8000:8000"],
    }
    # and these are the addresses a worker started with the README's command is given
    worker = compose.environment(services["worker"])
    assert port_of(worker["CHAINRULE_SCHEDULER"]) == 50052
    assert {port_of(a) for a in worker["CHAINRULE_PARAMSERVERS"].split(",")} == {50051}


def test_the_readme_shows_the_commands_the_container_tests_run() -> None:
    from tests.support.compose import README_COMMANDS

    readme = (COMPOSE_FILE.parent / "README.md").read_text()
    for command in README_COMMANDS:
        assert command in readme, f"README.md does not show {command!r}"


def test_interpolation_follows_compose() -> None:
    env = {"SET": "x", "EMPTY": ""}
    cases = {
        "${SET}": "x",
        "$SET/y": "x/y",
        "${UNSET}": "",
        "${UNSET:-d}": "d",
        "${EMPTY:-d}": "d",
        "${EMPTY-d}": "",
        "${SET:+alt}": "alt",
        "${UNSET:+alt}": "",
        "$${SET}": "${SET}",
    }
    for text, expected in cases.items():
        assert compose.interpolate(text, env) == expected, text
    with pytest.raises(compose.InterpolationError, match="UNSET is missing a value: say why"):
        compose.interpolate({"k": ["${UNSET:?say why}"]}, env)
    with pytest.raises(compose.InterpolationError, match="EMPTY"):
        compose.interpolate("${EMPTY:?}", env)
    assert compose.interpolate("${EMPTY?}", env) == ""

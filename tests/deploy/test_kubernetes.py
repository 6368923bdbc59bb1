"""deploy/k8s without a cluster: the kustomizations render (with kubectl where it is
installed, and with tests/deploy/kustomize.py everywhere), every manifest validates against
the Kubernetes OpenAPI schemas offline (kubernetes-validate), and the wiring holds: entry
points, CHAINRULE_* names, references to the ConfigMap and Secret, probe and Service ports,
shard names, the scheduler's leader-only readiness, budgets, autoscaling, limits."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest

from tests.deploy import kustomize
from tests.deploy.common import (
    HEALTHCHECK_MODULE,
    K8S,
    K8S_BASE,
    K8S_OVERLAYS,
    PREFIX,
    assert_runnable_module,
    entry_module,
    listen_ports,
    port_of,
    service_of,
    unknown_variables,
)

pytestmark = pytest.mark.timeout(120)

# the oldest Kubernetes the manifests are for (the StatefulSet pod-index label, native
# gRPC probes and autoscaling/v2 are all there) and the newest the package knows
KUBERNETES_VERSIONS = ("1.32.0", kubernetes_validate.utils.latest_version())
DIRECTORIES = [K8S_BASE, *K8S_OVERLAYS]
IDS = [str(d.relative_to(K8S)) for d in DIRECTORIES]
Manifest = dict[str, Any]


@pytest.fixture(scope="module", params=DIRECTORIES, ids=IDS)
def rendered(request: pytest.FixtureRequest) -> list[Manifest]:
    manifests = kustomize.render(request.param)
    return manifests


def parse_quantity(quantity: str) -> int:
    """A Kubernetes memory quantity in bytes ("1Gi", "256Mi", "512Ki" or plain bytes)."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return int(quantity.removesuffix(suffix)) * factor
    return int(quantity)


def by_kind(manifests: list[Manifest], kind: str) -> dict[str, Manifest]:
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == kind}


def workloads(manifests: list[Manifest]) -> dict[str, Manifest]:
    return {**by_kind(manifests, "Deployment"), **by_kind(manifests, "StatefulSet")}


def chainrule_containers(manifests: list[Manifest]) -> list[tuple[str, dict[str, Any]]]:
    """(workload name, container) for every container that runs a chainrule command."""
    return [
        (name, container)
        for name, workload in workloads(manifests).items()
        for container in workload["spec"]["template"]["spec"]["containers"]
        if "chainrule" in container["image"]
    ]


def resolved_env(container: dict[str, Any], manifests: list[Manifest]) -> dict[str, str]:
    """The container's env with ConfigMap and Secret references looked up; the value of a
    reference that is not in the rendered manifests (the base has no Secret) is ''."""
    config_maps, secrets = by_kind(manifests, "ConfigMap"), by_kind(manifests, "Secret")
    env: dict[str, str] = {}
    for entry in container.get("env", []):
        source = entry.get("valueFrom", {})
        if "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            env[entry["name"]] = config_maps[ref["name"]]["data"][ref["key"]]
        elif "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            secret = secrets.get(ref["name"], {})
            env[entry["name"]] = {**secret.get("stringData", {}), **secret.get("data", {})}.get(
                ref["key"], ""
            )
        else:
            env[entry["name"]] = str(entry.get("value", ""))
    return env


def container_ports(container: dict[str, Any]) -> dict[str, int]:
    return {p.get("name", str(p["containerPort"])): p["containerPort"] for p in container["ports"]}


def probe_port(probe: dict[str, Any], container: dict[str, Any]) -> int:
    """The container port a probe asks (a name is looked up among the container's ports)."""
    for kind in ("grpc", "httpGet", "tcpSocket"):
        if kind in probe:
            port = probe[kind]["port"]
            ports = container_ports(container)
            assert port in ports or port in ports.values(), f"probe port {port} not in {ports}"
            return int(ports.get(port, port))
    raise AssertionError(f"a probe of {container['name']} is neither grpc, http nor tcp: {probe}")


# -- the kustomizations ---------------------------------------------------------------------


@pytest.mark.parametrize("directory", DIRECTORIES, ids=IDS)
def test_every_resource_of_a_kustomization_exists(directory: Path) -> None:
    for path in kustomize.resource_paths(directory):
        assert path.exists(), f"{directory.name}/kustomization.yaml lists missing {path}"
        if path.is_dir():
            assert (path / "kustomization.yaml").exists(), path
    patches = kustomize.kustomization(directory).get("patches", [])
    assert all((directory / p["path"]).exists() for p in patches)


def test_every_base_manifest_is_listed() -> None:
    listed = set(kustomize.resource_paths(K8S_BASE))
    on_disk = {p for p in K8S_BASE.glob("*.yaml") if p.name != "kustomization.yaml"}
    assert on_disk == listed, f"unlisted: {on_disk - listed}; missing: {listed - on_disk}"


@pytest.mark.parametrize("directory", DIRECTORIES, ids=IDS)
def test_kubectl_kustomize_renders_the_same(directory: Path) -> None:
    """kustomize.py renders what kustomize itself does (skipped where kubectl is absent)."""
    real = kustomize.kubectl_render(directory)
    if real is None:
        pytest.skip("kubectl is not installed; the other checks use kustomize.py's rendering")

    def key(m: Manifest) -> tuple[str, str]:
        return (m["kind"], m["metadata"]["name"])

    ours = {key(m): m for m in kustomize.render(directory)}
    assert {key(m): m for m in real} == ours


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_validates_against_the_kubernetes_schemas(
    rendered: list[Manifest], version: str
) -> None:
    errors = []
    for manifest in rendered:
        try:
            kubernetes_validate.validate(manifest, version, strict=True)
        except (kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError) as e:
            where = f"{manifest['kind']}/{manifest['metadata']['name']}"
            errors.append(f"{where}: {getattr(e, 'message', e)}")
    assert not errors, f"Kubernetes {version}:\n" + "\n".join(errors)


def test_the_validator_rejects_an_unknown_field() -> None:
    bad = kustomize.render(K8S_BASE)[0] | {"bogus": 1}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBERNETES_VERSIONS[0], strict=True)


# -- the containers -------------------------------------------------------------------------


def test_every_container_runs_an_entry_point_with_known_settings(rendered: list[Manifest]) -> None:
    services = set()
    for workload, container in chainrule_containers(rendered):
        module = entry_module(container["command"])
        assert_runnable_module(module)
        service = service_of(module)
        services.add(service)
        env = resolved_env(container, rendered)
        assert all(name.startswith(PREFIX) for name in env), f"{workload}: {sorted(env)}"
        unknown = unknown_variables(service, env)
        assert not unknown, f"{workload} sets {unknown}, which its settings class does not read"
    assert services == {"paramserver", "scheduler", "worker", "gateway"}
    assert_runnable_module(HEALTHCHECK_MODULE)


def test_every_reference_resolves(rendered: list[Manifest]) -> None:
    """Every configMapKeyRef names a key of a ConfigMap in the render; every secretKeyRef
    does too where the render has Secrets (an overlay), and none is optional."""
    config_maps, secrets = by_kind(rendered, "ConfigMap"), by_kind(rendered, "Secret")
    for workload, container in chainrule_containers(rendered):
        for entry in container.get("env", []):
            source = entry.get("valueFrom", {})
            if "configMapKeyRef" in source:
                ref = source["configMapKeyRef"]
                assert ref["key"] in config_maps[ref["name"]]["data"], (workload, ref)
                assert ref["key"] == entry["name"], f"{workload}: {entry['name']} <- {ref['key']}"
            if "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                assert not ref.get("optional", False), f"{workload}: {ref} must be required"
                if secrets:
                    secret = secrets[ref["name"]]
                    assert ref["key"] in {**secret.get("stringData", {}), **secret.get("data", {})}


def test_probes_and_listen_addresses_use_the_declared_ports(rendered: list[Manifest]) -> None:
    for workload, container in chainrule_containers(rendered):
        service = service_of(entry_module(container["command"]))
        ports = container_ports(container)
        env = resolved_env(container, rendered)
        listening = listen_ports(service, env)
        assert listening == set(ports.values()), f"{workload} listens on {listening}: {ports}"
        if "CHAINRULE_METRICS_PORT" in env:
            assert ports["metrics"] == int(env["CHAINRULE_METRICS_PORT"]), workload
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            if kind in container:
                assert probe_port(container[kind], container) in listening, (workload, kind)
        annotations = workload_annotations(rendered, workload)
        assert int(annotations["prometheus.io/port"]) in listening, workload


def workload_annotations(rendered: list[Manifest], workload: str) -> dict[str, str]:
    template = workloads(rendered)[workload]["spec"]["template"]
    annotations: dict[str, str] = template["metadata"].get("annotations", {})
    assert annotations.get("prometheus.io/scrape") == "true", f"{workload} is not scraped"
    return annotations


def test_grpc_services_have_native_grpc_probes(rendered: list[Manifest]) -> None:
    containers = {w: c for w, c in chainrule_containers(rendered)}
    for name in ("paramserver", "scheduler"):
        assert "grpc" in containers[name]["readinessProbe"], name
    assert "grpc" in containers["paramserver"]["livenessProbe"]
    # a standby scheduler is NOT_SERVING but alive: a gRPC liveness probe would kill it
    assert "grpc" not in containers["scheduler"]["livenessProbe"]
    assert "httpGet" in containers["gateway"]["readinessProbe"]


def test_every_container_has_requests_limits_and_no_privileges(rendered: list[Manifest]) -> None:
    for name, workload in workloads(rendered).items():
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        for container in pod["containers"]:
            for bound in ("requests", "limits"):
                assert set(container["resources"][bound]) >= {"cpu", "memory"}, (name, bound)
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["capabilities"]["drop"] == ["ALL"], name
            image = container["image"]
            assert re.search(r"[:@][^/]*\d", image) and not image.endswith(":latest"), image


# -- the topology ---------------------------------------------------------------------------


def test_paramserver_shards_have_stable_names_listed_in_order(rendered: list[Manifest]) -> None:
    statefulset = by_kind(rendered, "StatefulSet")["paramserver"]
    service = by_kind(rendered, "Service")[statefulset["spec"]["serviceName"]]
    assert service["spec"]["clusterIP"] == "None", "a StatefulSet's pods need a headless Service"
    container = statefulset["spec"]["template"]["spec"]["containers"][0]
    grpc_port = container_ports(container)["grpc"]
    replicas = statefulset["spec"]["replicas"]
    expected = [
        f"{statefulset['metadata']['name']}-{i}.{service['metadata']['name']}:{grpc_port}"
        for i in range(replicas)
    ]
    shard = next(e for e in container["env"] if e["name"] == "CHAINRULE_PARAMSERVER_SHARD")
    label = "metadata.labels['apps.kubernetes.io/pod-index']"
    assert shard["valueFrom"]["fieldRef"]["fieldPath"] == label, "the shard is the pod ordinal"
    for workload, client in chainrule_containers(rendered):
        listed = resolved_env(client, rendered).get("CHAINRULE_PARAMSERVERS")
        if listed is not None:
            assert listed.split(",") == expected, f"{workload}: {listed} for {replicas} shards"


def test_only_the_leading_scheduler_is_behind_its_service(rendered: list[Manifest]) -> None:
    deployment = by_kind(rendered, "Deployment")["scheduler"]
    assert deployment["spec"]["replicas"] == 2
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    service = by_kind(rendered, "Service")["scheduler"]
    assert service["spec"].get("clusterIP") != "None", "a ClusterIP Service: Ready pods only"
    assert not service["spec"].get("publishNotReadyAddresses", False)
    port = service["spec"]["ports"][0]
    assert (
        container_ports(container)[port["targetPort"]]
        == container["readinessProbe"]["grpc"]["port"]
    )
    worker = by_kind(rendered, "Deployment")["worker"]["spec"]["template"]["spec"]["containers"][0]
    target = resolved_env(worker, rendered)["CHAINRULE_SCHEDULER"]
    assert target == f"scheduler:{port['port']}" and port_of(target) == port["port"]


def test_services_select_pods_and_target_their_ports(rendered: list[Manifest]) -> None:
    pods = {
        name: (w["spec"]["template"]["metadata"]["labels"], w["spec"]["template"]["spec"])
        for name, w in workloads(rendered).items()
    }
    for name, service in by_kind(rendered, "Service").items():
        selector = service["spec"]["selector"]
        matched = [w for w, (labels, _) in pods.items() if selector.items() <= labels.items()]
        assert len(matched) == 1, f"Service {name} selects {matched}"
        container = pods[matched[0]][1]["containers"][0]
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in container_ports(container), (name, port)


def test_the_ingress_reaches_the_gateway(rendered: list[Manifest]) -> None:
    ingress = by_kind(rendered, "Ingress")["gateway"]
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    service = by_kind(rendered, "Service")[backend["name"]]
    assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}


def test_budgets_and_the_autoscaler_point_at_workloads(rendered: list[Manifest]) -> None:
    budgets = by_kind(rendered, "PodDisruptionBudget")
    assert set(budgets) == {"paramserver", "worker", "gateway"}
    for name, budget in budgets.items():
        labels = workloads(rendered)[name]["spec"]["template"]["metadata"]["labels"]
        assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items(), name
    autoscaler = by_kind(rendered, "HorizontalPodAutoscaler")["worker"]
    target = autoscaler["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "worker")
    assert 1 <= autoscaler["spec"]["minReplicas"] < autoscaler["spec"]["maxReplicas"]


def test_redis_keeps_its_data_on_a_volume(rendered: list[Manifest]) -> None:
    redis = by_kind(rendered, "StatefulSet")["redis"]
    claim = redis["spec"]["volumeClaimTemplates"][0]["metadata"]["name"]
    container = redis["spec"]["template"]["spec"]["containers"][0]
    assert {"name": claim, "mountPath": "/data"} in container["volumeMounts"]
    assert container["args"][:3] == ["redis-server", "--appendonly", "yes"]
    args = container["args"]
    assert args[args.index("--maxmemory-policy") + 1] == "noeviction"
    maxmemory_mib = int(args[args.index("--maxmemory") + 1].removesuffix("mb"))
    assert maxmemory_mib * 2**20 < parse_quantity(container["resources"]["limits"]["memory"])


# -- network policies ------------------------------------------------------------------------

NAMESPACE = {"kubernetes.io/metadata.name": "chainrule"}
Peer = tuple[dict[str, str], dict[str, str]]  # (pod labels, its namespace's labels)


def component(name: str) -> Peer:
    labels = {"app.kubernetes.io/part-of": "chainrule", "app.kubernetes.io/component": name}
    return ({"app.kubernetes.io/name": "chainrule", **labels}, NAMESPACE)


PEERS: dict[str, Peer] = {
    **{c: component(c) for c in ("redis", "paramserver", "scheduler", "worker", "gateway")},
    "ingress controller": (
        {"app": "ingress-nginx"},
        {"kubernetes.io/metadata.name": "ingress-nginx"},
    ),
    "prometheus": (
        {"app.kubernetes.io/name": "prometheus"},
        {"kubernetes.io/metadata.name": "mon"},
    ),
    "another pod here": ({"app": "debug"}, NAMESPACE),
    "another namespace": ({"app": "debug"}, {"kubernetes.io/metadata.name": "other"}),
}
PORTS = {"redis": [6379], "paramserver": [50051, 9100], "scheduler": [50052, 9100]}
PORTS |= {"worker": [9100], "gateway": [8000]}
# the architecture's flows (README): exactly these reach a chainrule pod
FLOWS = {
    ("scheduler", "paramserver", 50051),
    ("worker", "paramserver", 50051),
    ("worker", "scheduler", 50052),
    *((c, "redis", 6379) for c in ("paramserver", "scheduler", "worker", "gateway")),
    ("ingress controller", "gateway", 8000),
    ("prometheus", "gateway", 8000),
    *(("prometheus", c, 9100) for c in ("paramserver", "scheduler", "worker")),
}


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, selector  # what these policies use
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def peer_matches(rule_peer: dict[str, Any], source: Peer) -> bool:
    pod_labels, namespace_labels = source
    if "namespaceSelector" in rule_peer:
        namespace_ok = selects(rule_peer["namespaceSelector"], namespace_labels)
    else:  # a podSelector alone: pods of the policy's own namespace
        namespace_ok = namespace_labels == NAMESPACE
    return namespace_ok and selects(rule_peer.get("podSelector", {}), pod_labels)


def ingress_allowed(policies: list[Manifest], source: Peer, target: Peer, port: int) -> bool:
    """Kubernetes' semantics: a pod no policy selects takes any traffic; else a flow
    needs one rule of one selecting policy that admits its source and port."""
    selecting = [p for p in policies if selects(p["spec"]["podSelector"], target[0])]
    if not selecting:
        return True
    for policy in selecting:
        for rule in policy["spec"].get("ingress", []):
            ports = [p["port"] for p in rule.get("ports", [])]
            peers = rule.get("from")
            if (not ports or port in ports) and (
                peers is None or any(peer_matches(p, source) for p in peers)
            ):
                return True
    return False


def test_network_policies_allow_exactly_the_architectures_flows(rendered: list[Manifest]) -> None:
    policies = [m for m in rendered if m["kind"] == "NetworkPolicy"]
    assert policies
    allowed = {
        (source, target, port)
        for source, source_peer in PEERS.items()
        for target, ports in PORTS.items()
        for port in ports
        if source != target and ingress_allowed(policies, source_peer, PEERS[target], port)
    }
    assert allowed == FLOWS, (sorted(allowed - FLOWS), sorted(FLOWS - allowed))
    for target, ports in PORTS.items():  # and every declared container port is covered
        declared = {
            p["containerPort"]
            for name, c in chainrule_containers(rendered) + redis_containers(rendered)
            if name.startswith(target)
            for p in c.get("ports", [])
        }
        assert declared <= set(ports), (target, declared)


def redis_containers(manifests: list[Manifest]) -> list[tuple[str, dict[str, Any]]]:
    redis = workloads(manifests)["redis"]
    return [("redis", c) for c in redis["spec"]["template"]["spec"]["containers"]]

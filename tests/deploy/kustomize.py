"""Render a kustomization without kustomize: the subset our base and overlays use
(resources, namespace, images, replicas, JSON 6902 patches). Where kubectl is installed,
tests/deploy/test_kubernetes.py renders with ``kubectl kustomize`` as well and requires the
same result, so this stays honest; where it is not, the checks still run on this."""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

Manifest = dict[str, Any]

SUPPORTED = frozenset(
    {"apiVersion", "kind", "resources", "namespace", "images", "replicas", "patches"}
)
CLUSTER_SCOPED = frozenset({"Namespace", "ClusterRole", "ClusterRoleBinding", "StorageClass"})
SCALABLE = frozenset({"Deployment", "StatefulSet", "ReplicaSet"})


def kustomization(directory: Path) -> dict[str, Any]:
    data = yaml.safe_load((directory / "kustomization.yaml").read_text("utf-8"))
    assert isinstance(data, dict), f"{directory}/kustomization.yaml is not a mapping"
    return data


def resource_paths(directory: Path) -> list[Path]:
    return [directory / str(entry) for entry in kustomization(directory).get("resources", [])]


def load_manifests(path: Path) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(path.read_text("utf-8")) if doc]


def render(directory: Path) -> list[Manifest]:
    """What ``kustomize build directory`` gives, for the features in SUPPORTED."""
    spec = kustomization(directory)
    unsupported = set(spec) - SUPPORTED
    assert not unsupported, f"{directory}: teach tests/deploy/kustomize.py {sorted(unsupported)}"
    manifests: list[Manifest] = []
    for path in resource_paths(directory):
        manifests += render(path) if path.is_dir() else load_manifests(path)
    if namespace := spec.get("namespace"):
        for manifest in manifests:
            if manifest["kind"] not in CLUSTER_SCOPED:
                manifest["metadata"]["namespace"] = namespace
    for image in spec.get("images", []):
        for container in containers(manifests):
            if image_name(container["image"]) == image["name"]:
                name = image.get("newName", image["name"])
                suffix = f"@{image['digest']}" if "digest" in image else f":{image['newTag']}"
                container["image"] = name + suffix
    for entry in spec.get("replicas", []):
        for manifest in manifests:
            if manifest["kind"] in SCALABLE and manifest["metadata"]["name"] == entry["name"]:
                manifest["spec"]["replicas"] = int(entry["count"])
    for patch in spec.get("patches", []):
        ops = yaml.safe_load((directory / patch["path"]).read_text("utf-8"))
        target = patch["target"]
        matched = [
            m
            for m in manifests
            if m["kind"] == target["kind"] and m["metadata"]["name"] == target["name"]
        ]
        assert matched, f"{directory}: patch {patch['path']} matches no resource"
        for manifest in matched:
            for op in ops:
                apply_operation(manifest, op)
    return manifests


def kubectl_render(directory: Path) -> list[Manifest] | None:
    """``kubectl kustomize directory``, or None where kubectl is not installed."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return None
    result = subprocess.run(
        [kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, f"kubectl kustomize {directory}: {result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def image_name(image: str) -> str:
    """``registry/name:tag@digest`` -> ``registry/name``."""
    without_digest = image.split("@", 1)[0]
    last = without_digest.rsplit("/", 1)[-1]
    return without_digest[: len(without_digest) - len(last)] + last.split(":", 1)[0]


def pod_spec(manifest: Manifest) -> dict[str, Any] | None:
    if manifest["kind"] in SCALABLE:
        spec: dict[str, Any] = manifest["spec"]["template"]["spec"]
        return spec
    return None


def containers(manifests: list[Manifest]) -> list[dict[str, Any]]:
    found = []
    for manifest in manifests:
        spec = pod_spec(manifest)
        if spec is not None:
            found += spec.get("initContainers", []) + spec.get("containers", [])
    return found


def apply_operation(document: Manifest, op: dict[str, Any]) -> None:
    """One RFC 6902 operation (add, replace, remove) on ``document``, in place."""
    *parents, last = [
        part.replace("~1", "/").replace("~0", "~") for part in op["path"].split("/")[1:]
    ]
    node: Any = document
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if isinstance(node, list):
        index = len(node) if last == "-" else int(last)
        if op["op"] == "add":
            node.insert(index, copy.deepcopy(op["value"]))
        elif op["op"] == "replace":
            node[index] = copy.deepcopy(op["value"])
        else:
            assert op["op"] == "remove", op
            del node[index]
        return
    assert op["op"] in ("add", "replace", "remove"), op
    if op["op"] == "remove":
        del node[last]
    else:
        assert op["op"] == "add" or last in node, f"replace of a missing {op['path']}"
        node[last] = copy.deepcopy(op["value"])

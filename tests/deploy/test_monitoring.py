"""The compose `monitoring` profile: Prometheus scrapes every chainrule service on the port
it serves metrics on, and Grafana's provisioned dashboard asks only for metrics that
chainrule.telemetry defines, from the provisioned data source."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from chainrule import telemetry
from tests.deploy import compose
from tests.deploy.common import (
    COMPOSE_FILE,
    ROOT,
    RPC_TOKENS,
    SHARDS_FILE,
    entry_module,
    service_of,
)

pytestmark = pytest.mark.timeout(60)

PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("_sum", "_count"),
    "gauge": ("",),
    "info": ("_info",),
}


def project() -> compose.Model:
    return compose.load_project(
        [COMPOSE_FILE, SHARDS_FILE], {**RPC_TOKENS, "CHAINRULE_API_TOKENS": "t"}
    )


def exported_series() -> set[str]:
    """Every series name chainrule's processes export (prometheus_client's naming)."""
    names = {telemetry.JOBS_METRIC}
    for value in vars(telemetry).values():
        if isinstance(value, MetricWrapperBase):
            names |= {value._name + suffix for suffix in _SUFFIXES[str(value._type)]}
    return names


def metrics_port(service: compose.Model) -> int:
    """Where a chainrule service serves /metrics: CHAINRULE_METRICS_PORT, or (the gateway)
    its HTTP port."""
    env = compose.environment(service)
    return int(env.get("CHAINRULE_METRICS_PORT") or env["CHAINRULE_GATEWAY_PORT"])


def test_prometheus_scrapes_every_chainrule_service_on_its_metrics_port() -> None:
    config = yaml.safe_load(PROMETHEUS.read_text("utf-8"))
    jobs = [job["job_name"] for job in config["scrape_configs"]]
    assert len(jobs) == len(set(jobs)), jobs
    scraped = {
        name: sd["port"]
        for job in config["scrape_configs"]
        for sd in job.get("dns_sd_configs", [])
        for name in sd["names"]
    }
    for name, service in compose.active_services(project()).items():
        if not str(service.get("image", "")).startswith("chainrule:"):
            continue
        assert name in scraped, f"Prometheus does not scrape {name}"
        assert scraped[name] == metrics_port(service), name
        assert scraped[name] in compose.exposed_ports(service), name
        service_of(entry_module(service["command"]))


def test_grafana_is_provisioned_from_the_mounted_files() -> None:
    grafana = project()["services"]["grafana"]
    mounts = dict(reversed(v.split(":")[:2]) for v in grafana["volumes"] if v.startswith("./"))
    for target, source in mounts.items():
        assert (ROOT / source).exists(), f"grafana mounts missing {source} at {target}"
    providers = yaml.safe_load((GRAFANA / "provisioning/dashboards/chainrule.yml").read_text())
    assert providers["providers"][0]["options"]["path"] in mounts
    home = compose.environment(grafana)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    directory, _, file = home.rpartition("/")
    assert (ROOT / mounts[directory] / file).exists(), home
    source = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    assert source["datasources"][0]["url"] == "http://prometheus:9090"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_the_dashboard_shows_only_metrics_that_exist(path: Path) -> None:
    dashboard: dict[str, Any] = json.loads(path.read_text("utf-8"))
    source = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    uid = source["datasources"][0]["uid"]
    exported = exported_series()
    queries = [
        (panel["title"], target)
        for panel in dashboard["panels"]
        if panel["type"] != "row"
        for target in panel["targets"]
    ]
    assert len(queries) >= 10, "a dashboard of the training and service metrics"
    shown = set()
    for title, target in queries:
        assert target["datasource"]["uid"] == uid, title
        for name in re.findall(r"\bchainrule_[a-z_]+", target["expr"]):
            assert name in exported, f"panel {title!r} asks for {name}, which nothing exports"
            shown.add(name)
    assert any(n.startswith("chainrule_scheduler_") for n in shown)
    assert any(n.startswith("chainrule_worker_") for n in shown)
    assert any(n.startswith("chainrule_paramserver_") for n in shown)
    assert any(n.startswith("chainrule_http_") for n in shown)

"""The README's configuration reference lists every variable a process reads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from chainrule.gateway.settings import GatewaySettings
from chainrule.paramserver.settings import ParamServerSettings
from chainrule.scheduler.settings import SchedulerSettings
from chainrule.worker.settings import WorkerSettings

README = Path(__file__).resolve().parents[2] / "README.md"


def reference_section() -> str:
    text = README.read_text()
    start = text.index("## Configuration reference")
    return text[start : text.index("\n## ", start + 1)]


@pytest.mark.parametrize(
    "settings", [GatewaySettings, ParamServerSettings, SchedulerSettings, WorkerSettings]
)
def test_every_variable_a_service_reads_is_documented(settings: type[BaseSettings]) -> None:
    prefix = settings.model_config.get("env_prefix", "")
    documented = set(re.findall(r"`(CHAINRULE_[A-Z0-9_]+)`", reference_section()))
    read = {f"{prefix}{name}".upper() for name in settings.model_fields}
    assert read <= documented, f"undocumented: {sorted(read - documented)}"

"""The container tests run only when asked (``make test-containers``, which makes a Docker
engine with Compose available first: deploy/ci/docker.sh); ``make test`` skips them with
a message saying so. Asked for and no engine answers: they fail, they do not skip."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from tests.support.compose import sh, stack_env

ASKED = os.environ.get("CHAINRULE_TEST_CONTAINERS") == "1"
HOW = (
    "container tests: real images, compose and networks; run them with "
    "`make test-containers` (as root it installs and starts a Docker engine where none runs)"
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if ASKED:
        return
    skip = pytest.mark.skip(reason=HOW)
    for item in items:
        if "tests/containers/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def docker_engine() -> None:
    if not ASKED:
        return
    assert shutil.which("docker"), "CHAINRULE_TEST_CONTAINERS=1 but there is no docker CLI"
    for check in (["docker", "info"], ["docker", "compose", "version"]):
        done = subprocess.run(check, capture_output=True, text=True, timeout=30, check=False)
        assert done.returncode == 0, f"{' '.join(check)} failed: {done.stderr}"


@pytest.fixture(scope="session", autouse=True)
def build_seconds(docker_engine: None) -> float:
    """The image, built once before any stack (`docker compose build`, the step every
    `up --build` then finds cached): how long it took."""
    if not ASKED:
        return 0.0
    started = time.monotonic()
    sh("docker compose build", stack_env("crt-build", 0))
    return time.monotonic() - started

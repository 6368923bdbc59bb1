"""Fixtures for the browser tests: the whole stack on loopback (real Redis on
127.0.0.1:6379, under a key prefix of its own, deleted afterwards) and headless Debian
Chromium driven by selenium through Debian's chromedriver.

Without /usr/bin/chromium the browser tests are skipped, saying so; CI installs it
(``.ci/run``). Screenshots go to ``tests/e2e/artifacts/`` (git-ignored).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver

from chainrule.cli.stack import LocalStack, StackConfig
from tests.integration.conftest import REDIS_URL, delete_prefixed, unique_prefix

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The real Redis' URL; skips the test if that Redis does not answer."""
    probe = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        probe.ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis at {REDIS_URL} is unreachable ({exc}); start redis-server on 6379")
    finally:
        probe.close()
    return REDIS_URL


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    prefix = unique_prefix()
    config = StackConfig.on_free_ports(
        workers=2,
        redis_url=redis_url,
        key_prefix=prefix,
        log_dir=tmp_path_factory.mktemp("stack"),
    )
    try:
        with LocalStack(config) as running:
            yield running
    finally:
        client = redis.Redis.from_url(redis_url)
        delete_prefixed(client, prefix)
        client.close()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    """Headless Chromium with a fresh profile, its console log kept; always quit after."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip(
            f"{CHROMIUM} or {CHROMEDRIVER} is missing: "
            "apt-get install chromium chromium-driver (.ci/run does)"
        )
    options = Options()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        driver.set_page_load_timeout(30)
        driver.set_script_timeout(10)
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """The screenshots' folder, emptied of an earlier run's."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("*.png"):
        old.unlink()
    return ARTIFACTS

"""The dashboard in headless Chromium against the real stack: it loads without console
errors, a job submitted through its JSON box trains with a live loss curve, and its Stop
button stops the job. Screenshots of the pages land in tests/e2e/artifacts/."""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from chainrule.cli.stack import LocalStack
from tests.support.examples import example_spec

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

T = TypeVar("T")
# long enough (about two minutes here) that the job is still running when Stop is clicked
LONG_XOR_STEPS = 20000
STOP_WAIT_S = 45.0


def wait_for(
    browser: WebDriver, condition: Callable[[WebDriver], T], timeout: float, what: str
) -> T:
    try:
        return WebDriverWait(browser, timeout, poll_frequency=0.2).until(condition)
    except TimeoutException:
        pytest.fail(f"{what} within {timeout:.0f} s; the page says: {page_messages(browser)}")


def page_messages(browser: WebDriver) -> dict[str, str]:
    """The page's notice and result lines that are not empty, to explain a failure."""
    ids = ("notice", "submit-result", "submit-errors", "job-action", "diag-note")
    texts = {i: str(browser.find_element(By.ID, i).text) for i in ids}
    return {i: text for i, text in texts.items() if text}


def text_of(browser: WebDriver, element_id: str) -> str:
    return str(browser.find_element(By.ID, element_id).text)


def chart_points(browser: WebDriver, chart_id: str, trace: int = 0) -> int:
    """How many points trace ``trace`` of a plotly chart holds (0 before it is drawn)."""
    count = browser.execute_script(
        "const gd = document.getElementById(arguments[0]);"
        "const t = gd && gd.data && gd.data[arguments[1]];"
        "return t ? t.x.length : 0;",
        chart_id,
        trace,
    )
    return int(count)


def console_errors(browser: WebDriver) -> list[dict[str, Any]]:
    """The SEVERE entries of the browser console since the last call."""
    entries: list[dict[str, Any]] = browser.get_log("browser")  # type: ignore[no-untyped-call]
    return [entry for entry in entries if entry["level"] == "SEVERE"]


def screenshot(browser: WebDriver, path: Path) -> None:
    """The whole page, below the window's edge too (through the DevTools protocol)."""
    width, height = browser.execute_script(
        "return [document.documentElement.clientWidth, document.body.scrollHeight]"
    )
    clip = {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}
    shot = browser.execute_cdp_cmd(
        "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
    )
    path.write_bytes(base64.b64decode(shot["data"]))


def test_dashboard_submits_shows_live_curves_and_stops_a_job(
    stack: LocalStack, browser: WebDriver, artifacts: Path
) -> None:
    errors: list[dict[str, Any]] = []
    browser.get(f"{stack.gateway_url}/")
    wait_for(
        browser,
        lambda b: b.execute_script(
            "return Boolean(window.Plotly) && document.getElementById('spec').value.length > 0"
        ),
        20,
        "plotly.js did not load or the JSON box was not prefilled",
    )
    errors += console_errors(browser)
    assert errors == [], f"console errors on load: {errors}"
    prefilled = json.loads(browser.find_element(By.ID, "spec").get_attribute("value") or "")
    assert prefilled == example_spec("xor"), "the JSON box holds examples/xor.json"

    # submit a long XOR job through the JSON box; the page opens the job's view
    spec = example_spec("xor", training={"steps": LONG_XOR_STEPS})
    spec["name"] = "e2e-xor-long"
    box = browser.find_element(By.ID, "spec")
    browser.execute_script("arguments[0].value = arguments[1]", box, json.dumps(spec, indent=2))
    browser.find_element(By.ID, "submit").click()
    job_hash = wait_for(
        browser,
        lambda b: re.fullmatch(r"#/jobs/(.+)", b.execute_script("return location.hash")),
        15,
        "the submitted job's page did not open",
    )
    assert job_hash is not None  # until() returns what the condition did, once truthy
    job_id = job_hash.group(1)
    job = httpx.get(f"{stack.gateway_url}/api/v1/jobs/{job_id}", timeout=10).json()
    assert job["name"] == "e2e-xor-long" and job["total_steps"] == LONG_XOR_STEPS

    # the loss curve gains points while the job runs
    wait_for(browser, lambda b: chart_points(b, "chart-loss") > 0, 60, "no loss point was drawn")
    first = chart_points(browser, "chart-loss")
    time.sleep(4)  # two polling rounds
    second = chart_points(browser, "chart-loss")
    assert second > first, f"the loss curve did not grow: {first} then {second} points"
    assert text_of(browser, "job-status") == "RUNNING"
    assert chart_points(browser, "chart-lr") > 0 and chart_points(browser, "chart-throughput") > 0
    wait_for(
        browser, lambda b: chart_points(b, "chart-accuracy") > 0, 20, "no holdout accuracy point"
    )
    screenshot(browser, artifacts / "job-running.png")

    # the job list shows it running; a click on its row opens its page again
    browser.get(f"{stack.gateway_url}/#/")
    row = f"#jobs-body tr[data-id='{job_id}']"
    wait_for(browser, lambda b: b.find_elements(By.CSS_SELECTOR, row), 10, "job not listed")
    assert "RUNNING" in browser.find_element(By.CSS_SELECTOR, row).text
    screenshot(browser, artifacts / "list.png")
    browser.find_element(By.CSS_SELECTOR, row).click()
    wait_for(browser, lambda b: text_of(b, "job-status") == "RUNNING", 10, "job page not reopened")

    # Stop ends it
    browser.find_element(By.ID, "stop").click()
    try:
        WebDriverWait(browser, STOP_WAIT_S, poll_frequency=0.2).until(
            lambda b: text_of(b, "job-status") == "STOPPED"
        )
    except TimeoutException:
        job = httpx.get(f"{stack.gateway_url}/api/v1/jobs/{job_id}", timeout=10).json()
        screenshot(browser, artifacts / "job-stop-failed.png")
        pytest.fail(
            f"the job did not become STOPPED within {STOP_WAIT_S:.0f} s of clicking Stop: "
            f"the page says {text_of(browser, 'job-action')!r}; the API says status "
            f"{job['status']!r}, phase {job['phase']!r} at step {job['step']}. "
            "POST /api/v1/jobs/{id}/stop and the scheduler's stop path must both work."
        )
    assert browser.find_element(By.ID, "stop").get_attribute("disabled") is not None
    time.sleep(2.5)  # the view's last polling round after the end
    screenshot(browser, artifacts / "job-stopped.png")

    # the per-layer derivative chart: one curve per layer, mean |f′(z)| over the steps
    diagnostics_points = chart_points(browser, "chart-diagnostics")
    assert diagnostics_points > 0, (
        f"no derivative diagnostics drawn: {text_of(browser, 'diag-note')!r}"
    )

    errors += console_errors(browser)
    assert errors == [], f"console errors: {errors}"

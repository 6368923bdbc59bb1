"""The dashboard's files as the gateway serves them, without a browser or a socket."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from chainrule.gateway.api.routes import dashboard
from tests.support.examples import example_spec


@pytest.fixture(scope="module")
def client() -> TestClient:
    app = FastAPI()
    app.include_router(dashboard.router)
    return TestClient(app)


def test_the_page_loads_its_script_styles_and_plotly_from_the_gateway(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    for asset in ("/static/plotly.min.js", "/static/app.js", "/static/style.css"):
        assert f'"{asset}"' in page.text
        assert client.get(asset).status_code == 200, asset
    assert "http" not in page.text.replace('"http-equiv"', ""), "no CDN or other host"


def test_plotly_is_the_copy_the_python_package_ships(client: TestClient) -> None:
    reply = client.get("/static/plotly.min.js")
    assert reply.headers["content-type"].startswith("text/javascript")
    assert reply.content == dashboard.PLOTLY_JS.read_bytes()
    assert b"plotly.js v" in reply.content[:200]


def test_the_json_box_example_is_examples_xor(client: TestClient) -> None:
    assert client.get("/static/xor.json").json() == example_spec("xor")


@pytest.mark.parametrize(
    "name",
    ["index.html", "missing.js", "..%2Fapi%2Froutes%2Fdashboard.py", "..%2F..%2Fsettings.py"],
)
def test_only_the_named_files_are_served(client: TestClient, name: str) -> None:
    assert client.get(f"/static/{name}").status_code == 404

"""Bearer-token authentication of the real gateway process: writes need a token once
CHAINRULE_API_TOKENS is set (401 without one, 403 with a wrong one), reads stay open
unless CHAINRULE_AUTH_READS is true."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.api import Api, running_gateway, submit
from tests.support.examples import example_spec

pytestmark = pytest.mark.timeout(60)

TOKENS = "alpha-token,  beta-token"  # spaces around a token are not part of it
GOOD = {"Authorization": "Bearer beta-token"}
IRIS_CSV = b"a,b,label\n" + b"".join(f"{i},{i % 3},{'xy'[i % 2]}\n".encode() for i in range(20))


@pytest.fixture(scope="module")
def api(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with running_gateway(redis_url, tmp_path_factory.mktemp("gw"), api_tokens=TOKENS) as gw:
        yield gw


@pytest.fixture(scope="module")
def guarded(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    log_dir = tmp_path_factory.mktemp("gw-reads")
    with running_gateway(redis_url, log_dir, api_tokens=TOKENS, auth_reads="true") as gw:
        yield gw


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "beta-token"}, {"Authorization": "Basic YWxhZGRpbjpvcGVu"},
     {"Authorization": "Token beta-token"}, {"Authorization": "Bearer"}],
)  # fmt: skip
def test_a_write_without_a_bearer_token_is_401(api: Api, headers: dict[str, str]) -> None:
    count = api.store.count()

    reply = api.http.post("/api/v1/jobs", json=example_spec(), headers=headers)

    assert reply.status_code == 401
    assert reply.headers["www-authenticate"] == "Bearer"
    assert "Authorization: Bearer <token>" in reply.json()["detail"]
    assert api.store.count() == count


@pytest.mark.parametrize("token", ["gamma-token", "beta-toke", "beta-token2", "alpha-token,"])
def test_a_write_with_a_wrong_token_is_403(api: Api, token: str) -> None:
    reply = api.http.post(
        "/api/v1/jobs", json=example_spec(), headers={"Authorization": f"Bearer {token}"}
    )
    assert reply.status_code == 403
    assert reply.json() == {"detail": "the bearer token is not one of the gateway's API tokens"}


@pytest.mark.parametrize("token", ["alpha-token", "beta-token"])
def test_every_configured_token_is_accepted(api: Api, token: str) -> None:
    headers = {"Authorization": f"bearer {token}"}  # the scheme is case-insensitive
    reply = api.http.post("/api/v1/jobs", json=example_spec(), headers=headers)
    assert reply.status_code == 201


def test_every_mutating_route_is_guarded(api: Api) -> None:
    job_id = api.http.post("/api/v1/jobs", json=example_spec(), headers=GOOD).json()["id"]
    dataset = api.http.post(
        "/api/v1/datasets", files={"file": ("d.csv", IRIS_CSV)}, data={"label": "label"},
        headers=GOOD,
    )  # fmt: skip
    assert dataset.status_code == 201, dataset.text
    dataset_id = dataset.json()["id"]
    attempts = [
        ("POST", f"/api/v1/jobs/{job_id}/stop", {}),
        ("DELETE", f"/api/v1/jobs/{job_id}", {}),
        ("DELETE", f"/api/v1/datasets/{dataset_id}", {}),
        ("POST", "/api/v1/datasets", {"files": {"file": ("d.csv", IRIS_CSV)}, "data": {"label": "label"}}),
    ]  # fmt: skip

    for method, path, kwargs in attempts:
        reply = api.http.request(method, path, **kwargs)  # type: ignore[arg-type]
        assert (method, path, reply.status_code) == (method, path, 401)
        wrong = {"Authorization": "Bearer nope"}
        reply = api.http.request(method, path, headers=wrong, **kwargs)  # type: ignore[arg-type]
        assert (method, path, reply.status_code) == (method, path, 403)

    assert api.http.post(f"/api/v1/jobs/{job_id}/stop", headers=GOOD).json()["status"] == "STOPPED"
    assert api.http.delete(f"/api/v1/jobs/{job_id}", headers=GOOD).status_code == 204
    assert api.http.delete(f"/api/v1/datasets/{dataset_id}", headers=GOOD).status_code == 204


def test_reads_and_predict_stay_open_by_default(api: Api) -> None:
    job_id = api.http.post("/api/v1/jobs", json=example_spec(), headers=GOOD).json()["id"]
    for path in ("/api/v1/jobs", f"/api/v1/jobs/{job_id}", f"/api/v1/jobs/{job_id}/metrics",
                 "/api/v1/workers", "/api/v1/datasets", "/api/version", "/healthz"):  # fmt: skip
        assert api.http.get(path).status_code == 200, path
    predicted = api.http.post(f"/api/v1/jobs/{job_id}/predict", json={"rows": [[0.0, 1.0]]})
    assert predicted.status_code == 404  # no model yet: past authentication


def test_with_auth_reads_every_api_route_needs_a_token(guarded: Api) -> None:
    job_id = submit_with_token(guarded)

    for path in ("/api/v1/jobs", f"/api/v1/jobs/{job_id}", f"/api/v1/jobs/{job_id}/metrics",
                 f"/api/v1/jobs/{job_id}/events", "/api/v1/workers", "/api/v1/datasets"):  # fmt: skip
        assert guarded.http.get(path).status_code == 401, path
        assert guarded.http.get(path, headers={"Authorization": "Bearer x"}).status_code == 403
    predict = f"/api/v1/jobs/{job_id}/predict"
    assert guarded.http.post(predict, json={"rows": [[0.0, 1.0]]}).status_code == 401
    assert guarded.http.get("/api/v1/jobs", headers=GOOD).status_code == 200
    assert guarded.http.get(f"/api/v1/jobs/{job_id}", headers=GOOD).json()["id"] == job_id
    for open_path in ("/healthz", "/readyz", "/api/version", "/openapi.json"):
        assert guarded.http.get(open_path).status_code == 200, open_path


def submit_with_token(api: Api) -> str:
    reply = api.http.post("/api/v1/jobs", json=example_spec(), headers=GOOD)
    assert reply.status_code == 201
    job_id: str = reply.json()["id"]
    return job_id


def test_the_openapi_document_declares_the_bearer_scheme(api: Api, guarded: Api) -> None:
    doc = api.http.get("/openapi.json").json()
    scheme = doc["components"]["securitySchemes"]["bearer"]
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer"
    assert doc["paths"]["/api/v1/jobs"]["post"]["security"] == [{"bearer": []}]
    assert {"401", "403"} <= set(doc["paths"]["/api/v1/jobs"]["post"]["responses"])
    assert "security" not in doc["paths"]["/api/v1/jobs"]["get"]
    assert "security" not in doc["paths"]["/api/v1/jobs/{job_id}/predict"]["post"]
    guarded_doc = guarded.http.get("/openapi.json").json()
    assert guarded_doc["paths"]["/api/v1/jobs"]["get"]["security"] == [{"bearer": []}]


def test_without_tokens_nothing_needs_one(
    redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    log_dir = tmp_path_factory.mktemp("gw-open")
    with running_gateway(redis_url, log_dir, api_tokens=" , ", auth_reads="true") as open_api:
        job_id = submit(open_api)["id"]
        assert open_api.http.get(f"/api/v1/jobs/{job_id}").status_code == 200
        assert open_api.http.post(f"/api/v1/jobs/{job_id}/stop").status_code == 200

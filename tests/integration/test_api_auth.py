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


# -- principals, owners and limits ------------------------------------------------------

PRINCIPALS = "alice:alice-token, bob:bob-token, root:root-token:admin, plain-token"
ALICE = {"Authorization": "Bearer alice-token"}
BOB = {"Authorization": "Bearer bob-token"}
ROOT = {"Authorization": "Bearer root-token"}
PLAIN = {"Authorization": "Bearer plain-token"}


@pytest.fixture(scope="module")
def owners(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    log_dir = tmp_path_factory.mktemp("gw-owners")
    with running_gateway(redis_url, log_dir, api_tokens=PRINCIPALS) as gw:
        yield gw


@pytest.fixture(scope="module")
def private(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    log_dir = tmp_path_factory.mktemp("gw-private")
    with running_gateway(redis_url, log_dir, api_tokens=PRINCIPALS, auth_reads="true") as gw:
        yield gw


@pytest.fixture(scope="module")
def limited(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    log_dir = tmp_path_factory.mktemp("gw-limited")
    with running_gateway(
        redis_url,
        log_dir,
        api_tokens=PRINCIPALS + ",carol:carol-token",
        max_queued_jobs_per_principal="2",
        max_running_jobs_per_principal="1",
    ) as gw:
        yield gw


def submit_as(api: Api, headers: dict[str, str], **extra: object) -> str:
    reply = api.http.post("/api/v1/jobs", json={**example_spec(), **extra}, headers=headers)
    assert reply.status_code == 201, reply.text
    job_id: str = reply.json()["id"]
    return job_id


def test_a_job_belongs_to_its_submitter_and_another_user_may_not_stop_or_delete_it(
    owners: Api,
) -> None:
    job_id = submit_as(owners, ALICE)
    assert owners.http.get(f"/api/v1/jobs/{job_id}").json()["owner"] == "alice"
    listed = {j["id"]: j["owner"] for j in owners.http.get("/api/v1/jobs").json()["data"]}
    assert listed[job_id] == "alice"

    stop = owners.http.post(f"/api/v1/jobs/{job_id}/stop", headers=BOB)
    delete = owners.http.delete(f"/api/v1/jobs/{job_id}", headers=BOB)

    for reply in (stop, delete):
        assert reply.status_code == 403, reply.text
        detail = reply.json()["detail"]
        assert f"job {job_id} belongs to alice; only alice or an admin may" in detail
    assert "may stop it" in stop.json()["detail"]
    assert "may delete it" in delete.json()["detail"]
    assert owners.http.get(f"/api/v1/jobs/{job_id}").json()["status"] == "PENDING"
    assert owners.http.get(f"/api/v1/jobs/{job_id}", headers=BOB).status_code == 200  # reads open

    assert owners.http.post(f"/api/v1/jobs/{job_id}/stop", headers=ALICE).status_code == 200
    assert owners.http.delete(f"/api/v1/jobs/{job_id}", headers=BOB).status_code == 403
    assert owners.http.delete(f"/api/v1/jobs/{job_id}", headers=ALICE).status_code == 204
    assert owners.store.get(job_id) is None


@pytest.mark.parametrize("admin", [ROOT, PLAIN], ids=["named-admin", "plain-token"])
def test_an_admin_may_stop_and_delete_anyones_job(owners: Api, admin: dict[str, str]) -> None:
    job_id = submit_as(owners, ALICE)

    stopped = owners.http.post(f"/api/v1/jobs/{job_id}/stop", headers=admin)
    assert stopped.status_code == 200 and stopped.json()["status"] == "STOPPED"
    assert owners.http.delete(f"/api/v1/jobs/{job_id}", headers=admin).status_code == 204


def test_a_plain_token_is_the_admin_and_its_jobs_are_the_admins(owners: Api) -> None:
    job_id = submit_as(owners, PLAIN)
    assert owners.http.get(f"/api/v1/jobs/{job_id}").json()["owner"] == "admin"

    refused = owners.http.post(f"/api/v1/jobs/{job_id}/stop", headers=ALICE)
    assert refused.status_code == 403
    assert "belongs to admin; only admin or an admin may stop it" in refused.json()["detail"]
    assert owners.http.post(f"/api/v1/jobs/{job_id}/stop", headers=ROOT).status_code == 200


def test_a_job_without_an_owner_belongs_to_the_admins(owners: Api) -> None:
    from chainrule.spec import JobSpec

    job_id = owners.store.submit(JobSpec.model_validate(example_spec())).id  # as before owners
    assert owners.http.get(f"/api/v1/jobs/{job_id}").json()["owner"] is None

    refused = owners.http.post(f"/api/v1/jobs/{job_id}/stop", headers=ALICE)
    assert refused.status_code == 403
    assert "has no owner, so it belongs to the admins" in refused.json()["detail"]
    assert owners.http.post(f"/api/v1/jobs/{job_id}/stop", headers=PLAIN).status_code == 200


def test_a_dataset_belongs_to_its_uploader(owners: Api) -> None:
    upload = owners.http.post(
        "/api/v1/datasets", files={"file": ("d.csv", IRIS_CSV)}, data={"label": "label"},
        headers=ALICE,
    )  # fmt: skip
    assert upload.status_code == 201, upload.text
    dataset_id = upload.json()["id"]
    assert upload.json()["owner"] == "alice"

    refused = owners.http.delete(f"/api/v1/datasets/{dataset_id}", headers=BOB)
    assert refused.status_code == 403
    assert f"dataset {dataset_id} belongs to alice" in refused.json()["detail"]
    assert owners.http.get(f"/api/v1/datasets/{dataset_id}").status_code == 200
    assert owners.http.delete(f"/api/v1/datasets/{dataset_id}", headers=ALICE).status_code == 204


def test_with_auth_reads_a_user_sees_only_its_own_jobs(private: Api) -> None:
    job_id = submit_as(private, ALICE)
    missing = private.http.get("/api/v1/jobs/0123456789abcdef", headers=BOB)

    for path in (f"/api/v1/jobs/{job_id}", f"/api/v1/jobs/{job_id}/metrics",
                 f"/api/v1/jobs/{job_id}/diagnostics", f"/api/v1/jobs/{job_id}/events",
                 f"/api/v1/jobs/{job_id}/model"):  # fmt: skip
        reply = private.http.get(path, headers=BOB)
        assert reply.status_code == 404, path
        assert reply.json() == {"detail": f"no job {job_id!r}"}, path
    assert missing.json() == {"detail": "no job '0123456789abcdef'"}  # the same answer
    predict = private.http.post(
        f"/api/v1/jobs/{job_id}/predict", json={"rows": [[0.0, 1.0]]}, headers=BOB
    )
    assert predict.status_code == 404
    assert private.http.post(f"/api/v1/jobs/{job_id}/stop", headers=BOB).status_code == 404
    assert private.http.delete(f"/api/v1/jobs/{job_id}", headers=BOB).status_code == 404
    bobs = private.http.get("/api/v1/jobs", headers=BOB).json()
    assert job_id not in [j["id"] for j in bobs["data"]]
    assert all(j["owner"] == "bob" for j in bobs["data"])
    pending = private.http.get("/api/v1/jobs?status=PENDING", headers=BOB).json()
    assert job_id not in [j["id"] for j in pending["data"]]

    assert private.http.get(f"/api/v1/jobs/{job_id}", headers=ALICE).json()["owner"] == "alice"
    for admin in (ROOT, PLAIN):
        assert private.http.get(f"/api/v1/jobs/{job_id}", headers=admin).status_code == 200
        listed = private.http.get("/api/v1/jobs", headers=admin).json()["data"]
        assert job_id in [j["id"] for j in listed]
    assert private.http.post(f"/api/v1/jobs/{job_id}/stop", headers=ROOT).status_code == 200


def test_with_auth_reads_a_users_list_pages_and_counts_only_its_own(private: Api) -> None:
    submit_as(private, ROOT)
    mine = [submit_as(private, BOB) for _ in range(3)]
    submit_as(private, ALICE)
    everyone = private.http.get("/api/v1/jobs", headers=ROOT).json()["count"]

    first = private.http.get("/api/v1/jobs?limit=2", headers=BOB).json()
    token = first["next_page_token"]
    second = private.http.get(f"/api/v1/jobs?limit=2&page_token={token}", headers=BOB).json()

    bobs = private.store.page(owner="bob", limit=200).records
    assert first["count"] == second["count"] == len(bobs) < everyone
    seen = [j["id"] for j in first["data"] + second["data"]]
    assert seen[:3] == mine[::-1]  # newest first, across the pages
    assert len(seen) == len(set(seen))


def test_over_a_per_principal_limit_a_submission_is_429_and_stores_nothing(
    limited: Api,
) -> None:
    first, second = submit_as(limited, ALICE), submit_as(limited, ALICE)
    count = limited.store.count()

    refused = limited.http.post("/api/v1/jobs", json=example_spec(), headers=ALICE)

    assert refused.status_code == 429, refused.text
    assert refused.json()["detail"] == (
        "alice already has 2 queued (PENDING) jobs and CHAINRULE_MAX_QUEUED_JOBS_PER_PRINCIPAL "
        "is 2: the job was not submitted; wait for one to start, or stop one"
    )
    assert limited.store.count() == count
    bobs = submit_as(limited, BOB)  # the limits are per principal
    limited.store.set_status(first, "RUNNING", phase="training")  # 1 queued, 1 running
    refused = limited.http.post("/api/v1/jobs", json=example_spec(), headers=ALICE)
    assert refused.status_code == 429
    assert (
        "alice already has 1 RUNNING jobs and CHAINRULE_MAX_RUNNING_JOBS_PER_PRINCIPAL is 1"
        in (refused.json()["detail"])
    )
    assert limited.store.count() == count + 1  # bob's job only

    limited.store.set_status(first, "SUCCEEDED")
    third = submit_as(limited, ALICE)  # 2 queued again
    assert limited.http.post(f"/api/v1/jobs/{second}/stop", headers=ALICE).status_code == 200
    assert limited.http.post(f"/api/v1/jobs/{third}/stop", headers=ALICE).status_code == 200
    assert limited.http.post(f"/api/v1/jobs/{bobs}/stop", headers=BOB).status_code == 200


def test_admins_are_not_limited_and_a_resubmission_is_not_a_new_job(limited: Api) -> None:
    for admin in (ROOT, PLAIN):
        ids = [submit_as(limited, admin) for _ in range(3)]
        for job_id in ids:
            assert limited.http.post(f"/api/v1/jobs/{job_id}/stop", headers=admin).is_success
    spec = {**example_spec(), "submission_id": "bob-once"}
    job_id = submit_as(limited, BOB, submission_id="bob-once")
    submit_as(limited, BOB)  # bob is at his limit of 2 queued jobs now
    again = limited.http.post("/api/v1/jobs", json=spec, headers=BOB)
    assert again.status_code == 200 and again.json()["id"] == job_id


def test_racing_submissions_cannot_pass_a_limit_together(limited: Api) -> None:
    from concurrent.futures import ThreadPoolExecutor

    headers = {"Authorization": "Bearer carol-token"}

    def post(_: int) -> int:
        return limited.http.post("/api/v1/jobs", json=example_spec(), headers=headers).status_code

    with ThreadPoolExecutor(6) as pool:
        codes = sorted(pool.map(post, range(6)))

    assert codes == [201, 201, 429, 429, 429, 429]
    assert len(limited.store.page(owner="carol").records) == 2


@pytest.mark.parametrize(
    ("tokens", "says"),
    [
        ("alice:s3cret-a:superuser", "entry 1 (alice) of CHAINRULE_API_TOKENS has the role "
         "'superuser'"),
        ("s3cret-a,bob:", "entry 2 (bob) of CHAINRULE_API_TOKENS has an empty token"),
        ("alice:s3cret-a,alice:s3cret-b", "entry 2 (alice) of CHAINRULE_API_TOKENS names the "
         "principal 'alice' again"),
    ],
)  # fmt: skip
def test_a_bad_token_entry_stops_the_gateway_at_startup_naming_it(
    redis_url: str, tokens: str, says: str
) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "CHAINRULE_REDIS_URL": redis_url, "CHAINRULE_API_TOKENS": tokens}
    env["CHAINRULE_GATEWAY_PORT"] = "1"  # never reached: it exits before it listens
    done = subprocess.run(
        [sys.executable, "-m", "chainrule.gateway"],
        env=env, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip

    assert done.returncode == 1
    assert f"gateway: {says}" in done.stderr
    assert "s3cret" not in done.stderr + done.stdout

"""The gateway client's own logic, against replies made up by httpx.MockTransport: which
token it sends, how it follows pages, and what it says when a request fails."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from chainrule.cli.client import (
    TOKEN_FILE,
    ApiError,
    GatewayClient,
    GatewayUnreachableError,
    resolve_token,
)

Handler = Callable[[httpx.Request], httpx.Response]


def client_with(handler: Handler, token: str | None = None) -> GatewayClient:
    return GatewayClient("http://gw.test/", token, transport=httpx.MockTransport(handler))


# -- the token ------------------------------------------------------------------------------


def test_token_comes_from_the_flag_then_the_environment_then_the_file(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    env = {"CHAINRULE_API_TOKEN": "from-env"}
    assert resolve_token("from-flag", env, token_file) == "from-flag"
    assert resolve_token(None, env, token_file) == "from-env"
    assert resolve_token(None, {}, token_file) == "from-file"
    assert resolve_token(None, {}, tmp_path / "missing") is None


def test_blank_tokens_count_as_unset(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("  \n")
    assert resolve_token("", {"CHAINRULE_API_TOKEN": " "}, token_file) is None


def test_the_token_file_is_where_chainrule_up_writes_it() -> None:
    assert Path(".chainrule/token") == TOKEN_FILE


def test_the_token_travels_as_a_bearer_header_and_only_when_there_is_one() -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("Authorization"))
        return httpx.Response(200, json={"data": []})

    client_with(handler, "s3cret").workers()
    client_with(handler, None).workers()
    assert seen == ["Bearer s3cret", None]


@pytest.mark.parametrize(
    ("token", "code", "says"),
    [(None, 401, "requires an API token"), ("wrong", 403, "refused the API token")],
)
def test_a_refused_token_says_how_to_pass_one(token: str | None, code: int, says: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(code, json={"detail": "not authenticated"})

    with pytest.raises(ApiError) as caught:
        client_with(handler, token).stop("j1")
    message = str(caught.value)
    assert says in message and "not authenticated" in message
    assert "--token" in message and "CHAINRULE_API_TOKEN" in message
    assert ".chainrule/token" in message


def test_a_403_for_another_principals_job_is_not_blamed_on_the_token() -> None:
    detail = "job j1 belongs to alice; only alice or an admin may stop it (this token is bob's)"

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(403, json={"detail": detail})

    with pytest.raises(ApiError) as caught:
        client_with(handler, "bob-token").stop("j1")
    message = str(caught.value)
    assert detail in message and "HTTP 403" in message
    assert "refused the API token" not in message and "--token" not in message


# -- errors ---------------------------------------------------------------------------------


def test_a_422_lists_every_field_with_its_message() -> None:
    detail = [
        {"loc": ["body", "training", "steps"], "msg": "Input should be greater than 0"},
        {"loc": ["body", "model", "activation"], "msg": "unknown activation 'relu6'"},
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(422, json={"detail": detail})

    with pytest.raises(ApiError) as caught:
        client_with(handler).submit({"name": "x"})
    assert caught.value.status_code == 422
    assert str(caught.value).splitlines() == [
        "the job spec was rejected:",
        "  training.steps: Input should be greater than 0",
        "  model.activation: unknown activation 'relu6'",
    ]


def test_a_4xx_carries_the_servers_message() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"detail": "no job 'nope'"})

    with pytest.raises(ApiError, match=r"no job 'nope' \(HTTP 404\)"):
        client_with(handler).job("nope")


def test_an_unreachable_gateway_is_named() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused")

    with pytest.raises(
        GatewayUnreachableError, match=r"cannot reach the gateway at http://gw.test"
    ):
        client_with(handler).job("j1")


def test_ids_cannot_walk_out_of_their_path_segment() -> None:
    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.raw_path.decode())
        return httpx.Response(200, json={"id": "x"})

    client_with(handler).job("../workers")
    assert paths == ["/api/v1/jobs/%2E%2E%2Fworkers"]


# -- requests -------------------------------------------------------------------------------


def test_submit_sends_the_submission_id_and_tells_new_from_existing() -> None:
    bodies: list[dict[str, object]] = []
    replies = iter([201, 200])

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(next(replies), json={"id": "j1", "name": "xor"})

    client = client_with(handler)
    assert client.submit({"name": "xor"}, "run-7") == ({"id": "j1", "name": "xor"}, True)
    assert client.submit({"name": "xor"}, "run-7")[1] is False
    assert bodies[0] == {"name": "xor", "submission_id": "run-7"}


def test_a_spec_without_submission_id_is_sent_as_it_is() -> None:
    bodies: list[dict[str, object]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(201, json={"id": "j1"})

    client_with(handler).submit({"name": "xor"})
    assert bodies == [{"name": "xor"}]


def test_listing_follows_page_tokens_until_the_limit() -> None:
    pages = {None: (["a", "b"], "t1"), "t1": (["c", "d"], "t2"), "t2": (["e"], None)}
    asked: list[tuple[str | None, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        token = request.url.params.get("page_token")
        asked.append((token, request.url.params["limit"]))
        ids, following = pages[token]
        limit = int(request.url.params["limit"])
        data = [{"id": i} for i in ids[:limit]]
        return httpx.Response(200, json={"data": data, "count": 5, "next_page_token": following})

    jobs, more = client_with(handler).jobs_upto(3, status="RUNNING")
    assert [j["id"] for j in jobs] == ["a", "b", "c"]
    assert more == "t2"
    assert asked == [(None, "3"), ("t1", "1")]

    asked.clear()
    jobs, more = client_with(handler).jobs_upto(50)
    assert [j["id"] for j in jobs] == ["a", "b", "c", "d", "e"]
    assert more is None


def test_the_status_filter_is_sent() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.params["status"] == "FAILED"
        return httpx.Response(200, json={"data": [], "count": 0, "next_page_token": None})

    assert client_with(handler).jobs_upto(10, status="FAILED") == ([], None)


def test_the_whole_metric_series_is_paged_by_start_step() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        start = int(request.url.params.get("start_step", 1))
        steps = [s for s in range(start, min(start + 2, 6))]
        following = steps[-1] + 1 if steps[-1] < 5 else None
        return httpx.Response(
            200,
            json={
                "job_id": "j1",
                "count": len(steps),
                "names": ["loss"],
                "latest": {"step": 5, "loss": 0.1},
                "points": [{"step": s, "loss": 1.0 / s} for s in steps],
                "next_start_step": following,
            },
        )

    series = client_with(handler).all_metrics("j1")
    assert [p["step"] for p in series["points"]] == [1, 2, 3, 4, 5]
    assert series["count"] == 5 and series["names"] == ["loss"]


def test_predict_sends_rows_and_model_returns_bytes() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/predict"):
            assert json.loads(request.content) == {"rows": [[0.0, 1.0]]}
            return httpx.Response(200, json={"predictions": [1]})
        return httpx.Response(200, content=b"PK\x03\x04npz")

    client = client_with(handler)
    assert client.predict("j1", [[0.0, 1.0]]) == {"predictions": [1]}
    assert client.model("j1") == b"PK\x03\x04npz"

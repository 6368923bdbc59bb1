"""The gateway's REST API as Python calls: the one place the CLI speaks HTTP.

Every failure leaves as a :class:`GatewayError` whose message a person can act on: the
server's own message for a 4xx, the field messages of a 422, how to pass the token for
a 401/403, and the address that could not be reached for a connection failure.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

Json = dict[str, Any]

DEFAULT_GATEWAY = "http://127.0.0.1:8000"
TOKEN_ENV = "CHAINRULE_API_TOKEN"
# `chainrule up` writes the token of the stack it starts here, relative to where it runs
TOKEN_FILE = Path(".chainrule/token")
JOBS_PAGE = 100  # jobs per list request while following next_page_token
METRICS_PAGE = 1000  # points per request while paging a job's whole metric series


class GatewayError(RuntimeError):
    """The gateway could not do what was asked; ``str(err)`` says why."""


class GatewayUnreachableError(GatewayError):
    """No HTTP reply at all: nothing listening, DNS, timeout, a dropped connection."""


class ApiError(GatewayError):
    """The gateway replied with an error status."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code


def resolve_token(flag: str | None, environ: Mapping[str, str], token_file: Path) -> str | None:
    """The API token to send: ``--token``, else $CHAINRULE_API_TOKEN, else the file that
    ``chainrule up`` writes; None when none is set (an open gateway needs none)."""
    for candidate in (flag, environ.get(TOKEN_ENV)):
        if candidate and candidate.strip():
            return candidate.strip()
    try:
        text = token_file.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    return text or None


def error_message(reply: httpx.Response) -> str:
    """The server's message in an error reply: FastAPI's ``{"detail": "..."}``, a 422's
    list of ``{loc, msg}`` as one line per field, or the raw text when it is not JSON."""
    try:
        body = reply.json()
    except ValueError:
        return reply.text.strip() or reply.reason_phrase
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, list):
        return "\n".join(_field_error(err) for err in detail)
    if detail is not None:
        return str(detail)
    return reply.text.strip()


def _field_error(err: object) -> str:
    if not isinstance(err, dict):
        return f"  {err}"
    where = ".".join(str(part) for part in err.get("loc", []) if part != "body")
    return f"  {where or '(request)'}: {err.get('msg')}"


class GatewayClient:
    """``/api/v1`` of one gateway; replies are the decoded JSON, as the server sent it."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=timeout, transport=transport
        )
        self.has_token = token is not None

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> GatewayClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- jobs -----------------------------------------------------------------------------

    def submit(self, spec: Json, submission_id: str | None = None) -> tuple[Json, bool]:
        """Submit a job; returns it and whether it is new (False: the same submission_id
        and spec were submitted before, and this is that job)."""
        body = {**spec, "submission_id": submission_id} if submission_id else spec
        reply = self._request(
            "POST", "/api/v1/jobs", json=body, refusal="the job spec was rejected"
        )
        return _object(reply), reply.status_code == 201

    def list_jobs(
        self, status: str | None = None, limit: int = JOBS_PAGE, page_token: str | None = None
    ) -> Json:
        params = _params(status=status, limit=limit, page_token=page_token)
        return _object(self._request("GET", "/api/v1/jobs", params=params))

    def jobs_upto(self, limit: int, status: str | None = None) -> tuple[list[Json], str | None]:
        """Up to ``limit`` jobs, newest first, following next_page_token; and the token
        of the page after them (None when there are no more)."""
        jobs: list[Json] = []
        token: str | None = None
        while len(jobs) < limit:
            page = self.list_jobs(status, min(limit - len(jobs), JOBS_PAGE), token)
            data = list(page.get("data") or [])
            jobs.extend(data[: limit - len(jobs)])
            token = page.get("next_page_token") or None
            if token is None or not data:
                break
        return jobs, token

    def job(self, job_id: str) -> Json:
        return _object(self._request("GET", f"/api/v1/jobs/{_segment(job_id)}"))

    def stop(self, job_id: str) -> Json:
        return _object(self._request("POST", f"/api/v1/jobs/{_segment(job_id)}/stop"))

    # -- metrics --------------------------------------------------------------------------

    def metrics(self, job_id: str, start_step: int | None = None, limit: int | None = None) -> Json:
        params = _params(start_step=start_step, limit=limit)
        return _object(
            self._request("GET", f"/api/v1/jobs/{_segment(job_id)}/metrics", params=params)
        )

    def all_metrics(self, job_id: str, start_step: int | None = None) -> Json:
        """The whole series from ``start_step`` on (every page, by next_start_step), with
        the names and latest values of the first page."""
        first = page = self.metrics(job_id, start_step, METRICS_PAGE)
        points = list(page.get("points") or [])
        while page.get("points") and page.get("next_start_step") is not None:
            following = int(page["next_start_step"])
            if start_step is not None and following <= start_step:
                break  # a cursor that does not advance would loop forever
            start_step = following
            page = self.metrics(job_id, start_step, METRICS_PAGE)
            points.extend(page.get("points") or [])
        return {**first, "count": len(points), "points": points, "next_start_step": None}

    def metric_series(
        self,
        job_id: str,
        name: str,
        start_step: int | None = None,
        max_points: int | None = None,
    ) -> Json:
        """One metric's series, downsampled by the server when it is long (it says so)."""
        params = _params(start_step=start_step, max_points=max_points)
        path = f"/api/v1/jobs/{_segment(job_id)}/metrics/{_segment(name)}"
        return _object(self._request("GET", path, params=params))

    # -- the trained model ----------------------------------------------------------------

    def model(self, job_id: str) -> bytes:
        """θ and the spec as ``.npz`` bytes."""
        return self._request("GET", f"/api/v1/jobs/{_segment(job_id)}/model").content

    def predict(self, job_id: str, rows: list[list[float]]) -> Json:
        path = f"/api/v1/jobs/{_segment(job_id)}/predict"
        return _object(
            self._request("POST", path, json={"rows": rows}, refusal="the input rows were rejected")
        )

    # -- workers --------------------------------------------------------------------------

    def workers(self) -> list[Json]:
        return list(_object(self._request("GET", "/api/v1/workers")).get("data") or [])

    # -- internals ------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        json: Json | None = None,
        params: Mapping[str, str | int] | None = None,
        refusal: str = "the request was rejected",
    ) -> httpx.Response:
        try:
            reply = self.http.request(method, path, json=json, params=params)
        except httpx.TransportError as err:
            raise GatewayUnreachableError(
                f"cannot reach the gateway at {self.base_url}: {err or type(err).__name__}"
            ) from None
        if reply.is_success:
            return reply
        raise ApiError(reply.status_code, self._explain(reply, refusal))

    def _explain(self, reply: httpx.Response, refusal: str) -> str:
        message = error_message(reply)
        code = reply.status_code
        if code == 403 and " belongs to " in message:  # the token is fine: not its job
            return f"{refusal}: {message} (HTTP 403)"
        if code in (401, 403):
            problem = "refused the API token" if self.has_token else "requires an API token"
            return (
                f"the gateway at {self.base_url} {problem} ({code}: {message}).\n"
                f"Pass it with --token or ${TOKEN_ENV}; a stack started with `chainrule up` "
                f"writes its token to {TOKEN_FILE} in the directory it was started from."
            )
        if code == 422:  # one line per field when FastAPI names the fields
            separator = "\n" if message.startswith("  ") else " "
            return f"{refusal}:{separator}{message}"
        return f"{message} (HTTP {code})"


def _params(**values: str | int | None) -> dict[str, str | int]:
    return {name: value for name, value in values.items() if value is not None}


def _object(reply: httpx.Response) -> Json:
    try:
        body = reply.json()
    except ValueError:
        raise ApiError(
            reply.status_code, f"the gateway sent a reply that is not JSON: {reply.text[:200]!r}"
        ) from None
    if not isinstance(body, dict):
        raise ApiError(reply.status_code, f"expected a JSON object; got {type(body).__name__}")
    return body


def _segment(value: str) -> str:
    """A path segment as typed by a user: ``/`` or ``..`` in an id must not change the URL."""
    return quote(value, safe="").replace(".", "%2E")

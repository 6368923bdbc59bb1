"""Dependencies of the routes, as ``Annotated`` aliases; the objects live on app.state.

Authentication: with ``CHAINRULE_API_TOKENS`` set, :func:`require_write` guards every
route that changes something and, with ``CHAINRULE_AUTH_READS=true``, :func:`require_read`
guards the rest of /api/v1 (the app adds it when it mounts the routers). A request
without a well-formed ``Authorization: Bearer <token>`` header gets 401 with
``WWW-Authenticate: Bearer``; one whose token is not among the configured ones gets 403.
Tokens are compared in constant time, against every configured token.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any

import redis
from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from chainrule.gateway.models import ModelSource
from chainrule.gateway.schemas import Message
from chainrule.gateway.settings import GatewaySettings
from chainrule.gateway.storage import StorageGuard
from chainrule.store import DatasetStore, JobRecord, JobStore
from chainrule.store.diagnostics import DiagnosticsStore
from chainrule.store.workers import WorkerRegistry


def app_state(name: str) -> Any:
    """A dependency giving ``request.app.state.<name>``, which create_app sets (the
    ``Annotated`` alias beside it says its type)."""

    def get(request: Request) -> Any:
        return getattr(request.app.state, name)

    get.__name__ = f"get_{name}"
    return Depends(get)


JobStoreDep = Annotated[JobStore, app_state("job_store")]
DatasetStoreDep = Annotated[DatasetStore, app_state("dataset_store")]
DiagnosticsStoreDep = Annotated[DiagnosticsStore, app_state("diagnostics_store")]
ModelSourceDep = Annotated[ModelSource, app_state("model_source")]
WorkerRegistryDep = Annotated[WorkerRegistry, app_state("worker_registry")]
SettingsDep = Annotated[GatewaySettings, app_state("settings")]
RedisDep = Annotated[redis.Redis, app_state("redis")]


def get_job(job_id: str, store: JobStoreDep) -> JobRecord:
    """The job named by the path's ``job_id``; 404 if there is none."""
    record = store.get(job_id)
    if record is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no job {job_id!r}")
    return record


JobDep = Annotated[JobRecord, Depends(get_job)]

# -- authentication ---------------------------------------------------------------------

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="one of the tokens in CHAINRULE_API_TOKENS; needed for every POST and DELETE "
    "under /api/v1 except predict once tokens are set, and for reads too when "
    "CHAINRULE_AUTH_READS is true",
)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]

AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {
        "model": Message,
        "description": "no well-formed Authorization: Bearer header (tokens are configured)",
        "headers": {"WWW-Authenticate": {"schema": {"type": "string"}, "example": "Bearer"}},
    },
    403: {"model": Message, "description": "the bearer token is not an accepted one"},
}
STORAGE_FULL: dict[int | str, dict[str, Any]] = {  # what room_for refuses with
    507: {"model": Message, "description": "Redis is near its memory limit"},
}


def check_token(tokens: tuple[str, ...], credentials: HTTPAuthorizationCredentials | None) -> None:
    """Nothing if ``tokens`` is empty or the credentials carry one of them; else 401/403."""
    if not tokens:
        return
    if credentials is None or not credentials.credentials.strip():
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="this request needs an Authorization: Bearer <token> header with one of "
            "the gateway's API tokens (CHAINRULE_API_TOKENS)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    given = credentials.credentials.encode()
    matched = False
    for token in tokens:  # every token compared, so the time tells nothing about which
        matched |= hmac.compare_digest(given, token.encode())
    if not matched:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail="the bearer token is not one of the gateway's API tokens",
        )


def require_write(settings: SettingsDep, credentials: Credentials) -> None:
    """Routes that change state: a token is needed whenever tokens are configured."""
    check_token(settings.tokens, credentials)


def require_read(settings: SettingsDep, credentials: Credentials) -> None:
    """Everything else under /api/v1: a token is needed when CHAINRULE_AUTH_READS is on."""
    if settings.auth_reads:
        check_token(settings.tokens, credentials)


WRITE_ACCESS = [Depends(require_write)]


def room_for(what: str) -> Any:
    """A dependency refusing new work with 507 when Redis is near its memory limit."""

    def check(request: Request) -> None:
        guard: StorageGuard = request.app.state.storage
        guard.check(what)

    return Depends(check)


READ_ACCESS = [Depends(require_read)]

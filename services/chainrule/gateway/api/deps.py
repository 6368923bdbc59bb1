"""Dependencies of the routes, as ``Annotated`` aliases; the objects live on app.state.

Authentication: with ``CHAINRULE_API_TOKENS`` set, :func:`require_write` guards every
route that changes something and, with ``CHAINRULE_AUTH_READS=true``, :func:`require_read`
guards the rest of /api/v1 (the app adds it when it mounts the routers). A request
without a well-formed ``Authorization: Bearer <token>`` header gets 401 with
``WWW-Authenticate: Bearer``; one whose token is not among the configured ones gets 403.
Tokens are compared in constant time, against every configured token.

Both return the :class:`~chainrule.gateway.principals.Principal` the token speaks for
(None: no token is needed). A job belongs to the principal that submitted it: only it or
an admin may stop or delete it (:func:`check_owner`, 403), and with auth reads on a user
reads only its own jobs (:func:`get_job`: another's job is 404, as a missing one).
"""

from __future__ import annotations

from typing import Annotated, Any

import redis
from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from chainrule.gateway.models import ModelSource
from chainrule.gateway.principals import Principal, TokenTable
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
TokensDep = Annotated[TokenTable, app_state("tokens")]
RedisDep = Annotated[redis.Redis, app_state("redis")]


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
    403: {
        "model": Message,
        "description": "the bearer token is not an accepted one (or, for a change to a job "
        "or dataset, its principal neither owns it nor is an admin)",
    },
}
STORAGE_FULL: dict[int | str, dict[str, Any]] = {  # what room_for refuses with
    507: {"model": Message, "description": "Redis is near its memory limit"},
}


def check_token(
    tokens: TokenTable, credentials: HTTPAuthorizationCredentials | None
) -> Principal | None:
    """None if ``tokens`` is empty, the principal of the credentials' token if it is one
    of them; else 401/403."""
    if not tokens:
        return None
    if credentials is None or not credentials.credentials.strip():
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="this request needs an Authorization: Bearer <token> header with one of "
            "the gateway's API tokens (CHAINRULE_API_TOKENS)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    principal = tokens.match(credentials.credentials)
    if principal is None:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail="the bearer token is not one of the gateway's API tokens",
        )
    return principal


def require_write(tokens: TokensDep, credentials: Credentials) -> Principal | None:
    """Routes that change state: a token is needed whenever tokens are configured; the
    principal it speaks for (None: tokens are off, anyone acts as an admin)."""
    return check_token(tokens, credentials)


def require_read(
    settings: SettingsDep, tokens: TokensDep, credentials: Credentials
) -> Principal | None:
    """Everything else under /api/v1: a token is needed when CHAINRULE_AUTH_READS is on;
    the principal it speaks for, None when reads are open (anyone reads everything)."""
    if settings.auth_reads:
        return check_token(tokens, credentials)
    return None


async def reader(request: Request, settings: SettingsDep, tokens: TokensDep) -> Principal | None:
    """Who reads, for the routes that show each user only its own jobs: None when reads
    are open. The same check as :func:`require_read`, which guards the routes when reads
    are not open; it reads the header itself, so that the OpenAPI document does not say
    an open read needs a token."""
    if not settings.auth_reads:
        return None
    return check_token(tokens, await bearer(request))


WRITE_ACCESS = [Depends(require_write)]
WriterDep = Annotated[Principal | None, Depends(require_write)]
ReaderDep = Annotated[Principal | None, Depends(reader)]


def may_read(reader: Principal | None, owner: str | None) -> bool:
    """Whether ``reader`` (None: reads are open) may see what ``owner`` owns."""
    return reader is None or reader.may_act_on(owner)


def check_owner(principal: Principal | None, what: str, owner: str | None, action: str) -> None:
    """403 unless ``principal`` (None: tokens are off) owns ``what`` or is an admin."""
    if principal is None or principal.may_act_on(owner):
        return
    whose = (
        f"belongs to {owner}; only {owner} or an admin may {action} it"
        if owner is not None
        else f"has no owner, so it belongs to the admins; only an admin may {action} it"
    )
    raise HTTPException(
        status.HTTP_403_FORBIDDEN, detail=f"{what} {whose} (this token is {principal.name}'s)"
    )


def get_job(job_id: str, store: JobStoreDep, reader: ReaderDep) -> JobRecord:
    """The job named by the path's ``job_id``; 404 if there is none, or if auth reads are
    on and the caller may not see it (it is another user's)."""
    record = store.get(job_id)
    if record is None or not may_read(reader, record.owner):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no job {job_id!r}")
    return record


JobDep = Annotated[JobRecord, Depends(get_job)]


def room_for(what: str) -> Any:
    """A dependency refusing new work with 507 when Redis is near its memory limit."""

    def check(request: Request) -> None:
        guard: StorageGuard = request.app.state.storage
        guard.check(what)

    return Depends(check)


READ_ACCESS = [Depends(require_read)]

"""Who may call what: bearer tokens with roles on every gRPC call between services.

Two roles, each with its own list of tokens (the same variables in every service):

- ``worker`` (``CHAINRULE_WORKER_TOKENS``): a worker's calls — Register, NextTask,
  Complete, Heartbeat on the scheduler; Pull, Push, PushPull on a parameter server. A
  gradient pushed with it changes θ only if the scheduler planned or applies its task:
  a worker's credential cannot move or drop θ.
- ``scheduler`` (``CHAINRULE_SCHEDULER_TOKENS``): everything, the control calls
  included (CreateJob, Plan, Apply, Discard, DropJob, Status, Restore).

A client sends the first token of its role's list (``authorization: Bearer <token>``);
a server accepts any token of the lists, compared in constant time, so a secret is
rotated without downtime: servers get ``new,old``, then clients ``new``, then servers
``new``. The gRPC health service stays open for probes. With no token configured
authentication is off, which a server allows only on loopback and same-host sockets
(``CHAINRULE_RPC_INSECURE=true`` overrides that, for a private network you trust).
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from pydantic import SecretStr
from pydantic_settings import BaseSettings

from chainrule.settings import CHAINRULE_ENV

WORKER, SCHEDULER = "worker", "scheduler"
METADATA_KEY = "authorization"
EPOCH_KEY = "chainrule-epoch"  # read by paramserver.fence
OPEN_SERVICES = ("/grpc.health.v1.Health/",)  # probes need no token


def _tokens(secret: SecretStr) -> tuple[str, ...]:
    return tuple(t.strip() for t in secret.get_secret_value().split(",") if t.strip())


class RpcAuthSettings(BaseSettings):
    """The tokens every gRPC service reads (a base of each one's settings)."""

    model_config = CHAINRULE_ENV

    # CHAINRULE_WORKER_TOKENS, CHAINRULE_SCHEDULER_TOKENS: comma-separated; a client
    # sends the first, a server accepts any (rotation: "new,old")
    worker_tokens: SecretStr = SecretStr("")
    scheduler_tokens: SecretStr = SecretStr("")
    rpc_insecure: bool = False  # CHAINRULE_RPC_INSECURE: serve beyond loopback without tokens
    # TLS for gRPC over TCP (the same-host sockets need none), PEM file paths:
    # CHAINRULE_TLS_CERT + CHAINRULE_TLS_KEY: a server serves TLS only, with them; a client
    # presents them if the server asks (mTLS). CHAINRULE_TLS_CA: a client verifies servers
    # with it (TLS on when set); a server with CHAINRULE_TLS_CLIENT_AUTH=true requires
    # client certificates it signed
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None
    tls_client_auth: bool = False

    def accepted(self) -> dict[str, str]:
        """token -> role, for a server; empty when authentication is off."""
        accepted = {t: WORKER for t in _tokens(self.worker_tokens)}
        accepted.update({t: SCHEDULER for t in _tokens(self.scheduler_tokens)})
        return accepted

    def credentials(self, role: str) -> Credentials:
        """What a client of ``role`` sends: its token, and TLS when a CA is set."""
        return Credentials(
            self.token(role),
            _read(self.tls_ca),
            _read(self.tls_cert) if self.tls_ca else None,
            _read(self.tls_key) if self.tls_ca else None,
        )

    def server_tls(self) -> grpc.ServerCredentials | None:
        """A server's TLS credentials, None without a certificate (ValueError if only
        half of what TLS needs is set)."""
        if not self.tls_cert and not self.tls_key:
            if self.tls_client_auth:
                raise ValueError("CHAINRULE_TLS_CLIENT_AUTH needs CHAINRULE_TLS_CERT and _KEY")
            return None
        if not (self.tls_cert and self.tls_key):
            raise ValueError("TLS needs both CHAINRULE_TLS_CERT and CHAINRULE_TLS_KEY")
        if self.tls_client_auth and not self.tls_ca:
            raise ValueError("CHAINRULE_TLS_CLIENT_AUTH=true needs CHAINRULE_TLS_CA")
        return grpc.ssl_server_credentials(
            [(_read(self.tls_key), _read(self.tls_cert))],
            root_certificates=_read(self.tls_ca) if self.tls_client_auth else None,
            require_client_auth=self.tls_client_auth,
        )

    def token(self, role: str) -> str | None:
        """The token a client of ``role`` sends, or None when none is set."""
        tokens = _tokens(self.worker_tokens if role == WORKER else self.scheduler_tokens)
        return tokens[0] if tokens else None

    def check_listen(self, address: str) -> None:
        """Refuse (ValueError) to serve ``address`` beyond loopback with no token."""
        if self.accepted() or self.rpc_insecure or is_loopback(address):
            return
        raise ValueError(
            f"refusing to serve {address} without authentication: set "
            "CHAINRULE_WORKER_TOKENS and CHAINRULE_SCHEDULER_TOKENS (the same in every "
            "service), or CHAINRULE_RPC_INSECURE=true on a network you trust"
        )


@dataclass(frozen=True)
class Credentials:
    """What a client presents: a token (rpc.auth) and, for TLS, the CA that signed the
    servers' certificates, and its own certificate and key where servers ask (mTLS)."""

    token: str | None = None
    tls_ca: bytes | None = None
    tls_cert: bytes | None = None
    tls_key: bytes | None = None
    epoch: int = 0  # a leading scheduler's (paramserver.fence); 0: none


def _read(path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as e:
        raise ValueError(f"cannot read TLS file {path}: {e.strerror}") from e


def is_loopback(address: str) -> bool:
    """Whether a listen address ``host:port`` is reachable from this host only."""
    host = address.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def metadata(credentials: Credentials) -> tuple[tuple[str, str], ...]:
    """What a client sends with every call: its token, and a leader's epoch (fencing)."""
    sent: tuple[tuple[str, str], ...] = ()
    if credentials.token:
        sent += ((METADATA_KEY, f"Bearer {credentials.token}"),)
    if credentials.epoch:
        sent += ((EPOCH_KEY, str(credentials.epoch)),)
    return sent


def refusal(code: grpc.StatusCode, details: str) -> grpc.RpcMethodHandler:
    """A handler that refuses the call with ``code`` (an interceptor's answer)."""

    def refuse(request: Any, context: grpc.ServicerContext) -> None:
        context.abort(code, details)

    return grpc.unary_unary_rpc_method_handler(refuse)


class CallGuard(grpc.ServerInterceptor):  # type: ignore[misc]
    """A server interceptor that lets a call through or refuses it before any handler
    runs, by its method and metadata alone (:meth:`check`)."""

    def check(self, method: str, metadata: Any) -> grpc.RpcMethodHandler | None:
        """A :func:`refusal`, or None to let the call through."""
        raise NotImplementedError

    def intercept_service(
        self,
        continuation: Callable[[Any], grpc.RpcMethodHandler | None],
        handler_call_details: Any,
    ) -> grpc.RpcMethodHandler | None:
        details = handler_call_details
        refused = self.check(details.method, details.invocation_metadata)
        return refused if refused is not None else continuation(details)


class AuthInterceptor(CallGuard):
    """Refuses a call without an accepted token (UNAUTHENTICATED) or whose token's role
    may not call the method (PERMISSION_DENIED), before any handler runs: nothing changes.

    ``worker_methods``: the full method names (``/pkg.Service/Method``) the worker role
    may call; the scheduler role may call every method."""

    def __init__(self, accepted: Mapping[str, str], worker_methods: Iterable[str]) -> None:
        self._accepted = [(t.encode(), role) for t, role in accepted.items()]
        self._worker_methods = frozenset(worker_methods)

    def role(self, invocation_metadata: Iterable[tuple[str, Any]] | None) -> str | None:
        presented = b""
        for key, value in invocation_metadata or ():
            if key == METADATA_KEY:
                text = value.decode() if isinstance(value, bytes) else str(value)
                presented = text.removeprefix("Bearer ").strip().encode()
        role = None
        for token, token_role in self._accepted:  # every token compared: constant time
            if hmac.compare_digest(presented, token) and role is None:
                role = token_role
        return role

    def check(self, method: str, metadata: Any) -> grpc.RpcMethodHandler | None:
        if method.startswith(OPEN_SERVICES):
            return None
        role = self.role(metadata)
        if role is None:
            return refusal(
                grpc.StatusCode.UNAUTHENTICATED,
                f"{method} needs a chainrule RPC token (authorization: Bearer <token>) "
                "of CHAINRULE_WORKER_TOKENS or CHAINRULE_SCHEDULER_TOKENS; none valid was sent",
            )
        if role == WORKER and method not in self._worker_methods:
            return refusal(
                grpc.StatusCode.PERMISSION_DENIED,
                f"a worker's token may not call {method}; it may call "
                f"{', '.join(sorted(m.rpartition('/')[2] for m in self._worker_methods))}",
            )
        return None


class _MetadataInterceptor(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    def __init__(self, sent: tuple[tuple[str, str], ...]) -> None:
        self._metadata = sent

    def intercept_unary_unary(
        self, continuation: Callable[[Any, Any], Any], client_call_details: Any, request: Any
    ) -> Any:
        details = client_call_details._replace(
            metadata=(*(client_call_details.metadata or ()), *self._metadata)
        )
        return continuation(details, request)


def with_metadata(channel: grpc.Channel, sent: tuple[tuple[str, str], ...]) -> grpc.Channel:
    """``channel`` sending ``sent`` (rpc.auth.metadata) with every call."""
    return grpc.intercept_channel(channel, _MetadataInterceptor(sent)) if sent else channel


def server_auth(
    settings: RpcAuthSettings, address: str, service: str, worker_methods: Iterable[str]
) -> list[grpc.ServerInterceptor]:
    """The interceptor a server of ``service`` (its full name) checks calls with; none
    when no token is set (ValueError if it would then serve beyond loopback)."""
    settings.check_listen(address)
    accepted = settings.accepted()
    if not accepted:
        return []
    return [AuthInterceptor(accepted, [f"/{service}/{m}" for m in worker_methods])]

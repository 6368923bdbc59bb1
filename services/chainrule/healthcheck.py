"""``python -m chainrule.healthcheck``: is a chainrule service healthy? Exit 0 if so.

Container healthchecks (compose, the image's ``HEALTHCHECK``) run this, so the image
needs neither curl nor grpc_health_probe::

    python -m chainrule.healthcheck 127.0.0.1:50051               # the whole server
    python -m chainrule.healthcheck 127.0.0.1:50052 chainrule.rpc.v1.Scheduler
    python -m chainrule.healthcheck --http http://127.0.0.1:8000/healthz

gRPC targets are asked through the standard health protocol (grpc.health.v1.Health/Check)
and count as healthy only when they answer SERVING: a standby scheduler answers
NOT_SERVING, so it is reported unhealthy, as a Kubernetes gRPC readiness probe would.
An HTTP URL is healthy when it answers 2xx. Anything else exits 1 with one line on stderr
that says what was asked and what came back.
"""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import replace

HEALTHY = 0
UNHEALTHY = 1


def check_grpc(target: str, service: str = "", timeout: float = 3.0) -> str | None:
    """None if ``target`` reports ``service`` ("" = the whole server) as SERVING; else
    why not."""
    import grpc  # imported here: the --http check should not pay for loading grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from chainrule.rpc.auth import WORKER, RpcAuthSettings
    from chainrule.rpc.server import channel

    # TLS as the services speak it (CHAINRULE_TLS_*); no token: the health service is open
    tls = replace(RpcAuthSettings().credentials(WORKER), token=None)
    with channel(target, tls) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError as exc:
            return f"{exc.code().name}: {exc.details()}"
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return None if status == "SERVING" else status


def check_http(url: str, timeout: float = 3.0) -> str | None:
    """None if a GET of ``url`` answers 2xx; else why not."""
    if not url.startswith(("http://", "https://")):
        return f"not an http(s) URL: {url!r}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:  # the scheme is checked above
            status = int(reply.status)
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return f"unreachable: {getattr(exc, 'reason', exc)}"
    return None if 200 <= status < 300 else f"HTTP {status}"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m chainrule.healthcheck",
        description="Exit 0 if a chainrule service is healthy (gRPC SERVING or HTTP 2xx).",
    )
    parser.add_argument("target", nargs="?", help="host:port of a gRPC server")
    parser.add_argument("service", nargs="?", default="", help="gRPC service name ('' = server)")
    parser.add_argument("--http", metavar="URL", help="check an HTTP URL instead (2xx = healthy)")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds (default: 3)")
    args = parser.parse_args(argv)
    if (args.target is None) == (args.http is None):
        parser.error("give either a gRPC host:port or --http URL")
    if args.timeout <= 0:
        parser.error(f"--timeout must be > 0; got {args.timeout}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.http is not None:
        what, problem = args.http, check_http(args.http, args.timeout)
    else:
        what = f"{args.target} {args.service!r}" if args.service else args.target
        problem = check_grpc(args.target, args.service, args.timeout)
    if problem is not None:
        print(f"unhealthy: {what}: {problem}", file=sys.stderr)
        return UNHEALTHY
    return HEALTHY


if __name__ == "__main__":
    sys.exit(main())

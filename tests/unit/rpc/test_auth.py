"""rpc.auth's pure parts: which token maps to which role, and where tokens are required."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from chainrule.rpc.auth import (
    SCHEDULER,
    WORKER,
    AuthInterceptor,
    Credentials,
    RpcAuthSettings,
    is_loopback,
    metadata,
)


def settings(worker: str = "", scheduler: str = "", insecure: bool = False) -> RpcAuthSettings:
    return RpcAuthSettings(
        worker_tokens=SecretStr(worker),
        scheduler_tokens=SecretStr(scheduler),
        rpc_insecure=insecure,
    )


def test_a_rotated_list_accepts_old_and_new_and_clients_send_the_first() -> None:
    s = settings("w-new, w-old", "s-new,s-old")
    assert s.token(WORKER) == "w-new" and s.token(SCHEDULER) == "s-new"
    guard = AuthInterceptor(s.accepted(), ["/svc/Pull"])
    for token, role in (("w-new", WORKER), ("w-old", WORKER), ("s-old", SCHEDULER)):
        assert guard.role(metadata(Credentials(token))) == role
    for presented in (
        metadata(Credentials("w-ne")),
        metadata(Credentials("w-new-")),
        (),
        (("authorization", "w-new"),),
    ):
        expected = WORKER if presented == (("authorization", "w-new"),) else None
        assert guard.role(presented) == expected  # "Bearer " is optional, nothing else is


def test_no_tokens_means_no_client_token_and_no_role() -> None:
    s = settings()
    assert s.token(WORKER) is None and s.accepted() == {}
    assert metadata(Credentials()) == ()
    assert metadata(Credentials(epoch=3)) == (("chainrule-epoch", "3"),)


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1:50051", True),
        ("localhost:1", True),
        ("[::1]:50051", True),
        ("0.0.0.0:50051", False),
        ("[::]:50051", False),
        ("10.0.0.7:50051", False),
        ("paramserver:50051", False),
    ],
)
def test_tokens_are_required_beyond_loopback(address: str, loopback: bool) -> None:
    if loopback:
        settings().check_listen(address)
    else:
        with pytest.raises(ValueError, match="CHAINRULE_WORKER_TOKENS"):
            settings().check_listen(address)
        settings(worker="w", scheduler="s").check_listen(address)
        settings(insecure=True).check_listen(address)
    assert is_loopback(address) is loopback

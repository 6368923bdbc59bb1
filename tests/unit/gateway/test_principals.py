"""CHAINRULE_API_TOKENS as principals and roles: plain tokens are the admin, name:token a
user, name:token:admin an admin; bad entries are refused naming the entry, not its token."""

from __future__ import annotations

import pytest

from chainrule.gateway.principals import (
    ADMIN,
    Principal,
    TokenConfigError,
    TokenTable,
    parse_api_tokens,
)


def test_plain_tokens_are_the_admin_as_before() -> None:
    table = parse_api_tokens("alpha-token,  beta-token")

    assert table.match("alpha-token") == ADMIN == Principal("admin", admin=True)
    assert table.match("beta-token") == ADMIN
    assert table.match("alpha-toke") is None
    assert table.match("alpha-token,") is None
    assert table.principals == (ADMIN,)


def test_named_entries_are_users_or_admins() -> None:
    table = parse_api_tokens(" alice:a-secret , bob : b-secret : admin,carol:c-secret:user,t0")

    assert table.match("a-secret") == Principal("alice", admin=False)
    assert table.match("b-secret") == Principal("bob", admin=True)
    assert table.match("c-secret") == Principal("carol", admin=False)
    assert table.match("t0") == ADMIN
    assert table.match("alice") is None  # a name is not a token
    assert [p.name for p in table.principals] == ["alice", "bob", "carol", "admin"]


@pytest.mark.parametrize("raw", ["", " , ", ",,"])
def test_no_entries_turn_authentication_off(raw: str) -> None:
    table = parse_api_tokens(raw)
    assert not table and table == TokenTable()


def test_a_user_may_act_only_on_its_own_and_an_admin_on_everything() -> None:
    alice, bob = Principal("alice", admin=False), Principal("bob", admin=True)
    assert alice.may_act_on("alice")
    assert not alice.may_act_on("carol") and not alice.may_act_on(None)
    assert bob.may_act_on("alice") and bob.may_act_on(None) and ADMIN.may_act_on("x")


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (":s3cret-1", "entry 1 of CHAINRULE_API_TOKENS has an empty name"),
        ("ok-token, alice:", "entry 2 (alice) of CHAINRULE_API_TOKENS has an empty token"),
        ("alice:s3cret-1:root", "entry 1 (alice) of CHAINRULE_API_TOKENS has the role 'root'"),
        ("alice:s3cret-1:admin:x", "entry 1 of CHAINRULE_API_TOKENS has 4 ':'-separated parts"),
        ("al ice:s3cret-1", "names the principal 'al ice'; a name is 1 to 64 letters"),
        ("alice:s3cret-1,bob:s3cret-1", "entry 2 (bob) of CHAINRULE_API_TOKENS has the same "
         "token as entry 1 (alice)"),
        ("s3cret-1,s3cret-1", "entry 2 (a plain admin token) of CHAINRULE_API_TOKENS has the "
         "same token as entry 1 (a plain admin token)"),
        ("alice:s3cret-1,,alice:s3cret-2", "entry 3 (alice) of CHAINRULE_API_TOKENS names the "
         "principal 'alice' again (first at entry 1 (alice))"),
        ("admin:s3cret-1", "makes 'admin' a user"),
    ],
)  # fmt: skip
def test_a_bad_entry_is_refused_by_position_and_name_not_by_its_token(raw: str, says: str) -> None:
    with pytest.raises(TokenConfigError) as caught:
        parse_api_tokens(raw)

    assert says in str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_an_admin_named_admin_and_plain_tokens_are_one_principal() -> None:
    table = parse_api_tokens("plain-1,admin:named-1:admin,plain-2")
    assert {table.match(t) for t in ("plain-1", "named-1", "plain-2")} == {ADMIN}


def test_chainrule_up_submits_with_the_first_admins_token() -> None:
    assert parse_api_tokens("alice:a-tok,ops:o-tok:admin").first_token() == "o-tok"
    assert parse_api_tokens("alice:a-tok,bob:b-tok").first_token() == "a-tok"
    assert parse_api_tokens("plain-tok").first_token() == "plain-tok"

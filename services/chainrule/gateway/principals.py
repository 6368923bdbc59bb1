"""Who calls the API: the principals and roles that ``CHAINRULE_API_TOKENS`` names.

The variable holds comma-separated entries, each one of:

- ``token``: a plain token, as before principals existed (and the token ``chainrule up``
  generates): the admin principal, named ``admin``. Several plain tokens may be given (to
  rotate them as ``new,old``); they are all ``admin``.
- ``name:token``: the principal ``name``, a user: it may stop and delete only the jobs
  (and datasets) it submitted, and with ``CHAINRULE_AUTH_READS=true`` it reads only its own
  jobs. ``name:token:user`` says the same.
- ``name:token:admin``: the principal ``name``, an admin: it may act on every job.

Spaces around an entry or a part are not part of it; empty entries are skipped, so a
value of only commas and spaces turns authentication off. :func:`parse_api_tokens` refuses
(:class:`TokenConfigError`) an empty name or token, a name that is not 1 to 64 letters,
digits, ``.``, ``_``, ``@`` or ``-``, an unknown role, more than three parts, the same token
twice, the same name twice, or a user called ``admin``; its messages name an entry by its
position and name, never by its token.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass

ADMIN_NAME = "admin"  # the principal of a plain token
ADMIN_ROLE, USER_ROLE = "admin", "user"
ROLES = (ADMIN_ROLE, USER_ROLE)
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
VARIABLE = "CHAINRULE_API_TOKENS"
FORMS = "token, name:token or name:token:admin"


class TokenConfigError(ValueError):
    """``CHAINRULE_API_TOKENS`` holds an entry the gateway cannot use."""


@dataclass(frozen=True)
class Principal:
    """Who a token speaks for: ``name`` owns the jobs it submits; an admin may act on all."""

    name: str
    admin: bool

    def may_act_on(self, owner: str | None) -> bool:
        """Whether this principal may act on something ``owner`` owns (None: no owner,
        which belongs to the admins)."""
        return self.admin or (owner is not None and owner == self.name)


ADMIN = Principal(ADMIN_NAME, admin=True)


@dataclass(frozen=True)
class TokenTable:
    """The accepted tokens and whom each speaks for; empty (false) when auth is off."""

    entries: tuple[tuple[bytes, Principal], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.entries)

    def match(self, given: str) -> Principal | None:
        """The principal of token ``given``, or None. Every token is compared, in constant
        time, so the time taken tells nothing about which one (if any) matched."""
        token = given.encode()
        found: Principal | None = None
        for candidate, principal in self.entries:
            if hmac.compare_digest(token, candidate):
                found = principal
        return found

    def first_token(self) -> str:
        """The first admin's token (else the first token): what `chainrule up --submit`
        sends."""
        admins = [token for token, principal in self.entries if principal.admin]
        return (admins or [token for token, _ in self.entries] or [b""])[0].decode()

    @property
    def principals(self) -> tuple[Principal, ...]:
        """Each principal once, in the order the entries name them."""
        return tuple(dict.fromkeys(principal for _, principal in self.entries))


def parse_api_tokens(raw: str) -> TokenTable:
    """The table ``raw`` (the value of ``CHAINRULE_API_TOKENS``) describes;
    TokenConfigError, naming the entry but not its token, if an entry is not usable."""
    entries: list[tuple[bytes, Principal]] = []
    token_at: dict[str, str] = {}  # token -> how its first entry is described
    name_at: dict[str, str] = {}
    for position, entry in enumerate(raw.split(","), start=1):
        entry = entry.strip()
        if not entry:
            continue
        token, principal, where = _entry(position, entry)
        if token in token_at:
            raise TokenConfigError(
                f"{where} of {VARIABLE} has the same token as {token_at[token]}; "
                "each token must be given once"
            )
        token_at[token] = where
        if ":" in entry:  # plain tokens all speak for "admin", and may be several
            if principal.name in name_at:
                raise TokenConfigError(
                    f"{where} of {VARIABLE} names the principal {principal.name!r} again "
                    f"(first at {name_at[principal.name]}); each name must be given once"
                )
            name_at[principal.name] = where
        entries.append((token.encode(), principal))
    return TokenTable(tuple(entries))


def _entry(position: int, entry: str) -> tuple[str, Principal, str]:
    """(token, principal, how the entry is named in messages) of one non-empty entry."""
    parts = [part.strip() for part in entry.split(":")]
    if len(parts) == 1:
        return parts[0], ADMIN, f"entry {position} (a plain admin token)"
    if len(parts) > 3:
        raise TokenConfigError(
            f"entry {position} of {VARIABLE} has {len(parts)} ':'-separated parts; expected "
            f"{FORMS} (a token cannot hold ':' or ',')"
        )
    name, token = parts[0], parts[1]
    role = parts[2] if len(parts) == 3 else USER_ROLE
    if not name:
        raise TokenConfigError(
            f"entry {position} of {VARIABLE} has an empty name; expected {FORMS}"
        )
    if not NAME.fullmatch(name):
        raise TokenConfigError(
            f"entry {position} of {VARIABLE} names the principal {name[:70]!r}; a name is 1 to "
            "64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit"
        )
    where = f"entry {position} ({name})"
    if not token:
        raise TokenConfigError(f"{where} of {VARIABLE} has an empty token; expected {FORMS}")
    if role not in ROLES:
        raise TokenConfigError(
            f"{where} of {VARIABLE} has the role {role[:40]!r}; the role is 'admin' (may act "
            "on every job), or 'user' or left out (may act on its own jobs only)"
        )
    if name == ADMIN_NAME and role != ADMIN_ROLE:
        raise TokenConfigError(
            f"{where} of {VARIABLE} makes {ADMIN_NAME!r} a user; that name is the plain "
            f"tokens' admin principal, so give it the role admin or choose another name"
        )
    return token, Principal(name, admin=role == ADMIN_ROLE), where

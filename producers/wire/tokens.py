"""API tokens: the format, the stored hash, expiry durations and the roles a token may carry. Pure.

A token is ``mlg_<token_id>_<secret>``:

- ``token_id``: 12 lowercase hex characters (random); public, names the token in events, views and the CLI;
- ``secret``: ``secrets.token_urlsafe(32)``, 43 characters of the URL-safe base64 alphabet.

Only ``token_hash(token)`` — the SHA-256 of the whole token string, as 64 lowercase hex digits — is ever
stored (in the ``TokenIssued`` event and the ``api_tokens`` view); the token itself is printed once,
when it is created, and never written anywhere. A server authenticates ``Authorization: Bearer <token>``
by ``parse_token`` (a cheap format check), then looking ``token_hash(token)`` up in ``api_tokens``
(not revoked, not expired).

The roles a token may carry (``ROLES``), strongest first:

- ``admin``: everything, including issuing and revoking tokens and granting roles;
- ``maintainer``: registry changes (register, annotate, request stage and alias changes, record
  deployments, policies) and everything a writer may do;
- ``approver``: approve or reject governed change requests (never one's own);
- ``writer``: log runs, params, metrics, tags, artifacts, datasets, predictions and labels;
- ``reader``: read only (SQL over the views).

Roles do not imply one another here: a token carries the roles it was issued with, and the server
decides what each request needs.
"""

from __future__ import annotations

import hashlib
import re
import secrets

from modelog.wire.errors import ValidationError

PREFIX = "mlg"
ROLES: tuple[str, ...] = ("admin", "maintainer", "approver", "writer", "reader")
DEFAULT_ROLES: tuple[str, ...] = ("reader",)

TOKEN_ID_RE = r"[0-9a-f]{12}"
SECRET_LENGTH = 43  # len(secrets.token_urlsafe(32))
_TOKEN = re.compile(rf"{PREFIX}_({TOKEN_ID_RE})_[A-Za-z0-9_\-]{{{SECRET_LENGTH}}}")
_TOKEN_ID = re.compile(TOKEN_ID_RE)
TOKEN_RULE = (f"must be a modelog API token: {PREFIX}_<token id: 12 lowercase hex characters>_<secret: "
              f"{SECRET_LENGTH} characters of letters, digits, '_' or '-'>")
TOKEN_ID_RULE = "must be a token id: 12 lowercase hex characters"

_EXPIRES = re.compile(r"([1-9][0-9]{0,6})([dhm])")
_UNIT_MICROS = {"d": 86_400_000_000, "h": 3_600_000_000, "m": 60_000_000}
MAX_EXPIRES_DAYS = 3650
EXPIRES_RULE = (f"must be a duration: a whole number of days, hours or minutes (30d, 12h, 90m), at most "
                f"{MAX_EXPIRES_DAYS}d, or 'never'")


def new_token() -> tuple[str, str, str]:
    """A fresh random token: (token, token_id, token_hash). Show the token once; store only the hash."""
    token_id = secrets.token_hex(6)
    token = f"{PREFIX}_{token_id}_{secrets.token_urlsafe(32)}"
    return token, token_id, token_hash(token)


def token_hash(token: str) -> str:
    """The stored form of a token: SHA-256 of the whole token string, 64 lowercase hex digits."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _shown(token: object) -> str:
    """What an error may show of a would-be token: never the secret part."""
    if not isinstance(token, str):
        return f"<{type(token).__name__}>"
    head = token[:len(PREFIX) + 1 + 12]
    if head.startswith(PREFIX + "_") and _TOKEN_ID.fullmatch(head[len(PREFIX) + 1:]):
        return head + "_<secret not shown>"
    return f"<{len(token)} characters, not shown>"


def parse_token(token: str) -> str:
    """The token id of a well-formed token; ``ValidationError("token", ...)`` otherwise.

    Checks the format only; whether the token is known, revoked or expired is the views' answer.
    The error never carries the secret.
    """
    m = _TOKEN.fullmatch(token) if isinstance(token, str) else None
    if m is None:
        raise ValidationError("token", _shown(token), TOKEN_RULE)
    return m.group(1)


def check_token_id(token_id: str, field: str = "token_id") -> str:
    """``token_id`` if it is 12 lowercase hex characters; ``ValidationError(field, ...)`` otherwise."""
    if not isinstance(token_id, str) or not _TOKEN_ID.fullmatch(token_id):
        raise ValidationError(field, token_id, TOKEN_ID_RULE)
    return token_id


def parse_expires(text: str, field: str = "--expires") -> int | None:
    """``"30d"`` / ``"12h"`` / ``"90m"`` -> that duration in microseconds; ``"never"`` -> None."""
    t = text.strip().lower() if isinstance(text, str) else None
    if t == "never":
        return None
    m = _EXPIRES.fullmatch(t) if t is not None else None
    if m is None:
        raise ValidationError(field, text, EXPIRES_RULE)
    micros = int(m.group(1)) * _UNIT_MICROS[m.group(2)]
    if micros > MAX_EXPIRES_DAYS * _UNIT_MICROS["d"]:
        raise ValidationError(field, text, EXPIRES_RULE)
    return micros


def check_roles(roles: object, field: str = "roles") -> tuple[str, ...]:
    """The roles, each one of ``ROLES``, at least one, duplicates dropped (first kept)."""
    if isinstance(roles, str) or roles is None:
        raise ValidationError(field, roles, f"must be a list of roles, each one of {', '.join(ROLES)}")
    out: list[str] = []
    for role in roles:
        if role not in ROLES:
            raise ValidationError(field, role, f"must be one of {', '.join(ROLES)}")
        if role not in out:
            out.append(role)
    if not out:
        raise ValidationError(field, list(out), f"must hold at least one role ({', '.join(ROLES)})")
    return tuple(out)

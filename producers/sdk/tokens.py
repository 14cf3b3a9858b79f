"""API tokens from the SDK: issue and revoke. Admin operations, reached through ``modelog token`` and the
HTTP server; not part of ``import modelog``'s surface.

    issued = issue_token(client, "ci-runner", roles=("writer", "reader"), expires="30d")
    print(issued.token)        # shown once: only its SHA-256 goes on the log
    revoke_token(client, issued.token_id, reason="rotated")

Each verb publishes one event keyed ``token:<token_id>`` (``TokenIssued``, ``TokenRevoked``) and
flushes, so it is on the log (and audited) when the call returns; ``client.wait_projected()`` then
makes it visible in the ``api_tokens`` view. The token format and the roles are in
:mod:`modelog.wire.tokens`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from modelog.wire import rules as _rules
from modelog.wire import tokens as _tokens
from modelog.wire.errors import ValidationError
from modelog.wire.models import validate

if TYPE_CHECKING:
    from modelog.sdk.client import Client


@dataclass(frozen=True)
class IssuedToken:
    """A token just issued. ``token`` is the only copy of the secret there will ever be (kept out of repr).

    ``expires_at``: UTC microseconds since the epoch, or None (never).
    """

    token: str = field(repr=False)
    token_id: str
    principal: str
    roles: tuple[str, ...]
    expires_at: int | None


def _duration(expires: str | timedelta | None) -> int | None:
    if expires is None:
        return None
    if isinstance(expires, timedelta):
        micros = expires // timedelta(microseconds=1)
        if micros <= 0:
            raise ValidationError("expires", expires, "must be a positive duration")
        return micros
    return _tokens.parse_expires(expires, "expires")


def issue_token(client: Client, principal: str, roles: Iterable[str] | None = None,
                expires: str | timedelta | None = None, description: str | None = None) -> IssuedToken:
    """Issue a new API token for ``principal``; publish ``TokenIssued`` (with the hash only) and flush.

    ``roles``: at least one of ``modelog.wire.tokens.ROLES``; None gives ``("reader",)`` (least privilege).
    ``expires``: ``"30d"``, ``"12h"``, ``"90m"``, ``"never"``, a ``timedelta``, or None (never).
    Raises ValidationError before publishing anything on bad input; DeliveryError if the broker did not
    acknowledge the event.
    """
    try:
        _rules.name(principal)
    except ValueError as exc:
        raise ValidationError("principal", principal, str(exc)) from None
    checked = _tokens.check_roles(_tokens.DEFAULT_ROLES if roles is None else list(roles))
    duration = _duration(expires)
    try:
        _rules.optional_text(description)
    except ValueError as exc:
        raise ValidationError("description", description, str(exc)) from None
    token, token_id, token_hash = _tokens.new_token()
    event = client.events.make("TokenIssued", "token", f"token:{token_id}", token_id=token_id, principal=principal,
                               roles=list(checked), token_hash=token_hash, expires_at=None, description=description)
    expires_at = None if duration is None else event.record["envelope"]["occurred_at"] + duration
    event.record["expires_at"] = expires_at  # exactly issued_at + the duration
    validate("TokenIssued", event.record)
    client.emitter.emit([event])
    client.flush()
    return IssuedToken(token, token_id, principal, checked, expires_at)


def revoke_token(client: Client, token_id: str, reason: str | None = None) -> None:
    """Revoke the token ``token_id``; publish ``TokenRevoked`` and flush.

    Does not look the token up: a revocation of an id never issued changes nothing (the CLI checks the
    ``api_tokens`` view first).
    """
    _tokens.check_token_id(token_id)
    client.publish("TokenRevoked", "token", f"token:{token_id}", token_id=token_id, reason=reason)
    client.flush()

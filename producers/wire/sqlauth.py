"""Who asks the processor's SQL endpoint: a request signed with the principal's Ed25519 key, or an API token.

Decision 0022. A signed request carries three headers:

    X-Modelog-Key-Id     ed25519:<32 hex>  (a key registered in ``signing_keys``, active)
    X-Modelog-Date       the signing time, Unix seconds (refused when more than MAX_SKEW_S away from now)
    X-Modelog-Signature  base64 of the Ed25519 signature of :func:`request_pae`: the DSSE pre-authentication
                         encoding of the request -- date, on-behalf-of, as-of, parameters and the SHA-256 of the
                         statement -- under a payload type of its own, so no event signature is a request one

and, from a key with the ``delegate`` capability only (the HTTP server's), ``X-Modelog-On-Behalf-Of: <principal>``:
the answer is scoped to that principal, whom the server authenticated by its token. ``Authorization: Bearer
<token>`` (``MODELOG_TOKEN``) is the other way in: the token is checked against ``api_tokens`` by
:func:`token_verdict`, the same rule the HTTP server applies.

Pure: no I/O; the endpoint passes in the key and token rows it read.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import datetime, timezone

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from modelog.wire.signing import DELEGATE, Signer
from modelog.wire.tokens import token_hash

KEY_ID = "X-Modelog-Key-Id"
DATE = "X-Modelog-Date"
SIGNATURE = "X-Modelog-Signature"
ON_BEHALF = "X-Modelog-On-Behalf-Of"
PAYLOAD_TYPE = "application/vnd.modelog.sql-request+json"
MAX_SKEW_S = 300


class AuthError(Exception):
    """The request's identity could not be established (the endpoint answers 401 with the message)."""


def request_pae(date: int, on_behalf: str | None, as_of: str | None, params: str | None, body: bytes) -> bytes:
    """What a request's signature covers (DSSE PAE over a canonical JSON payload)."""
    payload = json.dumps({"date": int(date), "on_behalf_of": on_behalf or "", "as_of": as_of or "",
                          "params": params or "", "sql_sha256": hashlib.sha256(body).hexdigest()},
                         sort_keys=True, separators=(",", ":")).encode()
    return b"DSSEv1 %d %s %d %s" % (len(PAYLOAD_TYPE), PAYLOAD_TYPE.encode(), len(payload), payload)


def sign_request(signer: Signer, body: bytes, *, as_of: str | None = None, params: str | None = None,
                 on_behalf: str | None = None, now: float | None = None) -> dict[str, str]:
    """The headers that prove ``signer``'s principal sends this request (``params``: the X-Modelog-Params text)."""
    date = int(now if now is not None else datetime.now(timezone.utc).timestamp())
    sig = signer.private.sign(request_pae(date, on_behalf, as_of, params, body))
    headers = {KEY_ID: signer.key_id, DATE: str(date), SIGNATURE: base64.b64encode(sig).decode()}
    if on_behalf:
        headers[ON_BEHALF] = on_behalf
    return headers


def verify_request(headers: Mapping[str, str], body: bytes, key: Mapping | None, now: float) -> str:
    """The principal a signed request speaks for; raises AuthError saying why not.

    ``headers``: the request's (names as sent, case-insensitive); ``key``: the ``signing_keys`` row of its key
    id (principal, public_key, capabilities, status) or None."""
    h = {k.lower(): v for k, v in headers.items()}
    key_id = h.get(KEY_ID.lower(), "")
    if key is None:
        raise AuthError(f"{KEY_ID}: unknown key {key_id!r} (not in signing_keys)")
    if key.get("status") != "active":
        raise AuthError(f"{KEY_ID}: key {key_id} is revoked")
    try:
        date = int(h.get(DATE.lower(), ""))
    except ValueError:
        raise AuthError(f"{DATE}: must be the signing time in Unix seconds") from None
    if abs(now - date) > MAX_SKEW_S:
        raise AuthError(f"{DATE}: the request was signed {int(now - date)} s from now; at most {MAX_SKEW_S} s "
                        "either way (check the clock)")
    try:
        sig = base64.b64decode(h.get(SIGNATURE.lower(), ""), validate=True)
    except (binascii.Error, ValueError):
        raise AuthError(f"{SIGNATURE}: must be base64") from None
    on_behalf = h.get(ON_BEHALF.lower()) or None
    message = request_pae(date, on_behalf, h.get("x-modelog-as-of"), h.get("x-modelog-params"), body)
    try:
        Ed25519PublicKey.from_public_bytes(bytes(key["public_key"])).verify(sig, message)
    except (InvalidSignature, ValueError, TypeError):
        raise AuthError(f"{SIGNATURE}: does not verify with key {key_id}") from None
    if on_behalf is None:
        return str(key["principal"])
    if DELEGATE not in (key.get("capabilities") or ()):
        raise AuthError(f"{ON_BEHALF}: key {key_id} of {key['principal']} may not speak for another principal "
                        f"(it lacks the {DELEGATE!r} capability)")
    return on_behalf


def token_verdict(token: str, row: Mapping | None, now: float) -> tuple[str | None, tuple[str, ...], str]:
    """(principal, roles, "") of a valid ``token`` whose ``api_tokens`` row is ``row``; (None, (), why) otherwise.
    Compared in constant time; revoked, expired and unknown tokens are refused. Shared by the HTTP server
    (server/auth.py) and the SQL endpoint."""
    if row is None or not hmac.compare_digest(str(row.get("token_hash") or ""), token_hash(token)):
        return None, (), "unknown token"
    if row.get("revoked_at") is not None:
        return None, (), "token revoked"
    expires = row.get("expires_at")
    if expires is not None and _epoch(expires) <= now:
        return None, (), "token expired"
    return str(row["principal"]), tuple(row.get("roles") or ()), ""


def _epoch(value) -> float:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.timestamp()
    return float(value) / 1e6  # microseconds

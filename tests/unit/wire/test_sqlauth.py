"""Who asks the SQL endpoint (decision 0022): signed requests (the statement, its parameters, as-of and
on-behalf-of under one signature, a freshness window, delegate-only on-behalf-of) and the shared token rule."""

from __future__ import annotations

import pytest

from modelog.wire.signing import DELEGATE, Signer
from modelog.wire.sqlauth import (AuthError, MAX_SKEW_S, ON_BEHALF, SIGNATURE, sign_request, token_verdict,
                                  verify_request)
from modelog.wire.tokens import new_token, token_hash

NOW = 1_800_000_000.0
BODY = b"SELECT * FROM runs"


def key_row(signer: Signer, principal: str = "bob", caps=(), status: str = "active") -> dict:
    return {"principal": principal, "public_key": signer.public_key, "capabilities": list(caps), "status": status}


def test_a_signed_request_names_its_key_s_principal():
    bob = Signer.generate()
    headers = sign_request(bob, BODY, as_of="2026-01-01T00:00:00", params='["x"]', now=NOW)
    headers |= {"X-Modelog-As-Of": "2026-01-01T00:00:00", "X-Modelog-Params": '["x"]'}
    assert verify_request(headers, BODY, key_row(bob), NOW) == "bob"


@pytest.mark.parametrize("change, match", [
    (lambda h, b: (h, b + b" WHERE true"), "does not verify"),                         # another statement
    (lambda h, b: ({**h, "X-Modelog-As-Of": "2020-01-01"}, b), "does not verify"),     # another instant
    (lambda h, b: ({**h, "X-Modelog-Params": "[1]"}, b), "does not verify"),           # other parameters
    (lambda h, b: ({**h, ON_BEHALF: "alice"}, b), "does not verify"),                  # a name added after
    (lambda h, b: ({**h, SIGNATURE: "not base64!"}, b), "base64"),
    (lambda h, b: ({**h, "X-Modelog-Date": "yesterday"}, b), "Unix seconds"),
])
def test_anything_changed_after_signing_is_refused(change, match):
    bob = Signer.generate()
    headers, body = change(sign_request(bob, BODY, now=NOW), BODY)
    with pytest.raises(AuthError, match=match):
        verify_request(headers, body, key_row(bob), NOW)


def test_stale_unknown_and_revoked_keys_are_refused():
    bob = Signer.generate()
    with pytest.raises(AuthError, match="at most"):
        verify_request(sign_request(bob, BODY, now=NOW - MAX_SKEW_S - 1), BODY, key_row(bob), NOW)
    with pytest.raises(AuthError, match="unknown key"):
        verify_request(sign_request(bob, BODY, now=NOW), BODY, None, NOW)
    with pytest.raises(AuthError, match="revoked"):
        verify_request(sign_request(bob, BODY, now=NOW), BODY, key_row(bob, status="revoked"), NOW)
    with pytest.raises(AuthError, match="does not verify"):  # a key row of someone else's key
        verify_request(sign_request(bob, BODY, now=NOW), BODY, key_row(Signer.generate()), NOW)


def test_only_a_delegate_key_speaks_for_another_principal():
    server, bob = Signer.generate(), Signer.generate()
    assert verify_request(sign_request(server, BODY, on_behalf="carol", now=NOW), BODY,
                          key_row(server, "modelog-server", (DELEGATE,)), NOW) == "carol"
    with pytest.raises(AuthError, match="delegate"):
        verify_request(sign_request(bob, BODY, on_behalf="alice", now=NOW), BODY, key_row(bob), NOW)


def test_token_verdict_is_the_server_s_rule():
    token, token_id, _ = new_token()
    row = {"token_id": token_id, "principal": "bob", "roles": ["reader"], "token_hash": token_hash(token),
           "revoked_at": None, "expires_at": None}
    assert token_verdict(token, row, NOW) == ("bob", ("reader",), "")
    assert token_verdict(token, None, NOW)[2] == "unknown token"
    assert token_verdict(token, {**row, "token_hash": "0" * 64}, NOW)[2] == "unknown token"
    assert token_verdict(token, {**row, "revoked_at": 1}, NOW)[2] == "token revoked"
    assert token_verdict(token, {**row, "expires_at": int((NOW - 1) * 1e6)}, NOW)[2] == "token expired"

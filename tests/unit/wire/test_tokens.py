"""API tokens: the format, the stored hash, parsing, expiry durations, roles; and the events' rules."""

from __future__ import annotations

import hashlib
import re

import pytest

from factories import token_records
from modelog import ValidationError
from modelog.wire import tokens
from modelog.wire.models import validate
from modelog.wire.rulecheck import check


def test_new_token_has_the_format_and_its_hash():
    token, token_id, token_hash = tokens.new_token()
    assert re.fullmatch(r"mlg_[0-9a-f]{12}_[A-Za-z0-9_\-]{43}", token)
    assert token.split("_")[1] == token_id and len(token_id) == 12
    assert token_hash == hashlib.sha256(token.encode()).hexdigest() == tokens.token_hash(token)
    assert re.fullmatch(r"[0-9a-f]{64}", token_hash)
    assert tokens.parse_token(token) == token_id


def test_tokens_are_random():
    made = [tokens.new_token() for _ in range(200)]
    assert len({t for t, _, _ in made}) == len({i for _, i, _ in made}) == 200


def test_a_secret_with_underscores_still_parses():
    token = "mlg_0123456789ab_" + "_" * 10 + "a-" * 16 + "z"
    assert len(token) == 4 + 12 + 1 + 43
    assert tokens.parse_token(token) == "0123456789ab"


@pytest.mark.parametrize("bad", [
    "", "mlg_", "mlg_0123456789ab", "mlg_0123456789ab_", "mlg_0123456789AB_" + "a" * 43,  # upper-case id
    "mlg_0123456789a_" + "a" * 44, "abc_0123456789ab_" + "a" * 43, "mlg-0123456789ab_" + "a" * 43,
    "mlg_0123456789ab_" + "a" * 42, "mlg_0123456789ab_" + "a" * 44, "mlg_0123456789ab_" + "a" * 42 + "=",
    "mlg_0123456789ab_" + "a" * 43 + "\n", " mlg_0123456789ab_" + "a" * 43, "Bearer mlg_0123456789ab_" + "a" * 43,
    None, 42, b"mlg_0123456789ab_" + b"a" * 43,
])
def test_malformed_tokens_are_rejected_naming_the_rule(bad):
    with pytest.raises(ValidationError) as err:
        tokens.parse_token(bad)
    assert err.value.field == "token"
    assert "mlg_<token id: 12 lowercase hex characters>_<secret" in err.value.rule


def test_a_rejected_token_never_shows_its_secret():
    secret = "S3cret" * 8
    for bad in (f"mlg_0123456789ab_{secret}", f"xyz_{secret}", secret):
        with pytest.raises(ValidationError) as err:
            tokens.parse_token(bad)
        assert "S3cret" not in str(err.value) and "S3cret" not in repr(err.value.value)
    with pytest.raises(ValidationError) as err:
        tokens.parse_token(f"mlg_0123456789ab_{secret}")
    assert "mlg_0123456789ab" in str(err.value)  # the public id part helps to find it


@pytest.mark.parametrize("text, micros", [
    ("30d", 30 * 86_400_000_000), ("12h", 12 * 3_600_000_000), ("90m", 90 * 60_000_000), ("1m", 60_000_000),
    ("3650d", 3650 * 86_400_000_000), (" 7D ", 7 * 86_400_000_000), ("never", None), ("NEVER", None),
])
def test_parse_expires(text, micros):
    assert tokens.parse_expires(text) == micros


@pytest.mark.parametrize("bad", ["", "30", "d", "0d", "-1d", "1.5d", "30s", "2w", "30 d", "3651d", "87601h",
                                 "forever", "1e3d", None, 30])
def test_parse_expires_rejects_naming_the_option_and_the_rule(bad):
    with pytest.raises(ValidationError) as err:
        tokens.parse_expires(bad)
    assert err.value.field == "--expires"
    assert "30d, 12h, 90m" in err.value.rule and "'never'" in err.value.rule
    assert str(err.value).startswith("--expires: must be a duration")


def test_roles():
    assert tokens.ROLES == ("admin", "maintainer", "approver", "writer", "reader")
    assert tokens.check_roles(["writer", "reader", "writer"]) == ("writer", "reader")
    for bad in ([], ["root"], "reader", None):
        with pytest.raises(ValidationError) as err:
            tokens.check_roles(bad)
        assert err.value.field == "roles"


def test_token_ids():
    assert tokens.check_token_id("0123456789ab") == "0123456789ab"
    for bad in ("0123456789AB", "0123456789a", "0123456789abc", "mlg_0123456789ab", "", None):
        with pytest.raises(ValidationError, match="12 lowercase hex"):
            tokens.check_token_id(bad)


@pytest.mark.parametrize("event_type, mutate, field", [
    ("TokenIssued", lambda r: r.update(token_id="XYZ"), "TokenIssued.token_id"),
    ("TokenIssued", lambda r: r.update(token_hash="0" * 63), "TokenIssued.token_hash"),
    ("TokenIssued", lambda r: r.update(roles=[]), "TokenIssued.roles"),
    ("TokenIssued", lambda r: r.update(roles=["reader", "root"]), "TokenIssued.roles"),
    ("TokenIssued", lambda r: r.update(principal="bad name!"), "TokenIssued.principal"),
    ("TokenRevoked", lambda r: r.update(token_id="0123456789ab0"), "TokenRevoked.token_id"),
])
def test_the_events_rules_hold_in_the_sdk_and_the_processor(event_type, mutate, field):
    record = token_records()[event_type]
    check(event_type, record)
    validate(event_type, record)
    mutate(record)
    with pytest.raises(ValidationError) as fast:
        check(event_type, record)
    with pytest.raises(ValidationError) as full:
        validate(event_type, record)
    assert fast.value.field == field
    assert full.value.field.startswith(field)

"""API tokens through the SDK (memory emitter) into a real DuckDB file: issue, revoke, revoke-unknown,
first issue wins, rebuild equivalence; the log holds the hash, never the token."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest

from factories import envelope
from modelog import Client, MemoryEmitter, Settings, ValidationError
from modelog.wire.codec import Codec
from modelog.wire.envelope import Event
from modelog.processors.projection import RawRecord
from modelog.processors.projector import Projector
from modelog.processors.store import VIEW_NAMES, ViewStore
from modelog.sdk.tokens import IssuedToken, issue_token, revoke_token

COLUMNS = ["token_id", "principal", "roles", "token_hash", "description", "issued_at", "issued_by", "expires_at",
           "revoked_at", "revoked_by", "revoke_reason"]
DAY_US = 86_400_000_000


class Log:
    """A one-partition log: clients publish into memory, ``pump`` applies everything new into a ViewStore."""

    def __init__(self, tmp_path) -> None:
        self.tmp_path = tmp_path
        self.store = ViewStore(tmp_path / "views.duckdb")
        self.projector = Projector()
        self.log: list[bytes] = []
        self.clients: list[tuple[Client, list]] = []
        self.applied = 0

    def client(self, principal: str) -> Client:
        c = Client(Settings.load(env={}, home=self.tmp_path, principal=principal), emitter=MemoryEmitter())
        self.clients.append((c, [0]))
        return c

    def pump(self) -> None:
        for c, seen in self.clients:
            new = c.emitter.encoded[seen[0]:]
            seen[0] += len(new)
            self.log.extend(new)
        recs = [RawRecord("t", 0, i, None, b"k", v) for i, v in enumerate(self.log)][self.applied:]
        self.applied = len(self.log)
        if recs:
            self.store.apply(recs, self.projector)

    def q(self, sql: str, *params):
        return self.store.reader().execute(sql, list(params)).fetchall()


@pytest.fixture
def log(tmp_path):
    lg = Log(tmp_path)
    yield lg
    lg.store.close()


def test_api_tokens_columns_are_the_contract(log):
    cols = log.q("SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'api_tokens' "
                 "ORDER BY ordinal_position")
    assert [c for c, _ in cols] == COLUMNS
    assert dict(cols)["roles"] == "VARCHAR[]"
    assert "api_tokens" in VIEW_NAMES  # covered by every "rebuild equals live" comparison


def test_issue_then_revoke(log):
    admin = log.client("alice")
    issued = issue_token(admin, "ci-runner", ["writer", "reader"], expires="30d", description="CI")
    assert isinstance(issued, IssuedToken) and issued.roles == ("writer", "reader")
    assert issued.token not in repr(issued)
    log.pump()
    (row,) = log.q("SELECT * FROM api_tokens")
    r = dict(zip(COLUMNS, row))
    assert r["token_id"] == issued.token_id and r["principal"] == "ci-runner"
    assert r["roles"] == ["writer", "reader"] and r["description"] == "CI" and r["issued_by"] == "alice"
    assert r["token_hash"] == hashlib.sha256(issued.token.encode()).hexdigest()
    assert r["expires_at"] - r["issued_at"] == timedelta(days=30)
    assert (r["revoked_at"], r["revoked_by"], r["revoke_reason"]) == (None, None, None)

    log.q("SELECT 1")  # nothing changes on reads
    revoke_token(log.client("bob"), issued.token_id, reason="rotated")
    log.pump()
    (row,) = log.q("SELECT revoked_at IS NOT NULL, revoked_by, revoke_reason, token_hash FROM api_tokens")
    assert row == (True, "bob", "rotated", r["token_hash"])
    # the audit trail has both, with who did them
    assert log.q("SELECT event_type, actor, entity_type, entity_key FROM audit_log ORDER BY \"offset\"") == [
        ("TokenIssued", "alice", "token", f"token:{issued.token_id}"),
        ("TokenRevoked", "bob", "token", f"token:{issued.token_id}")]


def test_the_log_holds_the_hash_never_the_token(log):
    c = log.client("alice")
    issued = issue_token(c, "svc", expires=None)
    assert issued.roles == ("reader",) and issued.expires_at is None  # least privilege by default; never expires
    (encoded,) = c.emitter.encoded
    secret = issued.token[len("mlg_0123456789ab_"):]
    assert issued.token.encode() not in encoded and secret.encode() not in encoded
    assert hashlib.sha256(issued.token.encode()).hexdigest().encode() in encoded
    decoded = Codec().decode(encoded).record
    assert decoded["token_hash"] == hashlib.sha256(issued.token.encode()).hexdigest()
    assert issued.token not in repr(decoded)


def test_revoking_an_unknown_token_changes_nothing(log):
    c = log.client("alice")
    kept = issue_token(c, "svc", ["reader"])
    revoke_token(c, "aaaaaaaaaaaa", reason="typo")
    log.pump()
    assert log.q("SELECT token_id, revoked_at FROM api_tokens") == [(kept.token_id, None)]
    assert log.q("SELECT count(*) FROM log_token_revocations") == [(1,)]  # the fact is kept, and audited


def test_only_the_first_revocation_and_the_first_issue_count(log):
    c = log.client("alice")
    issued = issue_token(c, "svc", ["admin"])
    revoke_token(c, issued.token_id, reason="first")
    revoke_token(log.client("bob"), issued.token_id, reason="second")
    # a second TokenIssued with the same id (a replay with another hash) cannot replace the first one's hash
    env = envelope("TokenIssued", f"token:{issued.token_id}", event_id="01990f5e-0000-7000-8004-000000000099",
                   entity_type="token")
    c.emitter.emit([Event(
        "TokenIssued", f"token:{issued.token_id}",
        {"envelope": env, "token_id": issued.token_id, "principal": "mallory", "roles": ["admin"],
         "token_hash": "0" * 64, "expires_at": None, "description": None})])
    log.pump()
    assert log.q("SELECT principal, token_hash = ?, revoke_reason, revoked_by FROM api_tokens",
                 hashlib.sha256(issued.token.encode()).hexdigest()) == [("svc", True, "first", "alice")]


def test_bad_input_publishes_nothing(log):
    c = log.client("alice")
    for kwargs, field in [({"principal": "bad name!"}, "principal"), ({"roles": []}, "roles"),
                          ({"roles": ["root"]}, "roles"), ({"roles": "reader"}, "roles"),
                          ({"expires": "1y"}, "expires"), ({"expires": timedelta(0)}, "expires"),
                          ({"description": "x" * 9000}, "description")]:
        args = {"principal": "svc", **kwargs}
        with pytest.raises(ValidationError) as err:
            issue_token(c, **args)
        assert err.value.field == field
    with pytest.raises(ValidationError):
        revoke_token(c, "not-an-id")
    assert c.emitter.encoded == []


def test_expiry_as_a_timedelta(log):
    c = log.client("alice")
    issued = issue_token(c, "svc", expires=timedelta(hours=2))
    log.pump()
    assert log.q("SELECT expires_at - issued_at FROM api_tokens") == [(timedelta(hours=2),)]
    assert issued.expires_at is not None


def test_rebuild_equals_live(log, tmp_path):
    """Replaying the whole log at once into a fresh store gives the same views as applying it bit by bit."""
    a, b = log.client("alice"), log.client("bob")
    ids = [issue_token(a, f"svc-{i}", ["writer"], expires="1h" if i % 2 else None).token_id for i in range(5)]
    log.pump()
    revoke_token(b, ids[1])
    revoke_token(b, "bbbbbbbbbbbb")
    log.pump()
    revoke_token(a, ids[3], reason="done")
    log.pump()
    fresh = ViewStore(tmp_path / "rebuilt.duckdb")
    try:
        fresh.apply([RawRecord("t", 0, i, None, b"k", v) for i, v in enumerate(log.log)], Projector())
        for view in ("api_tokens", "audit_log"):
            live = sorted(map(repr, log.q(f"SELECT * FROM {view}")))
            rebuilt = sorted(map(repr, fresh.reader().execute(f"SELECT * FROM {view}").fetchall()))
            assert live == rebuilt, view
    finally:
        fresh.close()
    assert log.q("SELECT count(*) FILTER (WHERE revoked_at IS NOT NULL), count(*) FROM api_tokens") == [(2, 5)]

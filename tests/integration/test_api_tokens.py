"""API tokens on the real broker and a real processor, through the `modelog token` command:
create prints the token once, list never shows it nor its hash, revoke takes it out of the active
list, and the token is nowhere on the log — only its SHA-256."""

from __future__ import annotations

import hashlib
import json
import re
import uuid

import duckdb
import pytest
from confluent_kafka import Consumer, TopicPartition

from conftest import run_cli
from modelog.consumers.query import sql_arrow

pytestmark = pytest.mark.broker

TOKEN = re.compile(r"mlg_([0-9a-f]{12})_[A-Za-z0-9_\-]{43}")


def q(settings, query):
    return [tuple(r.values()) for r in sql_arrow(query, settings).to_pylist()]


def raw_log(settings, bootstrap, expected: int) -> list[bytes]:
    """Every key and value on every topic of this deployment (tracking, monitoring, alerts, dead letters)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"raw-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "session.timeout.ms": 6000})
    out: list[bytes] = []
    try:
        topics = consumer.list_topics(timeout=10).topics
        consumer.assign([TopicPartition(t, p, 0) for t in settings.metadata_topics if t in topics
                         for p in topics[t].partitions])
        for _ in range(100):
            out.extend(b for m in consumer.consume(100, timeout=0.2) if m.error() is None
                       for b in (m.key() or b"", m.value() or b""))
            if len(out) >= 2 * expected:
                break
    finally:
        consumer.close()
    return out


def test_create_list_revoke_through_the_cli(env, settings, processor, bootstrap, tmp_path):
    out = run_cli(env, "token", "create", "ci-runner", "--role", "writer", "--role", "reader", "--expires", "30d",
                  "--description", "CI pipeline")
    token = out.stdout.strip()
    m = TOKEN.fullmatch(token)
    assert m, out.stdout
    token_id = m.group(1)
    assert "not be shown again" in out.stderr and token_id in out.stderr and token not in out.stderr
    token_hash = hashlib.sha256(token.encode()).hexdigest()

    # right after create, list sees it (create waited for the views); neither the token nor its hash shows
    listed = run_cli(env, "token", "list", "--format", "json")
    rows = json.loads(listed.stdout)
    assert [(r["token_id"], r["principal"], r["roles"], r["description"]) for r in rows] == [
        (token_id, "ci-runner", ["writer", "reader"], "CI pipeline")]
    assert "token_hash" not in rows[0] and rows[0]["issued_by"] == "tester"
    table = run_cli(env, "token", "list").stdout
    assert token_id in table
    for shown in (listed.stdout, table, run_cli(env, "token", "list", "--all", "--format", "csv").stdout):
        assert token not in shown and token_hash[:9] not in shown and token[17:] not in shown

    # the view holds the hash of exactly the printed token; it expires 30 days after it was issued
    assert q(settings, f"SELECT token_hash, date_diff('day', issued_at, expires_at), revoked_at "
                       f"FROM api_tokens WHERE token_id = '{token_id}'") == [(token_hash, 30, None)]

    # a second token, never expiring, stays active after the first is revoked
    other = TOKEN.fullmatch(run_cli(env, "token", "create", "svc", "--role", "admin").stdout.strip()).group(1)

    out = run_cli(env, "token", "revoke", token_id, "--reason", "rotated")
    assert f"revoked token {token_id}" in out.stdout
    active = json.loads(run_cli(env, "token", "list", "--format", "json").stdout)
    assert [r["token_id"] for r in active] == [other]
    every = {r["token_id"]: r for r in json.loads(run_cli(env, "token", "list", "--all", "--format", "json").stdout)}
    assert every[token_id]["status"] == "revoked" and every[token_id]["revoke_reason"] == "rotated"
    assert every[token_id]["revoked_by"] == "tester" and every[other]["status"] == "active"
    assert "token_hash" not in every[token_id]

    # revoking again changes nothing; an unknown id exits 1 with a clear error; a malformed one is refused
    again = run_cli(env, "token", "revoke", token_id)
    assert again.returncode == 0 and "already revoked" in again.stderr
    unknown = run_cli(env, "token", "revoke", "0123456789ab", check=False)
    assert unknown.returncode == 1 and "no token 0123456789ab" in unknown.stderr
    bad = run_cli(env, "token", "revoke", "not-a-token-id", check=False)
    assert bad.returncode != 0 and "12 lowercase hex" in bad.stderr
    bad = run_cli(env, "token", "create", "svc", "--expires", "1y", check=False)
    assert bad.returncode != 0 and "--expires" in bad.stderr and "30d, 12h, 90m" in bad.stderr

    # issuing and revoking are audited
    assert q(settings, "SELECT event_type, actor, entity_key FROM audit_log WHERE entity_type = 'token' "
                       "ORDER BY occurred_at") == [
        ("TokenIssued", "tester", f"token:{token_id}"), ("TokenIssued", "tester", f"token:{other}"),
        ("TokenRevoked", "tester", f"token:{token_id}")]

    # the token is nowhere on the log: not whole, not its secret; its hash is
    records = raw_log(settings, bootstrap, expected=3)
    assert any(token_hash.encode() in r for r in records)
    assert not any(token.encode() in r or token[17:].encode() in r for r in records)

    # rebuild equals live for the tokens
    run_cli(env, "rebuild", "--output", str(tmp_path / "rebuilt.duckdb"))
    processor.stop()
    live = duckdb.connect(str(settings.views_path), read_only=True)
    rebuilt = duckdb.connect(str(tmp_path / "rebuilt.duckdb"), read_only=True)
    try:
        a = sorted(map(repr, live.execute("SELECT * FROM api_tokens").fetchall()))
        b = sorted(map(repr, rebuilt.execute("SELECT * FROM api_tokens").fetchall()))
    finally:
        live.close()
        rebuilt.close()
    assert a == b and len(a) == 2

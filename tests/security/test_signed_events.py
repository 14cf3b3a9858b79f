"""Attacks on "who did it", each on the real broker and processor: the refusal, and nothing changed.

The deployment (conftest ``secured``): alice ran `modelog init` (bootstrap admin), created bob's key, and
turned --require-signatures on. See docs/security.md for the table these tests fill.
"""

from __future__ import annotations

import dataclasses
import uuid

import pytest
from confluent_kafka import Producer

from modelog import Client
from modelog.wire.codec import Codec
from modelog.wire.envelope import now_micros
from modelog.wire.ids import uuid7
from modelog.wire.signing import Signer, write_key
from waiting import wait_until

from conftest import run_cli

pytestmark = pytest.mark.broker


def experiment_record(actor: str, name: str) -> dict:
    return {"envelope": {"event_id": uuid7(), "event_type": "ExperimentCreated", "occurred_at": now_micros(),
                         "actor": {"principal": actor, "kind": "USER"},
                         "source": {"host": "attacker", "pid": 1, "program": "raw-producer", "sdk_version": "0"},
                         "entity": {"type": "experiment", "key": name}},
            "experiment": name, "description": None}


def produce(secured, record: dict, signer: Signer | None, tamper=None, headers=None) -> tuple[tuple[str, int], int]:
    """Produce one record straight to Kafka (no SDK), optionally signed, optionally changed after signing.
    Returns ((topic, partition), offset)."""
    topic = secured.settings.tracking_topic
    value = Codec().encode(record["envelope"]["event_type"], record)
    eid = record["envelope"]["event_id"]
    if headers is None:
        headers = [("modelog.event_type", record["envelope"]["event_type"].encode()), ("modelog.event_id", eid.encode())]
        if signer is not None:
            headers += signer.headers(topic, eid, value)
    if tamper is not None:
        value = tamper(value)
    return produce_raw(secured, value, headers, record["envelope"]["entity"]["key"].encode()), value, headers


def produce_raw(secured, value: bytes, headers, key: bytes) -> tuple[tuple[str, int], int]:
    got = []
    p = Producer({"bootstrap.servers": secured.settings.bootstrap})
    p.produce(secured.settings.tracking_topic, key=key, value=value, headers=headers,
              on_delivery=lambda err, msg: got.append((err, msg.partition(), msg.offset())))
    p.flush(30)
    (err, partition, offset), = got
    assert err is None, err
    return (secured.settings.tracking_topic, partition), offset


def experiments(secured, name: str) -> list[dict]:
    return secured.sql(f"SELECT * FROM experiments WHERE experiment = '{name}'")


def test_unsigned_events_are_accepted_unverified_before_the_policy(secured):
    (row,) = secured.sql(f"SELECT actor, verified, key_id FROM audit_log WHERE event_id = '{secured.unsigned_before_policy}'")
    assert row == {"actor": "dave", "verified": False, "key_id": None}
    boot = secured.sql("SELECT actor, verified, key_id FROM audit_log WHERE event_type = 'KeyRegistered' "
                       "AND actor = 'alice' ORDER BY event_id")
    assert boot and all(r["verified"] and r["key_id"] == secured.keys["alice"] for r in boot)


def test_a_signed_event_shows_its_principal_as_verified(secured):
    bob = Client(dataclasses.replace(secured.settings, principal="bob"))
    try:
        bob.create_experiment("bobs-experiment")
        bob.wait_projected(30)
    finally:
        bob.close()
    (row,) = secured.sql("SELECT actor, verified, key_id FROM audit_log WHERE event_type = 'ExperimentCreated' "
                         "AND entity_key = 'bobs-experiment'")
    assert row == {"actor": "bob", "verified": True, "key_id": secured.keys["bob"]}
    import json

    listed = json.loads(run_cli(secured.env, "keys", "list", "--format", "json").stdout)
    assert {(k["principal"], k["key_id"], k["status"]) for k in listed} >= {("bob", secured.keys["bob"], "active")}
    assert run_cli(secured.env, "keys", "revoke", "not-a-key-id", check=False).returncode == 2  # refused locally


def test_forged_actor_through_modelog_principal_is_refused(secured, tmp_path):
    # carol has a registered key of her own ...
    run_cli(secured.env, "keys", "create", "--principal", "carol")
    carol_file = secured.key_file("carol")
    wait_until(lambda: secured.sql("SELECT 1 FROM signing_keys WHERE principal = 'carol'"), 30, "carol's key")
    before = secured.snapshot()
    # ... and claims to be bob: MODELOG_PRINCIPAL=bob with her own key
    out = run_cli(secured.as_("bob", MODELOG_SIGNING_KEY=str(carol_file)), "access", "grant", "bob", "approver")
    assert out.returncode == 0  # publishing is not where it is caught: the processor is
    dl = secured.dead_letter("actor_mismatch", "actor 'bob'")
    assert "a key of 'carol'" in dl["detail"]
    # ... or with no key at all: unsigned, refused under --require-signatures
    mallory = tmp_path / "home-without-keys"
    run_cli({**secured.as_("bob"), "MODELOG_HOME": str(mallory)}, "access", "grant", "bob", "maintainer")
    secured.dead_letter("unsigned", "unsigned AccessChanged by 'bob'")
    assert secured.snapshot() == before


def test_forged_actor_through_the_actor_field_is_refused(secured):
    bob_key = Signer.from_pem(secured.key_file("bob").read_bytes())
    before = secured.snapshot()
    (tp, offset), _, _ = produce(secured, experiment_record("alice", "forged-by-bob"), bob_key)
    dl = secured.dead_letter("actor_mismatch", "actor 'alice'")
    assert (dl["partition"], dl["offset"]) == (tp[1], offset)
    assert experiments(secured, "forged-by-bob") == []
    assert secured.snapshot() == before


def test_unsigned_event_straight_to_kafka_is_refused_under_require_signatures(secured):
    before = secured.snapshot()
    (tp, offset), _, _ = produce(secured, experiment_record("alice", "unsigned-raw"), None)
    dl = secured.dead_letter("unsigned", "unsigned ExperimentCreated by 'alice'")
    assert (dl["partition"], dl["offset"]) == (tp[1], offset)
    assert experiments(secured, "unsigned-raw") == []
    assert secured.snapshot() == before


def test_a_changed_byte_under_a_valid_signature_is_refused(secured):
    bob_key = Signer.from_pem(secured.key_file("bob").read_bytes())
    record = experiment_record("bob", "tamper-aaaa")

    def tamper(value: bytes) -> bytes:  # still decodes, as another experiment name
        i = value.rindex(b"tamper-aaaa")
        return value[:i] + b"tamper-bbbb" + value[i + len(b"tamper-aaaa"):]

    before = secured.snapshot()
    (tp, offset), _, _ = produce(secured, record, bob_key, tamper=tamper)
    dl = secured.dead_letter("bad_signature", f"key {secured.keys['bob']}")
    assert (dl["partition"], dl["offset"]) == (tp[1], offset)
    assert experiments(secured, "tamper-bbbb") == [] and experiments(secured, "tamper-aaaa") == []
    assert secured.snapshot() == before


def test_a_replayed_event_is_deduplicated(secured):
    bob_key = Signer.from_pem(secured.key_file("bob").read_bytes())
    record = experiment_record("bob", f"replayed-{uuid.uuid4().hex[:6]}")
    (tp, first), value, headers = produce(secured, record, bob_key)
    secured.wait_offsets({tp: first})
    assert len(experiments(secured, record["experiment"])) == 1
    before = secured.snapshot()
    dead_before = secured.sql("SELECT count(*) AS n FROM dead_letters")
    tp2, again = produce_raw(secured, value, headers, record["envelope"]["entity"]["key"].encode())  # same bytes
    assert again > first or tp2 != tp
    secured.wait_offsets({tp2: again})
    eid = record["envelope"]["event_id"]
    assert secured.sql(f"SELECT count(*) AS n FROM audit_log WHERE event_id = '{eid}'") == [{"n": 1}]
    assert secured.sql("SELECT count(*) AS n FROM dead_letters") == dead_before  # a duplicate, not an error
    assert secured.snapshot() == before


def test_an_unknown_key_is_refused(secured):
    stranger = Signer.generate()
    before = secured.snapshot()
    (tp, offset), _, _ = produce(secured, experiment_record("bob", "unknown-key"), stranger)
    dl = secured.dead_letter("unknown_key", stranger.key_id)
    assert (dl["partition"], dl["offset"]) == (tp[1], offset)
    assert experiments(secured, "unknown-key") == []
    assert secured.snapshot() == before


def test_a_revoked_key_is_refused_and_earlier_signatures_still_verify_on_rebuild(secured, tmp_path):
    run_cli(secured.env, "keys", "create", "--principal", "erin")
    run_cli(secured.env, "access", "grant", "erin", "writer")
    erin = Signer.from_pem(secured.key_file("erin").read_bytes())
    wait_until(lambda: secured.sql(f"SELECT 1 FROM signing_keys WHERE key_id = '{erin.key_id}'"), 30, "erin's key")
    (tp, offset), _, _ = produce(secured, experiment_record("erin", "before-revocation"), erin)
    secured.wait_offsets({tp: offset})
    assert experiments(secured, "before-revocation")
    run_cli(secured.env, "keys", "revoke", erin.key_id, "--reason", "laptop stolen")
    wait_until(lambda: secured.sql(f"SELECT status FROM signing_keys WHERE key_id = '{erin.key_id}'")
               == [{"status": "revoked"}], 30, "erin's key is revoked")
    before = secured.snapshot()
    (tp2, offset2), _, _ = produce(secured, experiment_record("erin", "after-revocation"), erin)
    dl = secured.dead_letter("revoked_key", erin.key_id)
    assert (dl["partition"], dl["offset"]) == (tp2[1], offset2)
    assert experiments(secured, "after-revocation") == []
    assert secured.snapshot() == before

    rebuilt = tmp_path / "rebuilt.duckdb"
    run_cli(secured.env, "rebuild", "--output", str(rebuilt))
    import duckdb

    con = duckdb.connect(str(rebuilt), read_only=True)
    try:
        rows = con.execute("SELECT entity_key, actor, verified, key_id FROM audit_log WHERE event_type = "
                           "'ExperimentCreated' AND entity_key LIKE '%revocation'").fetchall()
        dead = con.execute("SELECT reason FROM dead_letters WHERE \"partition\" = ? AND \"offset\" = ?",
                           [tp2[1], offset2]).fetchall()
        live_keys = con.execute("SELECT key_id, status FROM signing_keys ORDER BY key_id").fetchall()
        audit = con.execute("SELECT event_id, actor, verified, key_id FROM audit_log ORDER BY event_id").fetchall()
        refused = con.execute("SELECT \"partition\", \"offset\", reason FROM dead_letters "
                              "ORDER BY \"partition\", \"offset\"").fetchall()
    finally:
        con.close()
    # the whole trail equals the live one: every verdict, verified or refused, is a function of the log
    assert audit == [tuple(r.values()) for r in secured.sql(
        "SELECT event_id, actor, verified, key_id FROM audit_log ORDER BY event_id")]
    assert refused == [tuple(r.values()) for r in secured.sql(
        "SELECT \"partition\", \"offset\", reason FROM dead_letters ORDER BY \"partition\", \"offset\"")]
    assert rows == [("before-revocation", "erin", True, erin.key_id)]
    assert dead == [("revoked_key",)]
    assert live_keys == [(r["key_id"], r["status"]) for r in secured.sql("SELECT key_id, status FROM signing_keys "
                                                                          "ORDER BY key_id")]


def test_key_registration_policy_change_grants_and_tokens_by_a_non_admin_are_refused(secured, tmp_path):
    before = secured.snapshot()
    bob = secured.as_("bob")  # bob's key file is under the shared home: his events are signed, as bob
    run_cli({**bob, "MODELOG_HOME": str(tmp_path / "bob-home")}, "keys", "create", "--principal", "frank",
            MODELOG_SIGNING_KEY=str(secured.key_file("bob")))
    secured.dead_letter("not_admin", "KeyRegistered by 'bob'")
    run_cli(bob, "policy", "set", "--no-require-signatures")
    secured.dead_letter("not_admin", "PolicySet by 'bob'")
    run_cli(bob, "access", "grant", "bob", "admin")
    secured.dead_letter("not_admin", "AccessChanged by 'bob'")
    run_cli(bob, "keys", "revoke", secured.keys["alice"])
    secured.dead_letter("not_admin", "KeyRevoked by 'bob'")
    run_cli(bob, "access", "grant", "bob", "approver", "--model", "credit-risk")  # any role, any scope
    wait_until(lambda: len([d for d in secured.sql("SELECT detail FROM dead_letters WHERE reason = 'not_admin'")
                            if "AccessChanged by 'bob'" in d["detail"]]) == 2, 30, "bob's second grant refused")
    run_cli(bob, "token", "create", "bob", "--role", "admin")  # a token is a way in: admins only
    secured.dead_letter("not_admin", "TokenIssued by 'bob'")
    assert secured.sql("SELECT count(*) AS n FROM api_tokens WHERE principal = 'bob'") == [{"n": 0}]
    assert secured.snapshot() == before
    assert secured.sql("SELECT require_signatures FROM signature_policy") == [{"require_signatures": True}]


def test_a_second_bootstrap_is_refused(secured, tmp_path):
    eve_home = tmp_path / "eve"
    eve = {**secured.as_("eve"), "MODELOG_HOME": str(eve_home)}
    before = secured.snapshot()
    run_cli(eve, "init")
    secured.dead_letter("not_admin", "this log has a bootstrap admin already")
    assert secured.snapshot() == before


def test_the_server_signs_for_its_tokens_principal(secured):
    """The HTTP server's delegate key vouches for the token's principal: shown verified, as that principal."""
    import socket

    import httpx2 as httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run_cli(secured.env, "serve", "--background", "--port", str(port), "--timeout", "120")
    try:
        token = run_cli(secured.env, "token", "create", "gina", "--role", "writer").stdout.strip()
        # the token says what it may do at the API; where gina may write is her grants' (decision 0017)
        run_cli(secured.env, "access", "grant", "gina", "writer", "--experiment", "via-server")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}/api/v1", timeout=30) as api:
            r = api.post("/runs", json={"experiment": "via-server", "name": "r1"},
                         headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 201, r.text
    finally:
        run_cli(secured.env, "serve", "--stop", check=False)
    run_id = r.json()["run_id"]

    def row():
        return secured.sql("SELECT actor, verified, key_id FROM audit_log WHERE event_type = 'RunStarted' "
                           f"AND entity_key = '{run_id}'")

    assert wait_until(row, 30, "the server's event is projected") == [
        {"actor": "gina", "verified": True, "key_id": secured.keys["modelog-server"]}]

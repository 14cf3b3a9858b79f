"""Attacks 28 and 29 (docs/security.md): a subject's personal data after `modelog erase`, and data keys or
plaintext on the wire. On the real broker and processor of the secured deployment (conftest ``secured``:
signatures required, alice the admin) with the SDK and the CLI, as a user would (decision 0018)."""

from __future__ import annotations

import base64
import json
import time
import uuid
from pathlib import Path

import duckdb
import pytest
from confluent_kafka import Consumer, TopicPartition

from modelog import Client
from modelog.wire.sealing import ERASED
from waiting import wait_until

from conftest import Processor, deployment_env, run_cli
from test_signed_events import produce_raw

pytestmark = pytest.mark.broker

SUBJECT = "patient-0042"
EMAIL = "alice.liddell.7f3a@example.org"  # what must be nowhere after the erasure
PHONE = "+44-20-7946-0958-x1"
PLAINTEXTS = (EMAIL.encode(), PHONE.encode())


def read_topics(settings, topics, idle_s: float = 3.0) -> list:
    """Every record of ``topics`` from the beginning, as the broker serves it (value, key and headers).

    Reads past the high watermarks until nothing new has come for ``idle_s``: the embedded broker on
    ``s3://`` can answer a partition's watermark from before its newest records while fetches already
    return them (seen: a record the projector had projected missing from a read that stopped at the
    watermarks)."""
    c = Consumer({"bootstrap.servers": settings.bootstrap, "group.id": f"t-{uuid.uuid4().hex[:8]}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        meta = c.list_topics(timeout=30)
        parts = [TopicPartition(t, p, 0) for t in topics if t in meta.topics for p in meta.topics[t].partitions]
        high = {(tp.topic, tp.partition): c.get_watermark_offsets(tp, timeout=10)[1] for tp in parts}
        c.assign(parts)
        out: list = []
        read = {k: 0 for k in high}
        deadline = time.monotonic() + 120
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            msg = c.poll(0.2)
            if msg is not None and not msg.error():
                out.append(msg)
                read[(msg.topic(), msg.partition())] = msg.offset() + 1
                quiet_since = time.monotonic()
            elif all(read[k] >= h for k, h in high.items()) and time.monotonic() - quiet_since >= idle_s:
                return out
        raise TimeoutError(f"the topics were not read to their ends in 120 s: read {read}, ends {high}")
    finally:
        c.close()


def record_bytes(msg) -> bytes:
    return b"\0".join([msg.value() or b"", msg.key() or b""]
                      + [k.encode() + b"=" + (v or b"") for k, v in (msg.headers() or [])])


def files_holding(root: Path, needles) -> list[str]:
    """The files under ``root`` whose bytes hold any of ``needles``."""
    return sorted(str(p) for p in root.rglob("*") if p.is_file() and any(n in p.read_bytes() for n in needles))


def views(con_or_sql) -> dict:
    q = {"params": "SELECT run_id, key, value, value_type FROM params ORDER BY ALL",
         "tags": "SELECT run_id, key, value FROM tags ORDER BY ALL",
         "erasures": "SELECT subject, key_id, reason, erased_by FROM erasures ORDER BY ALL",
         "sensitive_fields": "SELECT kind, key FROM sensitive_fields ORDER BY ALL"}
    return {k: con_or_sql(v) for k, v in q.items()}


def test_erasure_leaves_no_plaintext_anywhere_and_rebuild_equals_live(secured, tmp_path):
    s = secured
    home = s.settings.home
    run_cli(s.env, "policy", "set", "--sensitive-param", "email", "--sensitive-tag", "phone")
    wait_until(lambda: s.sql("SELECT kind, key FROM sensitive_fields ORDER BY ALL")
               == [{"kind": "param", "key": "email"}, {"kind": "tag", "key": "phone"}], 30, "the sensitive fields")

    alice = Client(s.settings)  # the SDK reads the policy from the views before it publishes
    try:
        with alice.start_run("trial", tags={"phone": PHONE, "site": "leeds"}, subject=SUBJECT) as run:
            run.log_params({"email": EMAIL, "lr": 0.1})
        alice.wait_projected(30)
    finally:
        alice.close()
    assert s.sql(f"SELECT key, value FROM params WHERE run_id = '{run.id}' ORDER BY key") == [
        {"key": "email", "value": EMAIL}, {"key": "lr", "value": "0.1"}]      # readers see plaintext
    assert s.sql(f"SELECT key, value FROM tags WHERE run_id = '{run.id}' ORDER BY key") == [
        {"key": "phone", "value": PHONE}, {"key": "site", "value": "leeds"}]
    assert s.sql(f"SELECT bool_and(verified) AS v FROM audit_log WHERE entity_key = '{run.id}'") == [{"v": True}]

    # attack 29: the log never held the plaintext or the data key -- not in a value, a key or a header
    key_file = json.loads((home / "keystore" / f"{SUBJECT}.json").read_text())
    dek = base64.b64decode(key_file["key"])
    secrets = PLAINTEXTS + (dek, key_file["key"].encode(), dek.hex().encode())
    records = read_topics(s.settings, s.settings.metadata_topics)
    params_record = next(m for m in records if m.key() == run.id.encode() and b"email" in m.value()
                         and b"modelog:sealed:v1:" in m.value())
    assert f"{SUBJECT}:{key_file['key_id']}".encode() in params_record.value()  # sealed, naming subject and key
    assert [m.offset() for m in records if any(x in record_bytes(m) for x in secrets)] == []
    assert b"leeds" in b"".join(m.value() for m in records)  # the grep finds what is there

    # a dead letter of the sealed record (replayed unsigned: refused) holds ciphertext only
    produce_raw(s, params_record.value(), [], params_record.key())
    wait_until(lambda: any(r["value_bytes"] == len(params_record.value())
                           for r in s.sql("SELECT value_bytes FROM dead_letters WHERE reason = 'unsigned'")),
               30, "the replayed sealed record is a dead letter")

    # before the erasure the plaintext is in the views file: the grep after it can fail
    assert files_holding(home, PLAINTEXTS)

    out = run_cli(s.env, "erase", "--subject", SUBJECT, "--reason", "GDPR request 17")
    assert key_file["key_id"] in out.stdout and not (home / "keystore" / f"{SUBJECT}.json").exists()
    wait_until(lambda: s.sql(f"SELECT value FROM params WHERE run_id = '{run.id}' AND key = 'email'")
               == [{"value": ERASED}], 30, "the erased param shows [erased]")
    live = views(lambda q: s.sql(q))
    assert [r for r in live["tags"] if r["run_id"] == run.id] == [
        {"run_id": run.id, "key": "phone", "value": ERASED}, {"run_id": run.id, "key": "site", "value": "leeds"}]
    assert s.sql(f"SELECT value FROM log_tags WHERE run_id = '{run.id}' AND key = 'phone'") == [{"value": ERASED}]
    assert live["erasures"] == [{"subject": SUBJECT, "key_id": key_file["key_id"], "reason": "GDPR request 17",
                                 "erased_by": "alice"}]

    # attack 28: nowhere -- views, the views file's bytes (free blocks, WAL), the processor's log, the
    # dead-letter topic and view, the whole log, a rebuild
    assert s.sql("SELECT count(*) AS n FROM params WHERE value LIKE '%liddell%'") == [{"n": 0}]
    assert files_holding(home, PLAINTEXTS) == []
    records = read_topics(s.settings, s.settings.metadata_topics)
    assert [m.offset() for m in records if any(x in record_bytes(m) for x in secrets)] == []
    assert any(m.topic() == s.settings.deadletter_topic for m in records)
    rebuilt = tmp_path / "rebuilt.duckdb"
    run_cli(s.env, "rebuild", "--output", str(rebuilt))
    assert files_holding(tmp_path, PLAINTEXTS) == []
    con = duckdb.connect(str(rebuilt), read_only=True)
    try:
        assert views(lambda q: [dict(zip([d[0] for d in con.execute(q).description], r))
                                for r in con.execute(q).fetchall()]) == views(lambda q: s.sql(q))
    finally:
        con.close()


def test_the_lake_of_several_workers_never_holds_the_plaintext(bootstrap, tmp_path):
    """With `modelog process --workers 2` the shards append to the lake's Delta tables: their projector
    leaves sealed values sealed, so the lake never holds the plaintext, before or after the erasure, and a
    rebuild from the log equals the lake."""
    from modelog import Settings

    home = tmp_path / "home"
    env = dict(deployment_env(bootstrap, home, "alice"), MODELOG_LAKE=str(tmp_path / "lake"))
    settings = Settings.load(env=env)
    sup = Processor(env, settings, args=("--workers", "2")).start(timeout=90)
    client = Client(settings)
    try:
        run_cli(env, "policy", "set", "--sensitive-param", "email")
        wait_until(lambda: modelog_sql(settings, "SELECT key FROM sensitive_fields") == [{"key": "email"}], 60,
                   "the sensitive fields in the lake")
        with client.start_run("trial", subject=SUBJECT) as run:
            run.log_params({"email": EMAIL, "lr": 0.1})
        client.wait_projected(60)
        (row,) = modelog_sql(settings, f"SELECT value FROM params WHERE run_id = '{run.id}' AND key = 'email'")
        assert row["value"].startswith(f"modelog:sealed:v1:{SUBJECT}:")  # sealed text, not the plaintext
        assert list((tmp_path / "lake" / "log_params").rglob("*.parquet"))  # the Delta table holds the params
        assert list((tmp_path / "lake" / "log_params" / "_delta_log").glob("*.json"))  # (its log: column stats too)
        assert files_holding(tmp_path / "lake", PLAINTEXTS) == []
        run_cli(env, "erase", "--subject", SUBJECT)
        wait_until(lambda: modelog_sql(settings, "SELECT subject FROM erasures") == [{"subject": SUBJECT}], 60,
                   "the erasure in the lake")
        assert files_holding(tmp_path / "lake", PLAINTEXTS) == []
        assert files_holding(home, PLAINTEXTS) == []
        lake_rows = modelog_sql(settings, "SELECT run_id, key, value FROM params ORDER BY ALL")
    finally:
        client.close()
        assert sup.stop() == 0
    run_cli(env, "rebuild", "--output", str(tmp_path / "rebuilt.duckdb"))
    con = duckdb.connect(str(tmp_path / "rebuilt.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT run_id, key, value FROM params ORDER BY ALL").fetchall() == [
            tuple(r.values()) for r in lake_rows]
    finally:
        con.close()


def modelog_sql(settings, query: str) -> list[dict]:
    import modelog

    return modelog.sql_arrow(query, settings).to_pylist()

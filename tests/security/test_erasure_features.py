"""Attacks 28 and 29 for monitored feature columns (docs/security.md): a model's feature columns marked
personal data (`modelog policy set --sensitive-feature MODEL=COLUMN`), logged with `Monitor.log(...,
subject=)`. On the real broker, projector and drift processor (`modelog drift`) of the secured deployment
(decision 0018): the log -- the drift processor's changelog topics included -- holds only ciphertext; readers
and the drift processor see the plaintext; after `modelog erase` the values are gone from the views, the
views file, the processors' logs, a rebuild and the dead letters, and the drift already measured stays."""

from __future__ import annotations

import base64
import json
import os
import struct
import subprocess
import sys
import uuid
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from confluent_kafka import Consumer, TopicPartition

from modelog import Client, Monitor, configure_monitor, log_reference
from waiting import wait_until

from conftest import Processor, deployment_env, run_cli
from test_erasure import files_holding, modelog_sql, record_bytes
from test_signed_events import produce_raw

pytestmark = pytest.mark.broker

SUBJECT = "patient-0099"
OTHER = "patient-0100"
POSTCODES = [f"EH{i}-9ZZ-c0ffee" for i in range(8)]  # what must be nowhere after the erasure
AGES = [63.0625 + i for i in range(8)]                 # exact in binary: searched as text and as Avro doubles
PLAINTEXTS = tuple(p.encode() for p in POSTCODES) + tuple(struct.pack("<d", a) for a in AGES) \
    + tuple(repr(a).encode() for a in AGES)


class Drift:
    """``modelog drift`` as a real child process, logging under its MODELOG_HOME (searched for plaintext)."""

    def __init__(self, env: dict[str, str], home: Path) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MODELOG_")} | env
        self.home = home
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> Drift:
        with open(self.home / "drift-test.log", "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "modelog", "drift", "--loglevel", "info"],
                                         env=self.env, stdout=log, stderr=subprocess.STDOUT)

        def ready() -> bool:
            assert self.proc.poll() is None, (self.home / "drift-test.log").read_text()[-3000:]
            try:
                info = json.loads((self.home / "drift.json").read_text())
            except (OSError, ValueError):
                return False
            return info.get("pid") == self.proc.pid and info.get("ready")

        wait_until(ready, timeout, "the drift processor is ready")
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def read_all_topics(settings) -> list:
    """Every record of every topic on the broker (the drift processor's changelogs included)."""
    c = Consumer({"bootstrap.servers": settings.bootstrap, "group.id": f"t-{uuid.uuid4().hex[:8]}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        meta = c.list_topics(timeout=30)
        parts = [TopicPartition(t, p, 0) for t in meta.topics if not t.startswith("__")
                 for p in meta.topics[t].partitions]
        high = {(tp.topic, tp.partition): c.get_watermark_offsets(tp, timeout=10)[1] for tp in parts}
        c.assign(parts)
        out, done = [], {k for k, h in high.items() if h == 0}
        while len(done) < len(high):
            msg = c.poll(1.0)
            if msg is None or msg.error():
                continue
            out.append(msg)
            if msg.offset() + 1 >= high[(msg.topic(), msg.partition())]:
                done.add((msg.topic(), msg.partition()))
        return out
    finally:
        c.close()


def monitoring_views(sql) -> dict:
    q = {"predictions": "SELECT request_id, features, feature_text FROM predictions ORDER BY request_id",
         "drift_windows": 'SELECT "window", rows, dataset_drift FROM drift_windows ORDER BY ALL',
         "drift_metrics": 'SELECT "window", "column", score, drift, n_cur FROM drift_metrics ORDER BY ALL'}
    return {k: sql(v) for k, v in q.items()}


def as_dicts(rows: list[dict]) -> list[dict]:
    """MAP columns as dicts (DuckDB gives dicts; the SQL endpoint's Arrow, lists of pairs)."""
    return [{k: dict(v) if isinstance(v, list) else v for k, v in r.items()} for r in rows]


def test_sensitive_feature_values_are_sealed_readable_measured_then_erased_everywhere(secured, tmp_path):
    s = secured
    home = s.settings.home
    run_cli(s.env, "policy", "set", "--sensitive-feature", "clinic-risk=postcode", "--sensitive-feature",
            "clinic-risk=age")
    wait_until(lambda: s.sql("SELECT kind, key, model FROM sensitive_fields ORDER BY key") == [
        {"kind": "feature", "key": "age", "model": "clinic-risk"},
        {"kind": "feature", "key": "postcode", "model": "clinic-risk"}], 30, "the sensitive feature columns")
    drift = Drift(s.env, home).start()
    alice = Client(s.settings)
    try:
        ref = pd.DataFrame({"postcode": [f"EH{i % 5}-1AA" for i in range(200)],
                            "age": [20.0 + i % 50 for i in range(200)], "income": [40.0 + i % 30 for i in range(200)]})
        log_reference("clinic-risk", 1, ref, client=alice)
        configure_monitor("clinic-risk", window_rows=4, client=alice)
        alice.flush()
        with Monitor("clinic-risk", "ward-b", version=1, client=alice, batch_rows=4) as m:
            for i in range(8):
                m.log({"postcode": POSTCODES[i], "age": AGES[i], "income": 50.0 + i}, prediction=0.5,
                      request_id=f"q{i}", subject=SUBJECT if i < 6 else OTHER)
        wait_until(lambda: s.sql("SELECT count(*) AS n FROM drift_windows WHERE model = 'clinic-risk'")
                   == [{"n": 2}], 60, "two windows measured by the drift processor")
        rows = as_dicts(s.sql("SELECT request_id, features, feature_text FROM predictions "
                              "WHERE model = 'clinic-risk' ORDER BY request_id"))
        assert [(r["request_id"], r["features"]["age"], r["feature_text"]["postcode"]) for r in rows] == [
            (f"q{i}", AGES[i], POSTCODES[i]) for i in range(8)]      # readers see plaintext
        measured = s.sql('SELECT "column", n_cur FROM drift_metrics WHERE model = \'clinic-risk\' AND "window" = 0 '
                         "ORDER BY ALL")
        assert {"column": "postcode", "n_cur": 4} in measured and {"column": "age", "n_cur": 4} in measured  # opened

        # attack 29: no record of any topic -- the drift changelogs included -- holds a value or the data key
        key_file = json.loads((home / "keystore" / f"{SUBJECT}.json").read_text())
        dek = base64.b64decode(key_file["key"])
        secrets = PLAINTEXTS + (dek, key_file["key"].encode(), dek.hex().encode())
        records = read_all_topics(s.settings)
        assert any("changelog" in m.topic() for m in records)  # the drift processor's state is in the search
        batch = next(m for m in records if m.key() == b"monitor:clinic-risk" and b"modelog:sealed:v1:" in m.value())
        assert [(m.topic(), m.offset()) for m in records if any(x in record_bytes(m) for x in secrets)] == []
        assert struct.pack("<d", 50.0) in b"".join(m.value() or b"" for m in records)  # the grep finds what is there

        # a dead letter of the sealed batch (replayed unsigned: refused) holds ciphertext only
        produce_raw(s, batch.value(), [], batch.key())
        wait_until(lambda: any(r["value_bytes"] == len(batch.value())
                               for r in s.sql("SELECT value_bytes FROM dead_letters WHERE reason = 'unsigned'")),
                   30, "the replayed sealed batch is a dead letter")
        assert files_holding(home, PLAINTEXTS[:8])  # the views file holds them before the erasure

        before = monitoring_views(s.sql)
        run_cli(s.env, "erase", "--subject", SUBJECT, "--reason", "GDPR request 19")
        wait_until(lambda: as_dicts(s.sql("SELECT feature_text FROM predictions WHERE request_id = 'q0'"))
                   == [{"feature_text": {"postcode": None}}], 30, "the erased values are gone")
        rows = as_dicts(s.sql("SELECT request_id, features, feature_text FROM predictions "
                              "WHERE model = 'clinic-risk' ORDER BY request_id"))
        assert [(r["features"]["age"], r["feature_text"]["postcode"], r["features"]["income"]) for r in rows] == [
            (None, None, 50.0 + i) for i in range(6)] + [(AGES[i], POSTCODES[i], 50.0 + i) for i in (6, 7)]
        after = monitoring_views(s.sql)
        assert after["drift_windows"] == before["drift_windows"]      # drift measured stays as recorded
        assert after["drift_metrics"] == before["drift_metrics"]

        # attack 28: nowhere -- views file, projector and drift logs (under home), topics, a rebuild
        erased = PLAINTEXTS[:6] + PLAINTEXTS[8:14] + PLAINTEXTS[16:22]
        assert files_holding(home, erased) == []
        records = read_all_topics(s.settings)
        assert [(m.topic(), m.offset()) for m in records if any(x in record_bytes(m) for x in secrets)] == []
    finally:
        alice.close()
        drift.stop()
    rebuilt = tmp_path / "rebuilt.duckdb"
    run_cli(s.env, "rebuild", "--output", str(rebuilt))
    assert files_holding(tmp_path, erased) == []
    con = duckdb.connect(str(rebuilt), read_only=True)
    try:
        assert as_dicts(monitoring_views(lambda q: [dict(zip([d[0] for d in con.execute(q).description], r))
                                                     for r in con.execute(q).fetchall()])["predictions"]) \
            == as_dicts(after["predictions"])
        assert monitoring_views(lambda q: [dict(zip([d[0] for d in con.execute(q).description], r))
                                           for r in con.execute(q).fetchall()])["drift_metrics"] == after["drift_metrics"]
    finally:
        con.close()


def test_the_lake_of_several_workers_never_holds_a_sensitive_feature_value(bootstrap, tmp_path):
    """With `modelog process --workers 2` the shards open nothing: a sealed feature column reaches the lake as
    no entry of the feature maps, never as plaintext, before or after the erasure; a rebuild equals the lake."""
    from modelog import Settings

    home = tmp_path / "home"
    env = dict(deployment_env(bootstrap, home, "alice"), MODELOG_LAKE=str(tmp_path / "lake"))
    settings = Settings.load(env=env)
    sup = Processor(env, settings, args=("--workers", "2")).start(timeout=90)
    client = Client(settings)
    try:
        run_cli(env, "policy", "set", "--sensitive-feature", "clinic-risk=postcode")
        wait_until(lambda: modelog_sql(settings, "SELECT key FROM sensitive_fields") == [{"key": "postcode"}], 60,
                   "the sensitive fields in the lake")
        with Monitor("clinic-risk", "ward-b", client=client) as m:
            for i in range(3):
                m.log({"postcode": POSTCODES[i], "income": 50.0 + i}, request_id=f"q{i}", subject=SUBJECT)
        client.flush()
        wait_until(lambda: len(modelog_sql(settings, "SELECT request_id FROM predictions")) == 3, 60,
                   "the predictions in the lake")
        rows = as_dicts(modelog_sql(settings, "SELECT request_id, features, feature_text FROM predictions "
                                              "ORDER BY request_id"))
        assert [(r["features"], r["feature_text"]) for r in rows] == [({"income": 50.0 + i}, {}) for i in range(3)]
        assert list((tmp_path / "lake" / "log_predictions").rglob("*.parquet"))  # the lake's Delta table
        assert files_holding(tmp_path / "lake", PLAINTEXTS[:3]) == []
        run_cli(env, "erase", "--subject", SUBJECT)
        wait_until(lambda: modelog_sql(settings, "SELECT subject FROM erasures") == [{"subject": SUBJECT}], 60,
                   "the erasure in the lake")
        assert files_holding(tmp_path / "lake", PLAINTEXTS[:3]) == []
        assert files_holding(home, PLAINTEXTS[:3]) == []
        lake_rows = as_dicts(modelog_sql(settings, "SELECT request_id, features, feature_text FROM predictions "
                                                   "ORDER BY request_id"))
    finally:
        client.close()
        assert sup.stop() == 0
    run_cli(env, "rebuild", "--output", str(tmp_path / "rebuilt.duckdb"))
    con = duckdb.connect(str(tmp_path / "rebuilt.duckdb"), read_only=True)
    try:
        q = "SELECT request_id, features, feature_text FROM predictions ORDER BY request_id"
        assert as_dicts([dict(zip([d[0] for d in con.execute(q).description], r))
                         for r in con.execute(q).fetchall()]) == lake_rows
    finally:
        con.close()

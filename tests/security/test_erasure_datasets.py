"""Attacks 28 and 29 for dataset URIs (docs/security.md): a dataset whose URIs are personal data
(`modelog policy set --sensitive-dataset NAME`) logged in a run with a subject. On the real broker and
processor of the secured deployment, with the SDK and the CLI (decision 0018): the log holds only
ciphertext, readers see the plaintext, `modelog erase` leaves none anywhere, lineage still works and a
rebuild equals live."""

from __future__ import annotations

import base64
import json

import duckdb
import pandas as pd
import pytest

from modelog import Client
from modelog.wire.sealing import ERASED
from waiting import wait_until

from conftest import Processor, deployment_env, run_cli
from test_erasure import files_holding, modelog_sql, read_topics, record_bytes
from test_signed_events import produce_raw

pytestmark = pytest.mark.broker

SUBJECT = "patient-0077"
URI = "s3://clinic/patients/lorina.liddell.9c1d/visits.parquet"  # what must be nowhere after the erasure
PLAINTEXTS = (URI.encode(), b"lorina.liddell")
OPEN_URI = "s3://open-data/weather.parquet"


def dataset_views(sql) -> dict:
    q = {"dataset_versions": "SELECT name, version, uri FROM dataset_versions ORDER BY ALL",
         "datasets": "SELECT name, latest_version, latest_uri FROM datasets ORDER BY ALL",
         "lineage_edges": "SELECT src, relation, dst, role FROM lineage_edges ORDER BY ALL",
         "erasures": "SELECT subject, key_id, reason, erased_by FROM erasures ORDER BY ALL"}
    return {k: sql(v) for k, v in q.items()}


def test_a_sensitive_dataset_uri_is_sealed_readable_then_erased_everywhere(secured, tmp_path):
    s = secured
    home = s.settings.home
    run_cli(s.env, "policy", "set", "--sensitive-dataset", "visits")
    wait_until(lambda: s.sql("SELECT kind, key FROM sensitive_fields") == [{"kind": "dataset", "key": "visits"}],
               30, "the sensitive dataset")

    alice = Client(s.settings)
    try:
        with alice.start_run("trial", subject=SUBJECT) as run:
            dv = run.log_dataset("visits", pd.DataFrame({"x": [1, 2, 3]}), role="train", uri=URI)
            run.log_dataset("weather", pd.DataFrame({"t": [1.5]}), role="validation", uri=OPEN_URI)
        alice.wait_projected(30)
    finally:
        alice.close()
    # readers see the plaintext; lineage keys on name@version
    assert s.sql(f"SELECT uri FROM dataset_versions WHERE node = '{dv.node}'") == [{"uri": URI}]
    assert s.sql("SELECT latest_uri FROM datasets WHERE name = 'visits'") == [{"latest_uri": URI}]
    assert s.sql(f"SELECT src, role FROM lineage_edges WHERE dst = 'run:{run.id}' ORDER BY ALL") == [
        {"src": dv.node, "role": "train"}, {"src": s.sql(
            "SELECT latest_node FROM datasets WHERE name = 'weather'")[0]["latest_node"], "role": "validation"}]

    # attack 29: the raw records hold the sealed URI, never the plaintext or the data key
    key_file = json.loads((home / "keystore" / f"{SUBJECT}.json").read_text())
    dek = base64.b64decode(key_file["key"])
    secrets = PLAINTEXTS + (dek, key_file["key"].encode(), dek.hex().encode())
    records = read_topics(s.settings, s.settings.metadata_topics)
    logged = next(m for m in records if m.key() == b"dataset:visits")
    assert f"modelog:sealed:v1:{SUBJECT}:{key_file['key_id']}:".encode() in logged.value()
    assert [m.offset() for m in records if any(x in record_bytes(m) for x in secrets)] == []
    assert OPEN_URI.encode() in b"".join(m.value() for m in records)  # the grep finds what is there

    # a dead letter of the sealed record (replayed unsigned: refused) holds ciphertext only
    produce_raw(s, logged.value(), [], logged.key())
    wait_until(lambda: any(r["value_bytes"] == len(logged.value())
                           for r in s.sql("SELECT value_bytes FROM dead_letters WHERE reason = 'unsigned'")),
               30, "the replayed sealed record is a dead letter")
    assert files_holding(home, PLAINTEXTS)  # the views file holds it before the erasure: the check can fail

    run_cli(s.env, "erase", "--subject", SUBJECT, "--reason", "GDPR request 18")
    wait_until(lambda: s.sql(f"SELECT uri FROM dataset_versions WHERE node = '{dv.node}'") == [{"uri": ERASED}],
               30, "the erased URI shows [erased]")
    live = dataset_views(s.sql)
    assert [r for r in live["datasets"] if r["name"] in ("visits", "weather")] == [
        {"name": "visits", "latest_version": dv.version, "latest_uri": ERASED},
        {"name": "weather", "latest_version": live["datasets"][-1]["latest_version"], "latest_uri": OPEN_URI}]
    assert {"src": dv.node, "relation": "consumed", "dst": f"run:{run.id}", "role": "train"} in live["lineage_edges"]
    assert s.sql("SELECT uri FROM log_dataset_versions WHERE dataset = 'visits'") == [{"uri": ERASED}]

    # attack 28: nowhere -- views, the views file's bytes, the processor's log (in home), dead letters, the log,
    # a rebuild
    assert s.sql("SELECT count(*) AS n FROM dataset_versions WHERE uri LIKE '%liddell%'") == [{"n": 0}]
    assert files_holding(home, PLAINTEXTS) == []
    records = read_topics(s.settings, s.settings.metadata_topics)
    assert [m.offset() for m in records if any(x in record_bytes(m) for x in secrets)] == []
    assert any(m.topic() == s.settings.deadletter_topic for m in records)
    rebuilt = tmp_path / "rebuilt.duckdb"
    run_cli(s.env, "rebuild", "--output", str(rebuilt))
    assert files_holding(tmp_path, PLAINTEXTS) == []
    con = duckdb.connect(str(rebuilt), read_only=True)
    try:
        assert dataset_views(lambda q: [dict(zip([d[0] for d in con.execute(q).description], r))
                                        for r in con.execute(q).fetchall()]) == dataset_views(s.sql)
    finally:
        con.close()


def test_the_lake_of_several_workers_never_holds_a_sensitive_dataset_uri(bootstrap, tmp_path):
    """With `modelog process --workers 2` the lake keeps sealed URIs sealed: never the plaintext, before or
    after the erasure; a rebuild from the log equals the lake."""
    from modelog import Settings

    home = tmp_path / "home"
    env = dict(deployment_env(bootstrap, home, "alice"), MODELOG_LAKE=str(tmp_path / "lake"))
    settings = Settings.load(env=env)
    sup = Processor(env, settings, args=("--workers", "2")).start(timeout=90)
    client = Client(settings)
    try:
        run_cli(env, "policy", "set", "--sensitive-dataset", "visits")
        wait_until(lambda: modelog_sql(settings, "SELECT key FROM sensitive_fields") == [{"key": "visits"}], 60,
                   "the sensitive fields in the lake")
        with client.start_run("trial", subject=SUBJECT) as run:
            run.log_dataset("visits", pd.DataFrame({"x": [1, 2, 3]}), uri=URI)
        client.wait_projected(60)
        (row,) = modelog_sql(settings, "SELECT uri FROM dataset_versions WHERE name = 'visits'")
        assert row["uri"].startswith(f"modelog:sealed:v1:{SUBJECT}:")  # sealed text, not the plaintext
        assert files_holding(tmp_path / "lake", PLAINTEXTS) == []
        run_cli(env, "erase", "--subject", SUBJECT)
        wait_until(lambda: modelog_sql(settings, "SELECT subject FROM erasures") == [{"subject": SUBJECT}], 60,
                   "the erasure in the lake")
        assert files_holding(tmp_path / "lake", PLAINTEXTS) == []
        assert files_holding(home, PLAINTEXTS) == []
        lake_rows = modelog_sql(settings, "SELECT name, version, uri FROM dataset_versions ORDER BY ALL")
    finally:
        client.close()
        assert sup.stop() == 0
    run_cli(env, "rebuild", "--output", str(tmp_path / "rebuilt.duckdb"))
    con = duckdb.connect(str(tmp_path / "rebuilt.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT name, version, uri FROM dataset_versions ORDER BY ALL").fetchall() == [
            tuple(r.values()) for r in lake_rows]
    finally:
        con.close()

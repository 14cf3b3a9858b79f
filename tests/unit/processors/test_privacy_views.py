"""Sensitive params and tags through the SDK (memory emitter) into a real DuckDB file (decision 0018):
the log holds only ciphertext, the views the plaintext; after an erasure the views, the views file's bytes
and a rebuild hold ``[erased]`` and no plaintext, in either order of the run's and the subject's events."""

from __future__ import annotations

import pytest

from modelog import Client, MemoryEmitter, Settings, ValidationError
from modelog.processors.projection import RawRecord
from modelog.processors.projector import Projector
from modelog.processors.store import ViewStore
from modelog.sdk.privacy import erase
from modelog.wire.errors import ConfigError
from modelog.wire.keystore import keystore_for
from modelog.wire.sealing import ERASED
from modelog.wire import prediction_columns
from modelog.wire.codec import Codec

EMAIL = "alice.liddell.7f3a@example.org"
PHONE = "+44-20-7946-0958-x1"
SUBJECT = "patient-0042"


class Log:
    """One partition per Kafka key (as a topic would spread them): ``pump`` applies the new records of the
    partitions in the order asked, so a test can apply the subject's erasure before the run's events."""

    def __init__(self, tmp_path) -> None:
        self.tmp_path = tmp_path
        self.client = Client(Settings.load(env={}, home=tmp_path, principal="alice"), emitter=MemoryEmitter())
        self.client.sealer.set_policy(frozenset({("param", "email"), ("tag", "phone")}))
        self.store = ViewStore(tmp_path / "views.duckdb")
        self.projector = Projector(keys=keystore_for(tmp_path))
        self.records: list[RawRecord] = []
        self.taken = 0
        self.applied: set[int] = set()

    def take(self) -> None:
        em = self.client.emitter
        for ev, value in zip(em.events[self.taken:], em.encoded[self.taken:]):
            self.records.append(RawRecord("t", 0, len(self.records), None, ev.key.encode(), value))
        self.taken = len(em.events)

    def pump(self, first: str | None = None) -> None:
        """Apply every record not applied yet; those whose key starts with ``first`` before the others."""
        self.take()
        new = [r for r in self.records if r.offset not in self.applied]
        new.sort(key=lambda r: 0 if first and r.key.decode().startswith(first) else 1)
        for r in new:  # one record per batch: the later ones see the earlier ones committed
            self.store.apply([r], self.projector)
            self.applied.add(r.offset)

    def q(self, sql: str):
        return self.store.reader().execute(sql).fetchall()

    def file_bytes(self) -> bytes:
        return b"".join(p.read_bytes() for p in self.tmp_path.glob("views.duckdb*"))


@pytest.fixture
def log(tmp_path):
    lg = Log(tmp_path)
    yield lg
    lg.store.close()


def _log_a_run(c: Client) -> str:
    with c.start_run("trial", tags={"phone": PHONE, "site": "leeds"}, subject=SUBJECT) as run:
        run.log_params({"email": EMAIL, "lr": 0.1})
        run.set_tag("phone", PHONE + "-2")
    return run.id


def _views(log: Log):
    return (log.q("SELECT run_id, key, value, value_type FROM params ORDER BY ALL"),
            log.q("SELECT run_id, key, value FROM tags ORDER BY ALL"),
            log.q("SELECT run_id, key, value FROM log_tags ORDER BY ALL"),
            log.q("SELECT subject, key_id, reason, erased_by FROM erasures ORDER BY ALL"))


def test_the_log_holds_ciphertext_and_the_views_plaintext(log):
    rid = _log_a_run(log.client)
    log.take()
    raw = b"".join(r.value + r.key for r in log.records)
    assert EMAIL.encode() not in raw and PHONE.encode() not in raw
    assert b"leeds" in raw and b"0.1" in raw  # what is not sensitive stays plain
    log.pump()
    assert log.q("SELECT key, value FROM params ORDER BY key") == [("email", EMAIL), ("lr", "0.1")]
    assert log.q("SELECT key, value FROM tags ORDER BY key") == [("phone", PHONE + "-2"), ("site", "leeds")]
    assert log.q("SELECT field, key, subject FROM log_sealed ORDER BY ALL") == [
        ("param", "email", SUBJECT), ("tag", "phone", SUBJECT), ("tag", "phone", SUBJECT)]
    assert log.q("SELECT count(*) FROM dead_letters") == [(0,)]
    assert rid


@pytest.mark.parametrize("erasure_first", [False, True], ids=["run-then-erasure", "erasure-then-run"])
def test_after_an_erasure_no_view_no_file_byte_and_no_rebuild_holds_the_plaintext(log, tmp_path, erasure_first):
    _log_a_run(log.client)
    if not erasure_first:
        log.pump()
        log.store.checkpoint()  # the plaintext in the file's blocks, not only in its WAL
        assert EMAIL.encode() in (tmp_path / "views.duckdb").read_bytes()  # the check below can fail
    key_id = keystore_for(tmp_path).get(SUBJECT).key_id
    assert erase(log.client, SUBJECT, "request 17") == [key_id]
    assert keystore_for(tmp_path).get(SUBJECT) is None
    log.pump(first="subject:" if erasure_first else None)
    params, tags, tag_history, erasures = _views(log)
    assert [(k, v) for _, k, v, _ in params] == [("email", ERASED), ("lr", "0.1")]
    assert [(k, v) for _, k, v in tags] == [("phone", ERASED), ("site", "leeds")]
    assert [(k, v) for _, k, v in tag_history] == [("phone", ERASED), ("phone", ERASED), ("site", "leeds")]
    assert erasures == [(SUBJECT, key_id, "request 17", "alice")]
    log.store.checkpoint()
    data = log.file_bytes()
    assert EMAIL.encode() not in data and PHONE.encode() not in data

    rebuilt = ViewStore(tmp_path / "rebuilt.duckdb")
    try:
        rebuilt.apply(log.records, Projector(keys=keystore_for(tmp_path)))
        again = Log.__new__(Log)
        again.store = rebuilt
        assert _views(again) == (params, tags, tag_history, erasures)
    finally:
        rebuilt.close()


def test_a_forged_erasure_of_a_key_that_still_exists_erases_live_and_in_a_rebuild_alike(log, tmp_path):
    _log_a_run(log.client)
    key_id = keystore_for(tmp_path).get(SUBJECT).key_id
    log.client.publish("SubjectErased", "subject", f"subject:{SUBJECT}", subject=SUBJECT, key_ids=[key_id])
    log.pump()
    assert log.q("SELECT value FROM params WHERE key = 'email'") == [(ERASED,)]
    rebuilt = ViewStore(tmp_path / "rebuilt.duckdb")
    try:
        rebuilt.apply(list(reversed(log.records)), Projector(keys=keystore_for(tmp_path)))
        assert rebuilt.reader().execute("SELECT value FROM params WHERE key = 'email'").fetchall() == [(ERASED,)]
    finally:
        rebuilt.close()


def test_a_sensitive_value_without_a_subject_is_refused_and_not_published(log):
    c = log.client
    with c.start_run("trial") as run:
        n = len(c.emitter.events)
        with pytest.raises(ValidationError, match="subject=") as info:
            run.log_params({"email": EMAIL})
        assert EMAIL not in str(info.value)
        with pytest.raises(ValidationError, match="subject="):
            run.set_tags({"phone": PHONE})
        with pytest.raises(ValidationError, match="subject="):
            run.set_tag("nickname", "bob", sensitive=True)
        assert len(c.emitter.events) == n
        run.log_param("lr", 0.1)  # not sensitive: published as before


def test_sensitive_true_seals_a_key_the_policy_does_not_name(log):
    with log.client.start_run("trial", subject=SUBJECT) as run:
        run.log_param("nickname", "bobby-tables", sensitive=True)
    log.take()
    assert not any(b"bobby-tables" in r.value for r in log.records)
    log.pump()
    assert log.q("SELECT value FROM params WHERE key = 'nickname'") == [("bobby-tables",)]


def test_a_run_with_a_subject_refuses_to_publish_when_the_policy_cannot_be_read(tmp_path):
    c = Client(Settings.load(env={}, home=tmp_path, principal="alice"), emitter=MemoryEmitter())
    with c.start_run("trial", subject=SUBJECT) as run:  # no views file, no processor: the policy is unknown
        with pytest.raises(ConfigError, match="sensitive-fields policy"):
            run.log_params({"email": EMAIL})
        run.log_param("nickname", "x", sensitive=True)  # what the call marks is sealed all the same
    assert not any(EMAIL.encode() in v for v in c.emitter.encoded)


def test_the_policy_names_the_sensitive_fields(log):
    from modelog.sdk.privacy import set_sensitive

    set_sensitive(log.client, params=["email"], tags=["phone", "address"])
    log.pump()
    assert log.q("SELECT kind, key FROM sensitive_fields ORDER BY ALL") == [
        ("param", "email"), ("tag", "address"), ("tag", "phone")]
    assert log.q("SELECT count(*) FROM policies") == [(0,)]  # the approval rules are untouched
    set_sensitive(log.client)
    log.pump()
    assert log.q("SELECT count(*) FROM sensitive_fields") == [(0,)]


# -- dataset URIs (modelog policy set --sensitive-dataset NAME) --

URI = "s3://clinic/patients/alice.liddell.7f3a/visits.parquet"  # a URI naming the person


def _log_visits(c: Client, uri: str = URI) -> tuple[str, str]:
    import pandas as pd

    c.sealer.set_policy(frozenset({("param", "email"), ("tag", "phone"), ("dataset", "visits")}))
    with c.start_run("trial", subject=SUBJECT) as run:
        dv = run.log_dataset("visits", pd.DataFrame({"x": [1, 2, 3]}), role="train", uri=uri)
        run.log_dataset("weather", pd.DataFrame({"t": [1.5]}), uri="s3://open/weather.parquet")
    assert dv.uri == uri  # the caller keeps its plaintext
    return run.id, dv.version


def _dataset_views(log: Log):
    return (log.q("SELECT name, version, uri FROM dataset_versions ORDER BY ALL"),
            log.q("SELECT name, latest_version, latest_uri FROM datasets ORDER BY ALL"),
            log.q("SELECT src, relation, dst, role FROM lineage_edges ORDER BY ALL"))


def test_a_sensitive_dataset_uri_is_ciphertext_in_the_log_and_plaintext_in_the_views(log):
    rid, version = _log_visits(log.client)
    log.take()
    raw = b"".join(r.value + r.key for r in log.records)
    assert URI.encode() not in raw and b"alice.liddell" not in raw
    assert b"s3://open/weather.parquet" in raw  # a dataset the policy does not name stays plain
    log.pump()
    versions, latest, edges = _dataset_views(log)
    assert [(n, u) for n, _, u in versions] == [("visits", URI), ("weather", "s3://open/weather.parquet")]
    assert latest[0] == ("visits", version, URI)
    assert (f"dataset:visits@{version}", "consumed", f"run:{rid}", "train") in edges  # lineage keys on name@version
    assert log.q("SELECT field, run_id, key, subject FROM log_sealed WHERE field = 'dataset'") == [
        ("dataset", None, "visits", SUBJECT)]
    assert log.q("SELECT count(*) FROM dead_letters") == [(0,)]


@pytest.mark.parametrize("erasure_first", [False, True], ids=["run-then-erasure", "erasure-then-run"])
def test_after_an_erasure_a_dataset_uri_is_erased_and_lineage_still_works(log, tmp_path, erasure_first):
    rid, version = _log_visits(log.client)
    if not erasure_first:
        log.pump()
        log.store.checkpoint()
        assert URI.encode() in (tmp_path / "views.duckdb").read_bytes()  # the check below can fail
    erase(log.client, SUBJECT)
    log.pump(first="subject:" if erasure_first else None)
    versions, latest, edges = _dataset_views(log)
    assert [(n, u) for n, _, u in versions] == [("visits", ERASED), ("weather", "s3://open/weather.parquet")]
    assert [(n, u) for n, _, u in latest] == [("visits", ERASED), ("weather", "s3://open/weather.parquet")]
    assert (f"dataset:visits@{version}", "consumed", f"run:{rid}", "train") in edges
    assert log.q("SELECT uri FROM log_dataset_versions WHERE dataset = 'visits'") == [(ERASED,)]
    log.store.checkpoint()
    assert URI.encode() not in log.file_bytes()

    rebuilt = ViewStore(tmp_path / "rebuilt.duckdb")
    try:
        rebuilt.apply(list(reversed(log.records)), Projector(keys=keystore_for(tmp_path)))
        again = Log.__new__(Log)
        again.store = rebuilt
        assert _dataset_views(again) == (versions, latest, edges)
    finally:
        rebuilt.close()


def test_register_dataset_seals_for_its_subject_and_refuses_a_sensitive_dataset_without_one(log):
    import pandas as pd

    c = log.client
    c.sealer.set_policy(frozenset({("dataset", "visits")}))
    n = len(c.emitter.events)
    with pytest.raises(ValidationError, match="subject=") as info:
        c.register_dataset("visits", pd.DataFrame({"x": [1]}), uri=URI)
    assert URI not in str(info.value) and len(c.emitter.events) == n  # nothing published
    with pytest.raises(ValidationError, match="subject"):
        c.register_dataset("visits", pd.DataFrame({"x": [1]}), uri=URI, subject="not an id!")
    c.register_dataset("visits", pd.DataFrame({"x": [1]}), uri=URI, subject=SUBJECT)
    log.take()
    assert not any(URI.encode() in r.value for r in log.records)
    log.pump()
    assert log.q("SELECT uri FROM dataset_versions") == [(URI,)]


def test_a_sealed_uri_copied_to_another_dataset_version_does_not_open(log):
    from modelog.wire.sealing import is_sealed

    _log_visits(log.client)
    em = log.client.emitter
    (sealed,) = [e.record for e in em.events if e.event_type == "DatasetVersionLogged" and is_sealed(e.record["uri"])]
    log.client.publish("DatasetVersionLogged", "dataset", "dataset:other",
                       **{**{k: v for k, v in sealed.items() if k != "envelope"}, "dataset": "other"})
    log.pump()
    assert log.q("SELECT uri FROM dataset_versions WHERE name = 'other'") == [(ERASED,)]
    assert log.q("SELECT uri FROM dataset_versions WHERE name = 'visits'") == [(URI,)]


def test_the_policy_names_sensitive_datasets(log):
    from modelog.sdk.privacy import set_sensitive

    set_sensitive(log.client, params=["email"], datasets=["visits"])
    log.pump()
    assert log.q("SELECT kind, key FROM sensitive_fields ORDER BY ALL") == [("dataset", "visits"), ("param", "email")]
    with pytest.raises(ValidationError, match="sensitive dataset key"):
        set_sensitive(log.client, datasets=["-not-a-name"])


# -- monitored feature columns (modelog policy set --sensitive-feature MODEL=COLUMN) --

POSTCODE = "EH1-1AA-7f3a"  # a feature value that is personal data


def _monitor(c: Client, **kw):
    from modelog import Monitor
    from modelog.sdk.privacy import feature_key

    c.sealer.set_policy(frozenset({("feature", feature_key("credit-risk", "postcode")),
                                   ("feature", feature_key("credit-risk", "age"))}))
    return Monitor("credit-risk", "prod", client=c, batch_rows=100, **kw)


def _predictions(log: Log):
    return log.q("SELECT request_id, features, feature_text FROM predictions ORDER BY request_id")


def test_a_sensitive_feature_column_is_ciphertext_in_the_log_and_plaintext_in_the_views(log):
    with _monitor(log.client) as m:
        m.log({"postcode": POSTCODE, "age": 41.5, "income": 52_000}, "approve", request_id="r1", subject=SUBJECT)
        m.log({"postcode": None, "age": 30.0, "income": 48_000}, "deny", request_id="r2", subject="patient-0043")
        with pytest.raises(ValidationError, match="subject=") as info:
            m.log({"postcode": POSTCODE, "income": 1}, "deny")  # no subject: refused, not buffered
        assert POSTCODE not in str(info.value)
        m.log({"income": 7}, "deny", request_id="r3")  # no sensitive column: no subject needed
    log.take()
    raw = b"".join(r.value for r in log.records)
    assert POSTCODE.encode() not in raw and b"41.5" not in raw
    (batch,) = [e.record for e in log.client.emitter.events if e.event_type == "PredictionsLogged"]
    for c in batch["columns"]:  # a sealed column keeps no plaintext buffer beside its sealed values
        if c.get("sealed"):
            assert (c.get("values"), c.get("valid"), c.get("codes"), c.get("dictionary") or []) == (None, None, None, [])
    cols = {c["name"]: c for c in prediction_columns.to_lists(batch)["columns"]}
    assert cols["postcode"]["sealed"]["kind"] == "TEXT" and cols["postcode"]["strings"] == []
    assert cols["postcode"]["sealed"]["values"][1:] == [None, None]  # missing stays missing, r3 has none
    assert cols["age"]["sealed"]["kind"] == "NUMBER" and cols["income"]["numbers"] == [52_000.0, 48_000.0, 7.0]
    log.pump()
    rows = _predictions(log)
    assert [(rid, f.get("age"), f["income"], t.get("postcode")) for rid, f, t in rows] == [
        ("r1", 41.5, 52_000.0, POSTCODE), ("r2", 30.0, 48_000.0, None), ("r3", None, 7.0, None)]
    assert log.q("SELECT key, request_id, subject FROM log_sealed WHERE field = 'feature' ORDER BY ALL") == [
        ("age", "r1", SUBJECT), ("age", "r2", "patient-0043"), ("postcode", "r1", SUBJECT)]


@pytest.mark.parametrize("erasure_first", [False, True], ids=["predictions-then-erasure", "erasure-then-predictions"])
def test_after_an_erasure_the_subjects_feature_values_are_gone_and_rebuild_equals_live(log, tmp_path, erasure_first):
    with _monitor(log.client) as m:
        m.log({"postcode": POSTCODE, "age": 41.5, "income": 52_000}, request_id="r1", subject=SUBJECT)
        m.log({"postcode": "G1-2BB", "age": 30.0, "income": 48_000}, request_id="r2", subject="patient-0043")
    if not erasure_first:
        log.pump()
        log.store.checkpoint()
        assert POSTCODE.encode() in (tmp_path / "views.duckdb").read_bytes()  # the check below can fail
    erase(log.client, SUBJECT)
    log.pump(first="subject:" if erasure_first else None)
    rows = _predictions(log)
    assert [(rid, f, t) for rid, f, t in rows] == [
        ("r1", {"age": None, "income": 52_000.0}, {"postcode": None}),  # the subject's values: gone
        ("r2", {"age": 30.0, "income": 48_000.0}, {"postcode": "G1-2BB"})]  # another subject's: kept
    log.store.checkpoint()
    assert POSTCODE.encode() not in log.file_bytes()
    rebuilt = ViewStore(tmp_path / "rebuilt.duckdb")
    try:
        rebuilt.apply(list(reversed(log.records)), Projector(keys=keystore_for(tmp_path)))
        again = Log.__new__(Log)
        again.store = rebuilt
        assert _predictions(again) == rows
    finally:
        rebuilt.close()


def test_a_sealed_feature_value_copied_to_another_row_does_not_open(log):
    from modelog.processors.privacy import open_column
    from modelog.wire.sealing import opener

    with _monitor(log.client) as m:
        m.log({"postcode": POSTCODE}, request_id="r1", subject=SUBJECT)
    (batch,) = [e.record for e in log.client.emitter.events if e.event_type == "PredictionsLogged"]
    (col,) = [c for c in batch["columns"] if c["name"] == "postcode"]
    open_value = opener(keystore_for(log.tmp_path).get)
    assert open_column("credit-risk", col, ["r1"], open_value)[0]["strings"] == [POSTCODE]
    assert open_column("credit-risk", col, ["r9"], open_value)[0]["strings"] == [None]  # bound to its row
    assert open_column("other-model", col, ["r1"], open_value)[0]["strings"] == [None]


def test_sensitive_features_seals_a_column_the_policy_does_not_name_and_an_unknown_policy_seals_all(tmp_path):
    from modelog import Monitor

    c = Client(Settings.load(env={}, home=tmp_path, principal="svc"), emitter=MemoryEmitter())
    with Monitor("m", "d", client=c, sensitive_features=["zip"]) as m:  # no processor: the policy is unknown
        m.log({"zip": "AB1", "x": 1.0}, request_id="r1", subject=SUBJECT)
        m.log({"x": 2.0}, request_id="r2")  # no subject: its values of the sealed columns are withheld
        m.flush()
        stats = m.stats()
    cols = {col["name"]: col for e in c.emitter.events if e.event_type == "PredictionsLogged"
            for col in e.record["columns"]}
    assert cols["zip"]["sealed"] is not None and cols["x"]["sealed"] is not None  # unknown policy: all sealed
    assert cols["x"]["sealed"]["values"][1] is None and stats["withheld"] == 1
    assert not any(b"AB1" in v for v in c.emitter.encoded)


def test_the_drift_state_keeps_sealed_values_in_its_chunks_and_opens_them_when_a_window_closes(log):
    from modelog.processors.drift_app import DriftState

    with _monitor(log.client) as m:
        for i in range(3):
            m.log({"postcode": f"{POSTCODE}-{i}", "age": 40.0 + i}, request_id=f"r{i}", subject=SUBJECT)
        m.flush()
        m.log({"postcode": "G1-2BB", "age": 30.0}, request_id="r3", subject="patient-0043")
    em = log.client.emitter  # the batches as the drift processor reads them (decoded)
    first, second = [Codec().decode(data).record for e, data in zip(em.events, em.encoded)
                     if e.event_type == "PredictionsLogged"]
    state = DriftState({}, {}, {"credit-risk": {"window_rows": 2}}, {}, {}, {}, keys=keystore_for(log.tmp_path))
    (closed,) = state.add_predictions(first, 0)
    assert POSTCODE not in repr(state.chunks) and "42.0" not in repr(state.chunks)  # the changelog: ciphertext
    assert closed["columns"]["postcode"]["values"] == [f"{POSTCODE}-0", f"{POSTCODE}-1"]
    assert closed["columns"]["age"]["values"] == [40.0, 41.0]
    erase(log.client, SUBJECT)  # r2 waits in the open window: its values are missing when the window closes
    (closed,) = state.add_predictions(second, 1)
    assert closed["columns"]["postcode"]["values"] == [None, "G1-2BB"]
    assert closed["columns"]["age"]["values"] == [None, 30.0]

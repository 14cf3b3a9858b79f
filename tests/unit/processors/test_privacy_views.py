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

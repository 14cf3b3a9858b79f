"""A batch the views cannot take (a full disk): the error names the file and the reason, the transaction leaves
nothing behind, and the agent retries the batch until it is written instead of dying (issue 10, disk-full)."""

from __future__ import annotations

import asyncio
import errno
import logging
import subprocess
import uuid

import duckdb
import pytest

from factories import sample_records
from modelog.processors import app
from modelog.processors.projection import RawRecord
from modelog.processors.projector import Projector
from modelog.processors.store import BatchStats, ViewStore, storage_error
from modelog.wire import metric_columns
from modelog.wire.codec import Codec

FULL = ('TransactionContext Error: Failed to commit: Could not write file "/v/views.duckdb.wal": '
        "No space left on device")


def test_storage_errors_are_told_apart_from_other_failures():
    assert storage_error(duckdb.TransactionException(FULL)) == FULL
    assert storage_error(duckdb.IOException("Could not read from file")) == "Could not read from file"
    assert "No space left" in storage_error(OSError(errno.ENOSPC, "No space left on device", "/v/views.duckdb"))
    assert storage_error(duckdb.CatalogException("Table with name x does not exist!")) is None
    assert storage_error(ValueError("No space left on device")) is None  # not the store's error
    assert storage_error(OSError(errno.ENOENT, "No such file")) is None


def test_a_batch_that_cannot_be_written_is_retried_with_backoff_until_it_is(caplog):
    calls, sleeps = [], []
    done = (BatchStats(records=3), [])

    async def apply():
        calls.append(1)
        if len(calls) <= 3:
            raise duckdb.TransactionException(FULL)
        return done

    async def sleep(s):
        sleeps.append(s)

    with caplog.at_level(logging.INFO, logger="modelog.processor"):
        got = asyncio.run(app.apply_until_written(apply, "/v/views.duckdb", sleep=sleep))
    assert got is done and len(calls) == 4
    assert sleeps == [app.RETRY_FIRST, app.RETRY_FIRST * 2, app.RETRY_FIRST * 4]
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1  # one line per stall (again only every RETRY_LOG_EVERY seconds)
    assert errors[0].startswith("cannot write the views at /v/views.duckdb: ") and "No space left on device" in errors[0]
    assert any("projecting resumes" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


def test_other_failures_of_a_batch_are_retried_too_and_the_backoff_is_capped():
    sleeps = []

    async def apply():
        if len(sleeps) < 8:
            raise RuntimeError("the decisions could not be published")
        return "ok"

    async def sleep(s):
        sleeps.append(s)

    assert asyncio.run(app.apply_until_written(apply, "v", sleep=sleep)) == "ok"
    assert max(sleeps) == app.RETRY_MAX and sleeps == sorted(sleeps)


@pytest.fixture
def tmpfs(tmp_path):
    """A 4 MiB tmpfs at tmp_path/views (root only: skipped where mount is not permitted)."""
    where = tmp_path / "views"
    where.mkdir()
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(where)], capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {out.stderr.strip()}")
    yield where
    subprocess.run(["umount", str(where)], capture_output=True)


def metrics_batch(codec: Codec, offset: int, points: int = 5000) -> list[RawRecord]:
    rec = dict(sample_records()["MetricsLogged"])
    rec["envelope"] = dict(rec["envelope"], event_id=str(uuid.uuid4()))
    rec["columns"] = metric_columns.from_points([{"key": f"k{i % 50}", "value": i * 0.37, "step": offset * points + i,
                                                  "timestamp": 1_760_000_000_000_000 + i} for i in range(points)])
    return [RawRecord("t", 0, offset, 1_760_000_000_000, b"k", codec.encode("MetricsLogged", rec))]


def test_a_full_disk_fails_the_commit_with_its_reason_leaves_whole_batches_and_the_batch_goes_in_later(tmpfs):
    codec, projector = Codec(), Projector()
    store = ViewStore(tmpfs / "views.duckdb")
    try:
        offset, failure = 0, None
        while offset < 2000:
            batch = metrics_batch(codec, offset)
            try:
                store.apply(batch, projector)
            except Exception as exc:  # noqa: BLE001 -- the failure under test
                failure = exc
                break
            offset += 1
        assert failure is not None, "the 4 MiB tmpfs never filled"
        # the COMMIT's own error, not the ROLLBACK's "no transaction is active"
        assert storage_error(failure) is not None and "No space left on device" in str(failure), failure
        held = store.con.execute("SELECT count(*), count(DISTINCT event_id) FROM log_metrics").fetchone()
        assert held == (offset * 5000, offset)  # whole batches only
        assert store.positions() == ({("t", 0): offset} if offset else {})
        subprocess.run(["mount", "-o", "remount,size=64m", str(tmpfs)], check=True)
        store.apply(batch, projector)  # the same batch again, on the same connection
        assert store.con.execute("SELECT count(*) FROM log_metrics").fetchone()[0] == (offset + 1) * 5000
        assert store.positions() == {("t", 0): offset + 1}
    finally:
        store.close()


def test_a_failed_statement_is_the_error_raised_not_the_aborted_transaction_after_it():
    """CI, disk-full: the disk filled during an INSERT (not at COMMIT). The failed statement aborted the
    transaction, the cleanup's unregister was then refused ("Current transaction is aborted") and that error
    replaced the cause: the log said "a batch could not be applied" instead of naming the full disk, and the
    scenario waited in vain for "cannot write the views". The cause is raised now."""
    import pyarrow as pa

    from modelog.processors.store import registered

    con = duckdb.connect()
    con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
    con.execute("INSERT INTO t VALUES (1)")
    con.execute("BEGIN TRANSACTION")
    with pytest.raises(duckdb.ConstraintException, match="Duplicate key"):
        with registered(con, "_batch", pa.table({"id": pa.array([1], pa.int32())})):
            con.execute("INSERT INTO t SELECT * FROM _batch")
    con.execute("ROLLBACK")
    with registered(con, "_batch", pa.table({"id": pa.array([2], pa.int32())})):  # usable again after it
        con.execute("INSERT INTO t SELECT * FROM _batch")
    assert con.execute("SELECT id FROM t ORDER BY id").fetchall() == [(1,), (2,)]
    with pytest.raises(duckdb.CatalogException):
        con.execute("SELECT * FROM _batch")  # unregistered after a block that succeeded


def test_a_checkpoint_failing_after_its_commit_keeps_the_batch_and_the_store_opens_the_file_again(tmpfs, caplog):
    """Decision 0029: every commit is written to the WAL first, and DuckDB checkpoints at 4 MB. On a full disk
    the checkpoint inside a COMMIT can fail after the commit is durable; DuckDB then invalidates the database.
    The store opens the file again (the WAL replays the batch), counts the batch as written, and goes on: the
    next batch that cannot be written fails as usual and goes in once there is space."""
    codec, projector = Codec(), Projector()
    store = ViewStore(tmpfs / "views.duckdb")
    try:
        offset = 0
        with caplog.at_level(logging.WARNING, logger="modelog.processors.store"):
            while offset < 2000:
                try:
                    store.apply(metrics_batch(codec, offset), projector)
                except duckdb.Error as exc:
                    assert storage_error(exc) is not None and not isinstance(exc, duckdb.FatalException), exc
                    break
                offset += 1
        reopened = [r.getMessage() for r in caplog.records if "invalidated by DuckDB" in r.getMessage()]
        assert reopened and "No space left on device" in reopened[0], "no checkpoint failed after its commit"
        assert any("was committed before the checkpoint failed: kept" in r.getMessage() for r in caplog.records)
        assert store.con.execute("SELECT count(*), count(DISTINCT event_id) FROM log_metrics").fetchone() == \
            (offset * 5000, offset)
        assert store.positions() == {("t", 0): offset}
        subprocess.run(["mount", "-o", "remount,size=64m", str(tmpfs)], check=True)
        store.apply(metrics_batch(codec, offset), projector)
        store.apply(metrics_batch(codec, offset + 1), projector)
        assert store.positions() == {("t", 0): offset + 2}
    finally:
        store.close()
    again = ViewStore(tmpfs / "views.duckdb")  # what a restart finds: every batch the store counted as written
    try:
        assert again.con.execute("SELECT count(*), count(DISTINCT event_id) FROM log_metrics").fetchone() == \
            ((offset + 2) * 5000, offset + 2)
    finally:
        again.close()


class _Invalidated:
    """A connection whose COMMIT fails the way DuckDB's does when the checkpoint after it failed."""

    def execute(self, sql, *args):
        assert sql == "COMMIT"
        raise duckdb.FatalException("FATAL Error: Transaction COMMIT succeeded and is durable, but the "
                                    "autocheckpoint failed. Failed to create checkpoint: No space left on device")


def test_after_an_invalidated_commit_only_a_batch_the_file_holds_counts_as_written(tmp_path):
    codec, projector = Codec(), Projector()
    store = ViewStore(tmp_path / "views.duckdb")
    try:
        store.apply(metrics_batch(codec, 0, points=10), projector)
        old = store.con
        store._commit(_Invalidated(), metrics_batch(codec, 0, points=10))  # the file has offset 0: kept
        assert store.con is not old  # opened again
        with pytest.raises(duckdb.FatalException):  # offset 1 is not in the file: the batch is retried
            store._commit(_Invalidated(), metrics_batch(codec, 1, points=10))
        store.apply(metrics_batch(codec, 1, points=10), projector)  # the new connection works
        assert store.positions() == {("t", 0): 2}
        assert store.con.execute("SELECT count(*) FROM log_metrics").fetchone()[0] == 20
    finally:
        store.close()

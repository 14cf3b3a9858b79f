"""The drift processor's state after a `kill -9` at any point (issue 10, drift-kill).

A kill keeps every changelog write the broker acknowledged and any subset of those in flight (they go to six
topics, so no order holds between them), and of a publish in flight any subset of its events; the consumer then
resumes at any source offset faust may have committed, which is never past a batch whose settlement was not
acknowledged. Whatever happens, the restarted processor must publish exactly the undisturbed run's windows and
alerts and end with the same state.

The tables are in-memory stand-ins for faust's behind the processor's own :class:`Staged` views, and the batch
loop is the agent's own (:func:`process_batch` with :func:`settle`)."""

from __future__ import annotations

import asyncio
import copy
import random

import numpy as np
import pandas as pd
import pytest

from modelog import Settings
from modelog.drift.profile import profile_frame
from modelog.processors.drift_app import DriftState, encoded_chunk, process_batch, settle, staged_table, until_settled
from modelog.processors.staged import Staged
from modelog.wire.envelope import EventFactory

WINDOW_ROWS, RECORD_ROWS = 50, 20  # records straddle windows: one record closes a window and opens the next
WINDOWS = 12
NAMES = ("references", "ref_columns", "configs", "windows", "chunks", "alerts")


class Killed(Exception):
    pass


class Changelog:
    """What the broker holds of the six changelogs: the acknowledged writes in order, and those in flight."""

    def __init__(self, rng: random.Random) -> None:
        self.rng, self.kill_at, self.steps = rng, None, 0
        self.inflight: list[tuple[str, object, object]] = []
        self.acked: list[tuple[str, object, object]] = []

    def step(self) -> bool:
        self.steps += 1
        return self.steps == self.kill_at

    async def acknowledged(self, futures, what) -> None:
        assert len(futures) == len(self.inflight)
        if self.step():
            self.acked += [w for w in self.inflight if self.rng.random() < 0.5]
            self.inflight = []
            raise Killed
        self.acked += self.inflight
        self.inflight = []

    def restore(self) -> dict[str, dict]:
        tables: dict[str, dict] = {name: {} for name in NAMES}
        for name, key, value in self.acked:
            if value is None:
                tables[name].pop(key, None)
            else:
                tables[name][key] = value
        return tables


class Table:
    """A faust table as :class:`Staged` uses it: ``get``, ``in``, ``data`` and ``send_changelog``."""

    def __init__(self, name: str, log: Changelog, data: dict) -> None:
        self.name, self.log, self.data = name, log, dict(data)

    def get(self, key):
        return self.data.get(key)

    def __contains__(self, key) -> bool:
        return key in self.data

    def send_changelog(self, partition, key, value, value_serializer=None):
        assert partition == 0
        self.log.inflight.append((self.name, key, copy.deepcopy(value)))
        return object()


def _records() -> list[tuple[str, dict]]:
    rng = np.random.default_rng(7)
    ref = pd.DataFrame({"x": rng.normal(size=500), "score": rng.random(500)})
    config = {"model": "m", "window_rows": WINDOW_ROWS, "window_seconds": None, "raise_after": 1,
              "resolve_after": 1}
    out = [("ReferenceProfileLogged", {"model": "m", "version": None, "columns": profile_frame(ref, prediction="score")}),
           ("MonitorConfigured", config)]
    for b in range(WINDOWS * WINDOW_ROWS // RECORD_ROWS):  # calm and drifted in blocks of three windows
        shift = (b * RECORD_ROWS // WINDOW_ROWS) // 3 % 2
        out.append(("PredictionsLogged", {
            "model": "m", "deployment": "d", "version": None, "dropped": 0,
            "request_ids": [f"r{b}-{i}" for i in range(RECORD_ROWS)],
            "timestamps": [1_000_000 * (b * RECORD_ROWS + i) for i in range(RECORD_ROWS)],
            "columns": [{"name": "x", "role": "FEATURE", "numbers": rng.normal(3 * shift, 1, RECORD_ROWS).tolist()},
                        {"name": "score", "role": "PREDICTION",
                         "numbers": (rng.random(RECORD_ROWS) ** (1 + 3 * shift)).tolist()}]}))
        if b == 14:  # a configuration logged again mid-stream (the same rules): a settlement starts there
            out.append(("MonitorConfigured", dict(config)))
    return out


RECORDS = _records()
FACTORY = EventFactory(Settings.load(env={}, principal="modelog-drift"), program="modelog-drift")


def _run(rng: random.Random, kills: int, settle=settle) -> tuple[dict, dict, int]:
    """Feed RECORDS in random batches, settled by ``settle``, killing the processor ``kills`` times at random
    steps; returns (the published events by id, the tables the changelog restores at the end, the kills that
    happened)."""
    published: dict[str, dict] = {}
    log = Changelog(rng)
    done = committed = happened = 0  # done: records whose batch settled (faust may have committed up to it)

    async def publish(events) -> None:
        killed = log.step()
        for e in events:
            if killed and rng.random() < 0.5:
                continue
            payload = {k: v for k, v in e.record.items() if k != "envelope"}
            assert published.setdefault(e.event_id, payload) == payload, "an event id published with another body"
        if killed:
            log.inflight = [w for w in log.inflight if rng.random() < 0.5]
            log.acked += log.inflight
            log.inflight = []
            raise Killed

    while True:
        restored = log.restore()
        state = DriftState(*(staged_table(Table(name, log, restored[name]), partition=lambda: 0) for name in NAMES))
        log.kill_at = log.steps + rng.randint(1, 10) if happened < kills else None
        offset = committed
        try:
            while offset < len(RECORDS):
                n = rng.randint(1, 4)
                items = [(t, r, o, None) for o, (t, r) in enumerate(RECORDS[offset:offset + n], start=offset)]
                asyncio.run(process_batch(state, items, FACTORY, {"predictions": 0, "windows": 0, "alerts": 0},
                                          lambda outputs: settle(outputs, state, publish, log.acknowledged)))
                offset = done = min(len(RECORDS), offset + n)
                if rng.random() < 0.3:  # faust commits from time to time, up to the batches it acknowledged
                    committed = done
            return published, log.restore(), happened
        except Killed:
            happened += 1
            committed = rng.randint(committed, done)  # redelivered from the last commit on


def _without_closed_chunks(tables: dict) -> dict:
    """The tables less the chunks of closed windows, which a kill after the headers leaves undeleted."""
    open_window = tables["windows"]["m/d"]["window"]
    return {**tables, "chunks": {k: v for k, v in tables["chunks"].items() if int(k.split("/")[2]) >= open_window}}


@pytest.fixture(scope="module")
def undisturbed():
    published, kept, _ = _run(random.Random(0), kills=0)
    assert sum(1 for p in published.values() if "drift_share" in p) == WINDOWS
    assert {p["state"] for p in published.values() if "state" in p} == {"RAISED", "RESOLVED"}
    assert kept["windows"]["m/d"]["window"] == WINDOWS and kept["chunks"] == {}
    return published, kept


@pytest.mark.parametrize("seed", range(150))
def test_any_crash_point_keeps_the_windows_alerts_and_tables_of_an_undisturbed_run(seed, undisturbed):
    published, kept, kills = _run(random.Random(seed), kills=5)
    assert kills == 5
    assert sorted(published) == sorted(undisturbed[0])  # no window or alert lost, none added
    assert published == undisturbed[0]  # each measured on the same rows, with the same hysteresis
    assert _without_closed_chunks(kept) == undisturbed[1]  # the same state at the end


def test_the_model_catches_the_unordered_writes_of_before():
    """The model can fail: settling all groups at once (faust's own behaviour: every write sent when made,
    nothing awaited) loses or changes windows under the same kills."""
    async def unordered(outputs, state, publish, acknowledged):
        if outputs:
            await publish(outputs)
        tables = [state.references, state.ref_columns, state.configs, state.windows, state.chunks, state.alerts]
        futures = [f for t in tables for deletes in (False, True) for f in t.send(deletes=deletes)]
        await acknowledged(futures, "all at once")

    def differs(seed: int, expected: tuple[dict, dict]) -> bool:
        try:
            published, kept, _ = _run(random.Random(seed), kills=5, settle=unordered)
        except AssertionError:  # an event id published again with another body
            return True
        return published != expected[0] or _without_closed_chunks(kept) != expected[1]

    expected = _run(random.Random(0), kills=0, settle=unordered)[:2]
    assert sum(differs(seed, expected) for seed in range(60)) > 0


def test_a_staged_write_is_read_back_and_sent_only_when_asked():
    log = Changelog(random.Random(0))
    table = Table("chunks", log, {"a": {"v": 1}, "b": {"v": 2}})
    staged = Staged(table, partition=lambda: 0)
    staged["c"] = {"v": 3}
    assert staged.pop("a") == {"v": 1}
    assert staged.get("a") is None and "a" not in staged and staged.get("c") == {"v": 3} and "b" in staged
    assert log.inflight == [] and table.data == {"a": {"v": 1}, "b": {"v": 2}}  # nothing sent yet
    assert len(staged.send(deletes=False)) == 1
    assert log.inflight == [("chunks", "c", {"v": 3})] and table.data["c"] == {"v": 3} and "a" in table.data
    assert len(staged.send(deletes=True)) == 1
    assert log.inflight[-1] == ("chunks", "a", None) and "a" not in table.data and staged.pending == {}
    with pytest.raises(ValueError, match="table chunks: key 'd': None is a delete"):
        staged["d"] = None


def test_a_chunk_is_encoded_when_sent_and_never_when_its_window_closes_in_the_batch():
    """The chunks table keeps a batch's float columns as arrays while they are staged (a window closed within
    its batch never pays for base64), and sends and stores them encoded; either form loads the same values."""
    from modelog.processors.drift_app import _loaded, _stored

    log = Changelog(random.Random(0))
    staged = staged_table(Table("chunks", log, {}), partition=lambda: 0)
    values = np.array([1.5, np.nan, -2.0])
    staged["w/0/0"] = {"x": _stored("FEATURE", values), "c": _stored("FEATURE", ["a", None, "b"])}
    staged["w/1/0"] = {"x": _stored("FEATURE", values[:1])}
    assert staged.pop("w/1/0")["x"]["array"].tolist() == [1.5]  # closed within the batch
    assert len(staged.send(deletes=False)) == 1
    (_, key, sent), = log.inflight
    assert key == "w/0/0" and set(sent["x"]) == {"role", "f8"} and sent["c"] == {"role": "FEATURE", "values": ["a", None, "b"]}
    assert staged.table.data["w/0/0"] == sent == encoded_chunk(staged.get("w/0/0"))
    np.testing.assert_array_equal(_loaded(sent["x"]), values)
    np.testing.assert_array_equal(_loaded(_stored("FEATURE", values)), values)


def test_a_reference_column_is_kept_with_its_sample_as_bytes_and_measures_the_same():
    """The ref_columns table sends and stores a reference column's 10,000-value sample as base64 float64
    (``sample_f8``) instead of a JSON list; a window measured against the stored form equals one measured
    against the profile as logged, and a column restored in the old form (a list) still measures."""
    from modelog.processors.drift_app import encoded_profile_column
    from modelog.processors.drift_core import MonitorConfig, measure_window, sample_values

    rng = np.random.default_rng(3)
    profile = profile_frame(pd.DataFrame({"x": rng.normal(size=20_000), "y": rng.normal(size=20_000),
                                          "c": rng.choice(["a", "b"], 20_000)}))
    log = Changelog(random.Random(0))
    staged = staged_table(Table("ref_columns", log, {}), partition=lambda: 0)
    for col in profile:
        staged[col["name"]] = col
    staged.send()
    stored = [staged.table.data[col["name"]] for col in profile]
    assert [w[2] for w in log.inflight] == stored
    assert "sample" not in stored[0] and sample_values(stored[0]).tolist() == profile[0]["sample"]
    assert stored[2] == encoded_profile_column(profile[2])
    window = {"x": rng.normal(0.2, 1, 1000), "y": rng.normal(size=1000), "c": list(rng.choice(["a", "b"], 1000))}
    assert measure_window(stored, window, MonitorConfig()) == measure_window(profile, window, MonitorConfig())


def test_a_header_restored_without_its_chunk_is_said_loudly(caplog):
    """What a changelog restored short of its end (tansu on s3:// answering a stale high watermark) leaves: a
    header counting a chunk that is not there. The window is measured on the rows it has, and an error names it."""
    state = DriftState({}, {}, {"m": {"window_rows": 40}}, {}, {}, {})
    predictions = [r for t, r in RECORDS if t == "PredictionsLogged"][:2]
    state.add_predictions(predictions[0], 10)
    state.chunks.pop("m/d/0/0")  # the chunk the header counts, lost
    (closed,) = state.add_predictions(predictions[1], 11)
    assert closed["rows"] == 40 and len(closed["columns"]["x"]["values"]) == 20
    assert "window 0 of m/d: chunk 0 of 2 is missing from the restored state" in caplog.text


class Refused(OSError):
    pass


def _run_with_failures(rng: random.Random, failures: int) -> tuple[dict, dict, dict, int]:
    """Feed RECORDS in random batches through the agent's retry (:func:`until_settled`) while publishes and
    changelog writes fail ``failures`` times at random steps (of the writes in flight then, any subset lands);
    no restart: the batch is run again on the state the failed attempt left. Returns (the published events by
    id, the tables the changelog restores, the tables in memory, the failures that happened)."""
    published: dict[str, dict] = {}
    log = Changelog(rng)
    happened, steps = 0, 0
    at = set(rng.sample(range(1, 30), failures))  # of the 30-45 publishes and changelog waits of a run

    def fail_now() -> bool:
        nonlocal happened, steps
        steps += 1
        if steps in at:
            happened += 1
            log.acked += [w for w in log.inflight if rng.random() < 0.5]
            log.inflight = []
            return True
        return False

    async def publish(events) -> None:
        if fail_now():
            for e in events:  # a publish refused after some of its events landed
                if rng.random() < 0.5:
                    published.setdefault(e.event_id, {k: v for k, v in e.record.items() if k != "envelope"})
            raise Refused("3 event(s) were not delivered")
        for e in events:
            payload = {k: v for k, v in e.record.items() if k != "envelope"}
            assert published.setdefault(e.event_id, payload) == payload, "an event id published with another body"

    async def acknowledged(futures, what) -> None:
        assert len(futures) == len(log.inflight)
        if fail_now():
            raise Refused("changelog write failed")
        log.acked += log.inflight
        log.inflight = []

    async def no_pause(_seconds) -> None:
        pass

    tables = {name: Table(name, log, {}) for name in NAMES}
    state = DriftState(*(staged_table(tables[name], partition=lambda: 0) for name in NAMES))
    staged = [state.references, state.ref_columns, state.configs, state.windows, state.chunks, state.alerts]
    offset = 0
    while offset < len(RECORDS):
        n = rng.randint(1, 4)
        items = [(t, r, o, None) for o, (t, r) in enumerate(RECORDS[offset:offset + n], start=offset)]
        asyncio.run(until_settled(
            lambda: process_batch(state, items, FACTORY, {"predictions": 0, "windows": 0, "alerts": 0},
                                  lambda outputs: settle(outputs, state, publish, acknowledged)),
            lambda: [t.discard() for t in staged], len(items), sleep=no_pause))
        offset += n
    assert steps >= 30, steps
    return published, log.restore(), {name: t.data for name, t in tables.items()}, happened


@pytest.mark.parametrize("seed", range(40))
def test_a_batch_that_cannot_be_settled_is_run_again_to_the_undisturbed_result(seed, undisturbed):
    """The agent never gives a batch up (take_events would acknowledge its records unmeasured): after a refused
    publish or changelog write it runs the batch again on what the failed attempt left in memory."""
    published, kept, memory, failures = _run_with_failures(random.Random(seed), failures=4)
    assert failures == 4
    assert published == undisturbed[0]  # every window and alert, once, measured on the same rows
    assert _without_closed_chunks(memory) == undisturbed[1]


def test_until_settled_says_why_and_when_it_recovers(caplog):
    calls, pauses, discards = [], [], []

    async def run() -> None:
        calls.append(1)
        if len(calls) < 4:
            raise Refused("3 event(s) were not delivered within 60 s")

    async def pause(seconds) -> None:
        pauses.append(seconds)

    asyncio.run(until_settled(run, lambda: discards.append(1), 7, sleep=pause))
    assert len(calls) == 4 and len(discards) == 3
    assert pauses == [0.5, 1.0, 2.0]
    assert ("a batch of 7 records could not be settled: Refused: 3 event(s) were not delivered within 60 s -- "
            "measuring is paused") in caplog.text
    assert caplog.text.count("could not be settled") == 1  # once per RETRY_LOG_EVERY, not per attempt
    assert "settled after" in caplog.text

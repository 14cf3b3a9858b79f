"""The drift processor: a faust app that windows production predictions per deployment, compares
each closed window with the model version's reference profile, and publishes ``DriftMeasured``
(monitoring topic) and ``AlertChanged`` (alerts topic) events.

State lives in faust tables with changelog topics, so a restarted worker recovers its open
windows, references, configuration and alert hysteresis exactly:

* ``references``: model -> {version (text; "None": the default profile): column names}
* ``ref_columns``: "model/version/column" -> ColumnProfile (one entry per column keeps records small)
* ``configs``: model -> MonitorConfigured record
* ``windows``: "model/deployment" -> the open window's header (number, bounds, rows, chunk count,
  the last applied offset: records at or below it are redeliveries and are skipped)
* ``chunks``: "model/deployment/window/n" -> one batch's column values (written once, deleted
  when the window closes, so the changelog carries each value about once)
* ``alerts``: "model/deployment" -> hysteresis state per rule

The consumer group is stable (``<processor_id>-drift``), unlike the projector's: re-measuring
history on every fresh views file would re-raise old alerts. Output event ids are derived from
(model, deployment, window) and (incident, state), so re-publishing after a crash is a duplicate.
All statistics: :mod:`processors.drift_core` (pure).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import weakref

import faust
import numpy as np
from faust.streams import _current_event

from modelog.wire import prediction_columns as _pc
from modelog.wire.codec import Codec
from modelog.wire.schemas import current_schemas
from modelog.wire.home import drift_file
from modelog.wire.settings import Settings
from modelog.wire.emitter import KafkaEmitter
from modelog.wire.errors import DecodeError
from modelog.wire.envelope import Event, EventFactory
from modelog.wire.signing import signer_for
from modelog.wire.topics import ensure_topics

from modelog.wire.keystore import keystore_for
from modelog.wire.sealing import ERASED, Opened, opener

from ._transport import reread_stalled_records
from .app import RETRY_MAX, _write_json, new_faust_app, retry_until_done
from .drift_core import MonitorConfig, measure_window, step_alerts
from .privacy import open_column
from .staged import Staged

log = logging.getLogger("modelog.drift")

_NS = uuid.UUID("6d6f6465-6c6f-6700-8000-647269667421")
_STEPPED = "_window"  # in an alerts entry: the last window the hysteresis was advanced by (rules never start with _)


class DriftState:
    """The window bookkeeping on top of faust tables (plain dict-like objects, so it is unit-testable)."""

    def __init__(self, references, ref_columns, configs, windows, chunks, alerts, keys=None) -> None:
        """``keys``: the data keys sealed feature columns are opened with (decision 0018); None: they are
        measured as missing."""
        self.references, self.ref_columns, self.configs, self.windows, self.chunks, self.alerts = (
            references, ref_columns, configs, windows, chunks, alerts)
        self.keys = keys

    def staged(self) -> bool:
        """Whether writes wait in the tables to be settled (tables are :class:`~.staged.Staged`; plain dicts
        in unit tests have none)."""
        return any(getattr(t, "pending", None) for t in (self.references, self.ref_columns, self.configs,
                                                          self.windows, self.chunks, self.alerts))

    def add_reference(self, r: dict) -> None:
        """Index model -> {version: column names}; one table entry per column (a profile with 10,000-value
        samples of many columns would exceed a Kafka record as one changelog entry)."""
        version = str(r.get("version"))
        names = []
        for col in r["columns"]:
            self.ref_columns[f"{r['model']}\x1f{version}\x1f{col['name']}"] = col
            names.append(col["name"])
        index = dict(self.references.get(r["model"]) or {})
        index[version] = names
        self.references[r["model"]] = index

    def profile_for(self, model: str, version: int | None) -> list[dict] | None:
        refs = self.references.get(model) or {}
        if str(version) in refs:
            key = str(version)
        elif "None" in refs:
            key = "None"
        elif refs:  # the newest version's profile
            numbered = sorted((int(k), k) for k in refs if k.lstrip("-").isdigit())
            key = numbered[-1][1] if numbered else next(iter(refs))
        else:
            return None
        cols = [self.ref_columns.get(f"{model}\x1f{key}\x1f{name}") for name in refs[key]]
        return [c for c in cols if c is not None]

    def config_for(self, model: str) -> MonitorConfig:
        return MonitorConfig.from_record(self.configs.get(model))

    def add_predictions(self, r: dict, offset: int) -> list[dict]:
        """Add one PredictionsLogged record; returns the windows it closed (as measure inputs)."""
        key = f"{r['model']}/{r['deployment']}"
        head = dict(self.windows.get(key) or {"window": None, "rows": 0, "chunks": 0, "dropped": 0,
                                              "start": None, "end": None, "last_offset": -1, "version": None})
        if offset <= head["last_offset"]:
            return []  # redelivered after a restart: already in the window
        cfg = self.config_for(r["model"])
        ids, stamps = r["request_ids"], r["timestamps"]
        # a sealed column's chunk keeps the sealed values (and their request ids, which the AAD binds): the
        # chunks' changelog is a Kafka topic, so plaintext must not reach it; they are opened in memory when
        # the window closes
        cols = [(c["name"], c.get("role", "FEATURE"),
                 c["sealed"]["values"] if c.get("sealed") else column_values(c, len(ids)),
                 c["sealed"]["kind"] if c.get("sealed") else None)
                for c in r["columns"]]
        closed: list[dict] = []
        head["dropped"] += r.get("dropped", 0)
        i, n = 0, len(ids)
        while i < n:
            if cfg.window_seconds:
                bucket = stamps[i] // (cfg.window_seconds * 1_000_000)
                if head["window"] is not None and bucket < head["window"]:
                    head["dropped"] += 1  # late for a closed window: counted, not measured
                    i += 1
                    continue
                if head["window"] is not None and bucket > head["window"] and head["rows"]:
                    closed.append(self._close(key, head, r))
                if head["window"] is None or bucket > head["window"]:
                    head.update(window=int(bucket), rows=0, chunks=0, start=None, end=None)
                j = i
                while j < n and stamps[j] // (cfg.window_seconds * 1_000_000) == bucket:
                    j += 1
            else:
                if head["window"] is None:
                    head["window"] = 0
                room = cfg.window_rows - head["rows"]
                j = min(n, i + room)
            self._chunk(key, head, r, cols, stamps, i, j)
            i = j
            if not cfg.window_seconds and head["rows"] >= cfg.window_rows:
                closed.append(self._close(key, head, r))
                head.update(window=head["window"] + 1, rows=0, chunks=0, start=None, end=None)
        head["last_offset"] = offset
        self.windows[key] = head
        return closed

    def _chunk(self, key: str, head: dict, r: dict, cols, stamps, i: int, j: int) -> None:
        if j <= i:
            return
        ids = r["request_ids"]
        self.chunks[f"{key}/{head['window']}/{head['chunks']}"] = {
            name: _stored(role, values[i:j]) if sealed is None else
            {"role": role, "values": values[i:j], "sealed": sealed, "request_ids": ids[i:j]}
            for name, role, values, sealed in cols}
        head["chunks"] += 1
        head["rows"] += j - i
        lo, hi = min(stamps[i:j]), max(stamps[i:j])
        head["start"] = lo if head["start"] is None else min(head["start"], lo)
        head["end"] = hi if head["end"] is None else max(head["end"], hi)
        if head.get("version") is None:
            head["version"] = r.get("version")

    def _close(self, key: str, head: dict, r: dict) -> dict:
        columns: dict[str, dict] = {}
        open_value = None
        for n in range(head["chunks"]):
            ck = f"{key}/{head['window']}/{n}"
            chunk = self.chunks.get(ck)
            if chunk is None:  # the header counts it: only a changelog restored short of its end loses it
                log.error("window %s of %s: chunk %s of %s is missing from the restored state; the window is "
                          "measured without its rows (was the changelog restored to a stale high watermark?)",
                          head["window"], key, n, head["chunks"])
                chunk = {}
            for name, c in chunk.items():
                values = _loaded(c)
                if c.get("sealed"):
                    if open_value is None:
                        open_value = opener(self.keys.get) if self.keys is not None else (lambda f, v: Opened(ERASED))
                    col = {"name": name, "sealed": {"kind": c["sealed"], "values": values}}
                    opened, _ = open_column(r["model"], col, c["request_ids"], open_value)
                    values = opened["strings"] if c["sealed"] == "TEXT" else opened["numbers"]
                columns.setdefault(name, {"role": c["role"], "parts": []})["parts"].append(values)
            self.chunks.pop(ck, None)
        for c in columns.values():
            c["values"] = _joined(c.pop("parts"))
        closed = {"model": r["model"], "deployment": r["deployment"], "version": head.get("version"),
                  "window": head["window"], "window_start": head["start"], "window_end": head["end"],
                  "rows": head["rows"], "dropped": head["dropped"], "columns": columns}
        head["dropped"] = 0
        head["version"] = None
        return closed

    def measure(self, closed: dict) -> tuple[dict | None, list[dict]]:
        """(DriftMeasured payload, AlertChanged payloads) for one closed window; (None, []) without a reference."""
        model, deployment = closed["model"], closed["deployment"]
        profile = self.profile_for(model, closed["version"])
        if profile is None:
            log.warning("no reference profile for %s (version %s): window %s of %s not measured",
                        model, closed["version"], closed["window"], deployment)
            return None, []
        cfg = self.config_for(model)
        values = {name: c["values"] for name, c in closed["columns"].items() if c["role"] == "FEATURE"}
        pred_ref = next((p["name"] for p in profile if p["role"] == "PREDICTION"), None)
        pred_cols = [c["values"] for c in closed["columns"].values() if c["role"] == "PREDICTION"]
        if pred_ref and pred_cols:
            values[pred_ref] = pred_cols[0]
        measured = measure_window(profile, values, cfg)
        drift = {"model": model, "deployment": deployment, "version": closed["version"], "window": closed["window"],
                 "window_start": closed["window_start"], "window_end": closed["window_end"],
                 "rows": closed["rows"], "dropped": closed["dropped"], **measured}
        key = f"{model}/{deployment}"
        saved = dict(self.alerts.get(key) or {})
        stepped = saved.pop(_STEPPED, None)
        if stepped is not None and stepped >= closed["window"]:
            # measured again after a crash that kept the alert state of this window but not the header that
            # closed it: its changes were published before the state was written (crash-safe order)
            return drift, []
        state, changes = step_alerts(saved, measured, cfg, closed["window"], model, deployment)
        self.alerts[key] = {**state, _STEPPED: closed["window"]}
        return drift, changes


CONTROL = ("ReferenceProfileLogged", "MonitorConfigured")
WATCHED = (*CONTROL, "PredictionsLogged")


def apply_record(state: DriftState, event_type: str, record: dict, offset: int, factory: EventFactory,
                 totals: dict) -> list[Event]:
    """Apply one decoded monitoring record to the state; return the drift and alert events it produced."""
    outputs: list[Event] = []
    if event_type == "ReferenceProfileLogged":
        state.add_reference(record)
    elif event_type == "MonitorConfigured":
        state.configs[record["model"]] = {k: v for k, v in record.items() if k != "envelope"}
    elif event_type == "PredictionsLogged":
        totals["predictions"] += len(record["request_ids"])
        for closed in state.add_predictions(record, offset):
            drift, changes = state.measure(closed)
            if drift is not None:
                outputs.extend(output_events(factory, drift, changes))
                totals["windows"] += 1
                totals["alerts"] += len(changes)
    return outputs


async def process_batch(state: DriftState, items: list, factory: EventFactory, totals: dict, settle_batch,
                        on_item=None) -> None:
    """Apply a batch of (event type, record, source offset, context) items and make it durable with
    ``settle_batch(outputs)``. A reference or a configuration starts a new settlement: what came before it is
    made durable first, so a restart that re-reads a prediction never sees a configuration logged after it
    (its header, written with the prediction's, skips it)."""
    outputs: list[Event] = []
    for event_type, record, offset, context in items:
        if on_item is not None:
            on_item(context)
        if event_type in CONTROL and (outputs or state.staged()):
            await settle_batch(outputs)
            outputs = []
        outputs.extend(apply_record(state, event_type, record, offset, factory, totals))
    await settle_batch(outputs)


async def until_settled(run, discard, records: int, sleep=asyncio.sleep) -> None:
    """``await run()`` (one batch: :func:`process_batch`) until it succeeds (:func:`.app.retry_until_done`:
    backoff, an error line naming the reason). After a failure -- a publish refused past
    ``MODELOG_FLUSH_TIMEOUT``, a changelog write the broker did not take -- its staged writes are discarded
    (``discard()``) before it runs again.

    The batch must not be given up: faust's take_events acknowledges a batch's records when the agent asks
    for the next one, whatever became of it, so a batch that raised out of the agent would be committed
    unmeasured. Running it again on the state the failed attempt left is a redelivery of its records, which
    the state is built to absorb (:func:`settle`): what was sent is kept and skipped, the rest is applied."""
    async def attempt() -> None:
        try:
            await run()
        except Exception:
            discard()
            raise

    def failed(exc: Exception, paused: str, first: bool) -> None:
        log.error("a batch of %d records could not be settled: %s: %s -- measuring is paused%s; the batch is "
                  "retried every %.0f s at most", records, type(exc).__name__, exc, paused, RETRY_MAX)

    _, paused_s = await retry_until_done(attempt, failed, sleep)
    if paused_s is not None:
        log.warning("a batch of %d records settled after %.0f s of retries: measuring again", records, paused_s)


async def settle(outputs: list[Event], state: DriftState, publish, acknowledged) -> None:
    """Make a batch durable in the crash-safe order (decision 0008): its drift and alert events
    (``await publish(outputs)``, acknowledged), then the values, references, configurations and alert states
    it wrote, then the window headers that count them, then the deletes of closed windows' chunks; each group
    acknowledged (``await acknowledged(futures, what)``) before the next is sent, and all before faust may
    commit the batch's source offsets (take_events acks them when the loop asks for the next batch).

    A kill between two groups leaves a state that re-reading the uncommitted records repairs: chunks are
    rewritten under the same keys, a window closed again is published under the same event ids, and the
    alert state knows the last window it counted. A kill after the headers only leaves closed windows'
    chunks undeleted."""
    if outputs:
        await publish(outputs)
    values = [state.references, state.ref_columns, state.configs, state.chunks, state.alerts]
    for group, deletes in ((values, False), ([state.windows], False), (values + [state.windows], True)):
        futures = [f for table in group for f in table.send(deletes=deletes)]
        if futures:
            await acknowledged(futures, "drift state")


async def acknowledged(futures: list, what: str, warn_every: float = 30.0) -> None:
    """Wait for every changelog send in ``futures`` to be acknowledged by the broker (a send's error is
    raised); say every ``warn_every`` seconds how many are still outstanding, so a wait is never silent."""
    pending = {asyncio.ensure_future(f) for f in futures}
    started = time.monotonic()
    while pending:
        done, pending = await asyncio.wait(pending, timeout=warn_every)
        for f in done:
            f.result()
        if pending:
            log.warning("%s: %d of %d changelog writes not acknowledged after %.0f s", what, len(pending),
                        len(futures), time.monotonic() - started)


def column_values(column: dict, rows: int) -> np.ndarray | list:
    """A PredictionsLogged column's values for the window: a float64 array (NaN = missing) for numbers in
    buffers (decision 0025), a list of texts (None = missing) for text in buffers, the list otherwise."""
    if _pc.is_buffer(column):
        a = _pc.decode(column, rows)
        if isinstance(a, _pc.NumberColumn):
            if a.valid is None:
                return a.values
            return np.where(a.valid, a.values, np.nan)
        return np.array([*a.dictionary, None], dtype=object)[a.codes].tolist()  # code -1: the trailing None
    return column.get("numbers") or column.get("strings") or [None] * rows


def _stored(role: str, values: np.ndarray | list) -> dict:
    """A chunk column as the batch stages it: numbers in buffers stay an array until the chunk is sent to the
    changelog (:func:`encoded_chunk`); a window that closes within its batch never encodes them."""
    if isinstance(values, np.ndarray):
        return {"role": role, "array": values}
    return {"role": role, "values": values}


def encoded_chunk(chunk: dict) -> dict:
    """A chunk as the chunks table's changelog keeps it (JSON): numbers in buffers as base64 float64 bytes."""
    return {name: {"role": c["role"], "f8": base64.b64encode(np.ascontiguousarray(c["array"], "<f8")).decode("ascii")}
            if "array" in c else c for name, c in chunk.items()}


def encoded_profile_column(column: dict) -> dict:
    """A reference column as the ref_columns table's changelog keeps it (JSON): the sample as base64 float64
    bytes (``sample_f8``; :func:`~.drift_core.sample_values` reads either form). 10,000 floats in JSON took
    ~20 ms per column to write, bytes take well under 1 ms."""
    if "sample" not in column:
        return column
    out = {k: v for k, v in column.items() if k != "sample"}
    out["sample_f8"] = base64.b64encode(np.asarray(column["sample"], "<f8").tobytes()).decode("ascii")
    return out


_ENCODERS = {"chunks": encoded_chunk, "ref_columns": encoded_profile_column}


def staged_table(table, **kwargs) -> Staged:
    """One of the drift processor's tables behind its :class:`~.staged.Staged` view: the chunks table encodes
    a chunk (:func:`encoded_chunk`) and the ref_columns table a reference column (:func:`encoded_profile_column`)
    only when it is sent."""
    return Staged(table, encode=_ENCODERS.get(table.name), **kwargs)


def _loaded(c: dict) -> np.ndarray | list:
    if "array" in c:
        return c["array"]
    if "f8" in c:
        return np.frombuffer(base64.b64decode(c["f8"]), "<f8")
    return c["values"]


def _joined(parts: list) -> np.ndarray | list:
    """A window's column from its chunks: one array if every chunk is an array, else one list."""
    if all(isinstance(p, np.ndarray) for p in parts):
        return np.concatenate(parts) if parts else np.empty(0)
    out: list = []
    for p in parts:
        out.extend(p.tolist() if isinstance(p, np.ndarray) else p)
    return out


def output_events(factory: EventFactory, drift: dict, changes: list[dict]) -> list[Event]:
    key = f"monitor:{drift['model']}"
    out = [factory.make("DriftMeasured", "monitor", key, **drift)]
    out[0].record["envelope"]["event_id"] = str(uuid.uuid5(_NS, f"drift:{drift['model']}/{drift['deployment']}/"
                                                                 f"{drift['window']}"))
    for c in changes:
        e = factory.make("AlertChanged", "monitor", key, **c)
        e.record["envelope"]["event_id"] = str(uuid.uuid5(_NS, f"alert:{c['alert_id']}:{c['state']}"))
        out.append(e)
    return out


DEFAULT_TOPIC_PREFIX = "modelog."


def drift_app_id(settings: Settings) -> str:
    """The drift processor's faust app id: its consumer group and the prefix of its changelog topics.

    ``<MODELOG_PROCESSOR_ID>-drift``, with the topic prefix in the middle when it is not the default
    (``modelog-projector-staging-drift`` for ``staging.``): two deployments on one broker that differ by
    their topic prefix must not share windows, references and alert state (the second one's windows were
    taken for redeliveries of the first's and never measured). It still starts with the processor id, which
    the ACLs of deploy/kafka-acls.sh grant by prefix; the default prefix keeps the name deployments have.
    """
    prefix = settings.topic_prefix.strip(".")
    if settings.topic_prefix == DEFAULT_TOPIC_PREFIX or not prefix:
        return f"{settings.processor_id}-drift"
    return f"{settings.processor_id}-{prefix}-drift"


def create_drift_app(settings: Settings, on_ready=None) -> faust.App:
    # a window chunk (one predictions batch) in the changelog can exceed Kafka's 1 MB default
    app = new_faust_app(settings, drift_app_id(settings), producer_max_request_size=16 * 1024 * 1024)
    tables = [app.Table(name, default=None, partitions=settings.partitions)
              for name in ("references", "ref_columns", "configs", "windows", "chunks", "alerts")]
    staged = [staged_table(t) for t in tables]
    state = DriftState(*staged, keys=keystore_for(settings.home))
    source = app.topic(settings.monitoring_topic, key_type=bytes, value_type=bytes)
    codec = Codec()
    ignored = frozenset(current_schemas()) - set(WATCHED)
    factory = EventFactory(settings.replace(principal=settings.processor_id, actor_kind="SERVICE"),
                           program="modelog-drift")
    # signed with the key of the principal its events carry, the processor id (modelog init creates it)
    emitter = KafkaEmitter(settings, signer=signer_for(settings, settings.processor_id))
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="modelog-drift")
    totals = {"predictions": 0, "windows": 0, "alerts": 0}

    def publish(events: list[Event]) -> None:
        emitter.emit(events)
        emitter.flush()

    async def publish_acknowledged(events: list[Event]) -> None:
        await asyncio.get_running_loop().run_in_executor(executor, publish, events)

    async def settle_batch(outputs: list[Event]) -> None:
        await settle(outputs, state, publish_acknowledged, acknowledged)

    def discard() -> None:
        for table in staged:
            table.discard()

    @app.agent(source)
    async def watch(stream):
        async for events in stream.take_events(200, within=0.05):
            async with app.consumer.working(events) as events:  # in order from each partition's next offset
                await handle(events)

    async def handle(events) -> None:
        """One batch of monitoring records: decoded, applied, made durable (:func:`until_settled`)."""
        items = []
        for e in events:
            if codec.event_type(e.message.value) in ignored:
                continue  # its own measurements and alerts, and the other monitoring events: not decoded
            try:
                decoded = codec.decode(e.message.value)
            except DecodeError as exc:  # the projector dead-letters it (with this reason)
                m = e.message
                log.warning("%s/%s/%s not decodable, skipped: %s", m.topic, m.partition, m.offset, exc)
                continue
            items.append((decoded.event_type, decoded.record, e.message.offset, e))
        # take_events() yields a list: each event is made "current" so that a table write is staged for
        # its partition's changelog, as it would be in a per-event stream iteration
        await until_settled(lambda: process_batch(state, items, factory, totals, settle_batch,
                                                  on_item=lambda e: _current_event.set(weakref.ref(e))),
                            discard, len(items))

    reread_stalled_records(app)

    if on_ready is not None:
        @app.on_rebalance_complete.connect
        async def _ready(sender, **kwargs) -> None:
            on_ready(totals)

    app.modelog_totals = totals  # type: ignore[attr-defined]
    return app


def run_drift(settings: Settings, loglevel: str = "warning") -> None:
    """Run the drift processor in the foreground until SIGINT/SIGTERM (``modelog drift``)."""
    settings.home.mkdir(parents=True, exist_ok=True)
    ensure_topics(settings)
    path = drift_file(settings)
    info = {"pid": os.getpid(), "bootstrap": settings.resolve_bootstrap(), "started_at": time.time(), "ready": False}
    _write_json(path, info)

    def on_ready(_totals) -> None:
        if not info["ready"]:
            info.update(ready=True, ready_at=time.time())
            _write_json(path, info)

    app = create_drift_app(settings, on_ready=on_ready)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    try:
        worker.execute_from_commandline()
    finally:
        try:
            if json.loads(path.read_text()).get("pid") == os.getpid():
                path.unlink()
        except (OSError, ValueError):
            pass


__all__ = ["DriftState", "apply_record", "create_drift_app", "drift_file", "encoded_chunk", "encoded_profile_column",
           "output_events", "process_batch", "run_drift", "settle", "staged_table", "until_settled"]

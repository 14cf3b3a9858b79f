"""The projector: a faust app whose agent projects the tracking, monitoring and alerts topics into DuckDB.

The agent is a short loop: take a batch of records -> decode, validate, dedupe
and write them in one DuckDB transaction (in a worker thread) -> publish the
dead letters -> faust acks the batch, and commits the offsets after that
(at-least-once; the store makes redelivery harmless).

The consumer group is ``<processor_id>-<views instance id>``: a fresh views file
starts a fresh group and so replays the whole log, while a restart of the same
file resumes where its group left off.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import faust

from modelog.wire.settings import Settings
from modelog.wire.emitter import KafkaEmitter
from modelog.wire.envelope import Event, EventFactory
from modelog.wire.keystore import keystore_for
from modelog.wire.home import free_port, processor_file
from modelog.wire.signing import signer_for
from modelog.wire.topics import ensure_topics

from . import _transport
from .chain import Chain, raw_headers
from .decider import Decider
from .projection import RawRecord
from .projector import Projector
from .query_server import QueryLimits, QueryServer
from .lake import lake_for, reader_for
from .shards import PUBLISH_INTERVAL, ShardSet
from .store import BatchStats, ViewStore, storage_error
from .trust_reader import TrustReader

log = logging.getLogger("modelog.processor")

BATCH_RECORDS = 500  # records per transaction (each MetricsLogged record holds up to 5000 points)
BATCH_WITHIN = 0.05  # seconds: a partial batch is applied after this long
# records faust may hold for the agent before it pauses fetching: ~30 MB of 120 KB columnar batches, several
# transactions' worth (BATCH_BYTES); 1,000 held ~120 MB more at the projector's peak with 10^7 points, and
# W's throughput was the same with 250 (docs/benchmarks.md, "Projector memory")
STREAM_BUFFER = BATCH_RECORDS // 2
# encoded bytes per transaction: a batch of 500 per-point records of 5,000 points each decoded into ~2.5M
# Python objects per column (the projector peaked at ~1 GiB with 10^7 points, bench/growth.py); 8 MB of Avro
# is ~300k points. Columnar batches (decision 0021) decode into arrays over their bytes instead.
BATCH_BYTES = 8 * 1024 * 1024
# a batch that could not be written (a full disk, an I/O error) is retried after this long, doubling up to
# RETRY_MAX, for as long as it takes: nothing after it is acknowledged meanwhile
RETRY_FIRST = 0.5
RETRY_MAX = 10.0
RETRY_LOG_EVERY = 60.0  # seconds between the repeated error lines of one stall


def malloc_trim():
    """glibc's ``malloc_trim`` (None with another C library). The projector calls it once a second: Arrow
    allocates through malloc in its process (``run_processor``), and glibc keeps the pages of freed batches
    in its arenas; trimming hands them back (peak RSS at 10^7 points ~20 MiB lower, p90 ~28 MiB; docs/
    benchmarks.md, "Projector memory")."""
    import ctypes

    try:
        trim = ctypes.CDLL(None).malloc_trim  # the process's own symbols: libc's, whatever its file is called
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def by_size(records: list[RawRecord], max_bytes: int) -> list[list[RawRecord]]:
    """Split ``records`` in order into runs of at most ``max_bytes`` of values (a larger record alone)."""
    out: list[list[RawRecord]] = []
    size = 0
    for r in records:
        n = len(r.value or b"")
        if not out or (out[-1] and size + n > max_bytes):
            out.append([])
            size = 0
        out[-1].append(r)
        size += n
    return out


class TickFailures:
    """A periodic task's failures, logged and survived: the timer runs again and retries what failed.

    A faust timer whose coroutine raises crashes the whole app. The projector's checkpoint tick publishes
    ``LogCheckpoint`` events and raised ``DeliveryError`` when the broker was down longer than
    ``MODELOG_FLUSH_TIMEOUT`` (the ``broker-outage`` scenario, 120 s down, killed the projector). A failed
    tick commits nothing (the checkpoints stay due), so the next tick retries it; the error is logged with
    its reason on the first failure and again every ``RETRY_LOG_EVERY`` seconds while it lasts."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.since: float | None = None
        self.logged = 0.0

    async def run(self, tick) -> bool:
        """``await tick()``; True if it succeeded."""
        try:
            await tick()
        except Exception as exc:  # noqa: BLE001 -- logged with its reason and retried on the next tick
            now = time.monotonic()
            if self.since is None or now - self.logged >= RETRY_LOG_EVERY:
                paused = "" if self.since is None else f" (failing for {now - self.since:.0f} s)"
                log.error("%s: %s: %s -- retried on the next tick%s", self.what, type(exc).__name__, exc, paused)
                self.logged = now
            self.since = self.since if self.since is not None else now
            return False
        if self.since is not None:
            log.warning("%s for %.0f s: done again", self.what, time.monotonic() - self.since)
            self.since = None
        return True


async def retry_until_done(run, log_failure, sleep=asyncio.sleep):
    """``await run()`` until it succeeds; returns (its result, the seconds it was paused or None if it never
    failed). After each failure it pauses ``RETRY_FIRST`` seconds, doubling to ``RETRY_MAX``, for as long as it
    takes; ``log_failure(exc, paused, first)`` names the failure on the first one and again every
    ``RETRY_LOG_EVERY`` seconds (``paused``: "" the first time, else " (paused for N s)")."""
    pause, since, logged = RETRY_FIRST, None, 0.0
    while True:
        try:
            result = await run()
        except Exception as exc:  # noqa: BLE001 -- logged with its reason and retried; the agent must not die
            now = time.monotonic()
            if since is None or now - logged >= RETRY_LOG_EVERY:
                log_failure(exc, "" if since is None else f" (paused for {now - since:.0f} s)", since is None)
                logged = now
            since = since if since is not None else now
            await sleep(pause)
            pause = min(pause * 2, RETRY_MAX)
            continue
        return result, None if since is None else time.monotonic() - since


async def apply_until_written(apply, target: str, sleep=asyncio.sleep) -> tuple[BatchStats, list]:
    """``await apply()`` (one batch's transaction) until it succeeds (:func:`retry_until_done`). A batch the
    store cannot write -- its disk full, an I/O error, or any other failure of the transaction -- pauses
    projecting with an error line naming ``target`` and the reason, and projecting resumes by itself once the
    cause is gone. The transaction was rolled back, so the views keep whole batches only, and the batch's
    records are not acknowledged until it is written (the offsets are committed after that): nothing is
    skipped."""
    def failed(exc: Exception, paused: str, first: bool) -> None:
        reason = storage_error(exc)
        if reason is not None:
            log.error("cannot write the views at %s: %s -- projecting is paused%s; the batch is retried "
                      "every %.0f s at most until there is space again", target, reason, paused, RETRY_MAX)
        else:
            log.error("a batch could not be applied to the views at %s: %s: %s -- projecting is "
                      "paused%s; retried every %.0f s at most", target, type(exc).__name__, exc, paused,
                      RETRY_MAX, exc_info=first)

    result, paused_s = await retry_until_done(apply, failed, sleep)
    if paused_s is not None:
        log.warning("the views at %s are written again after %.0f s paused: projecting resumes", target, paused_s)
    return result


def faust_credentials(options: dict[str, str]):
    """Translate librdkafka security options (MODELOG_KAFKA_*) into faust credentials."""
    protocol = options.get("security.protocol", "PLAINTEXT").upper()
    context = None
    if "SSL" in protocol:
        context = ssl.create_default_context(cafile=options.get("ssl.ca.location"))
        if options.get("ssl.certificate.location"):
            context.load_cert_chain(options["ssl.certificate.location"], options.get("ssl.key.location"),
                                    options.get("ssl.key.password"))
    if protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=options.get("sasl.username"), password=options.get("sasl.password"),
            mechanism=options.get("sasl.mechanism", "PLAIN"), ssl_context=context,
        )
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    return None


class ProjectorApp(faust.App):
    """faust.App on our transport (see ``_transport``: a short fetch wait)."""

    def _new_transport(self):
        return _transport.Transport(self.conf.broker_consumer, self)


def new_faust_app(settings: Settings, app_id: str, **extra) -> ProjectorApp:
    """A faust app with modelog's settings: bootstrap and credentials, fast group joins, at-least-once,
    raw bytes in and out (we decode Avro ourselves), in-memory table stores recovered from changelogs."""
    bootstrap = settings.resolve_bootstrap()
    (settings.home / "faust").mkdir(parents=True, exist_ok=True)
    app = ProjectorApp(
        app_id,
        broker=[f"kafka://{h.strip()}" for h in bootstrap.split(",")],
        broker_credentials=faust_credentials(dict(settings.kafka_options)),
        key_serializer="raw",
        value_serializer="raw",
        processing_guarantee="at_least_once",
        broker_session_timeout=settings.session_timeout_ms / 1000,
        broker_heartbeat_interval=settings.heartbeat_ms / 1000,
        broker_commit_interval=1.0,
        consumer_auto_offset_reset="earliest",
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication,
        web_enabled=False,
        web_host="127.0.0.1",
        # never bound (web_enabled=False): faust only builds the worker's canonical URL from it, which
        # its partition assignor uses to tell the workers of a group apart -- so a port no other process
        # on this host held a moment ago, not a reservation
        web_port=free_port(),
        datadir=str(settings.home / "faust" / app_id),
        store="memory://",
        autodiscover=False,
        producer_acks=-1,
        **extra,
    )
    app.modelog_settings = settings  # type: ignore[attr-defined]  # _transport confirms changelog ends with it
    return app


def create_app(settings: Settings, store: ViewStore | ShardSet, on_ready=None) -> faust.App:
    """The projector app over one views file (``ViewStore``) or this worker's shards (``ShardSet``)."""
    # at most STREAM_BUFFER records waiting in the agent's buffer: a MetricsLogged record holds up to 5,000
    # points (~100 KB), so faust's default of 4,096 let a backlog hold ~400 MB (bench/growth.py, 10^7 points)
    app = new_faust_app(settings, f"{settings.processor_id}-{store.instance_id[:12]}",
                        stream_buffer_maxsize=STREAM_BUFFER)
    tracking = app.topic(*settings.projected_topics, key_type=bytes, value_type=bytes)
    deadletter = app.topic(settings.deadletter_topic, key_type=bytes, value_type=bytes)
    # sealed values are opened with the key store's data keys into one views file; a lake's shards keep
    # them sealed, so its Delta tables never hold plaintext (decision 0018)
    projector = Projector(keys=None if isinstance(store, ShardSet) else keystore_for(settings.home))
    store.decider = Decider(settings.processor_id)  # decisions are signed by this processor
    # RequestDecided records go on the log before their batch commits, signed with the processor's key
    # ($MODELOG_HOME/keys/<processor id>.key, registered by modelog init) when it has one
    decisions = KafkaEmitter(settings, signer=signer_for(settings, settings.processor_id))

    def publish(records: list[dict]) -> None:
        decisions.emit([Event("RequestDecided", r["envelope"]["entity"]["key"], r) for r in records])
        decisions.flush()

    # tamper evidence (decision 0023): a Merkle tree per partition, checkpointed on the log, signed with the
    # same key as the decisions (unsigned when the processor has none: audit verify says so); a worker's
    # shards each keep their partition's tree in their file and checkpoint it the same way
    if sharded_store(store):
        store.chain = (settings.checkpoint_every, settings.checkpoint_seconds)
    else:
        store.chain = Chain(settings.checkpoint_every, settings.checkpoint_seconds)
    stamps = EventFactory(settings.replace(principal=settings.processor_id, actor_kind="SERVICE"),
                          program="modelog-processor")

    def publish_checkpoints(payloads: list[dict]) -> None:
        events = []
        for p in payloads:
            key = f"{p['topic']}/{p['partition']}"
            events.append(stamps.make("LogCheckpoint", "partition", key, **p))
        decisions.emit(events)
        decisions.flush()
        log.info("published %d checkpoint(s): %s", len(events),
                 ", ".join(f"{p['topic']}/{p['partition']}@{p['tree_size']}" for p in payloads))

    store.publish_checkpoints = publish_checkpoints

    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="modelog-duckdb")
    sharded = isinstance(store, ShardSet)
    totals = {"records": 0, "applied": 0, "dead": 0, "rows": 0}
    target = str(settings.views_target)

    @app.agent(tracking)
    async def project(stream):
        async for events in stream.take_events(BATCH_RECORDS, within=BATCH_WITHIN):
            async with app.consumer.working(events) as events:  # in order from each partition's next offset
                await apply_batch(events)

    async def apply_batch(events) -> None:
        """One batch of source records: projected (a transaction per BATCH_BYTES), dead letters published."""
        loop = asyncio.get_running_loop()
        records = []
        owned = app.consumer.assignment() if sharded else None
        for e in events:
            m = e.message
            if owned is not None and e.message.tp not in owned:  # revoked meanwhile: its new owner has it
                continue
            ts = None if m.timestamp is None else int(round(m.timestamp * 1000))
            records.append(RawRecord(m.topic, m.partition, m.offset, ts, m.key, m.value,
                                     raw_headers(m.headers)))
        stats, dead = BatchStats(), []
        for chunk in by_size(records, BATCH_BYTES):  # one transaction each: bounded memory
            st, dl = await apply_until_written(
                lambda chunk=chunk: loop.run_in_executor(executor, store.apply, chunk, projector, publish),
                target)
            stats.add(st)
            dead.extend(dl)
        for dl in dead:
            r = dl.record
            await deadletter.send(key=r.key, value=r.value or b"", headers=[
                ("modelog.reason", dl.reason.encode()), ("modelog.detail", dl.detail[:4000].encode()),
                ("modelog.source", f"{r.topic}/{r.partition}/{r.offset}".encode()),
            ])
            log.warning("dead letter %s/%s/%s: %s: %s", r.topic, r.partition, r.offset, dl.reason, dl.detail)
        for k in totals:
            totals[k] += getattr(stats, k)
        log.info("batch: %s", stats)
        snapshot_highwaters(app)

    @app.timer(1.0)
    async def _highwaters() -> None:  # keeps the lag in GET /metrics fresh while idle
        snapshot_highwaters(app)

    _transport.reread_stalled_records(app)

    trim = malloc_trim()

    if trim is not None:
        @app.timer(1.0)
        async def _release_freed_memory() -> None:  # between two transactions, on the writer's thread
            await asyncio.get_running_loop().run_in_executor(executor, trim, 0)

    if getattr(store, "chain", None) is not None and settings.checkpoint_seconds > 0:
        checkpoints_failing = TickFailures("checkpoints not published")

        @app.timer(max(0.5, min(settings.checkpoint_seconds / 4, 15.0)))
        async def _checkpoints() -> None:  # an idle partition's last records get their checkpoint in time
            await checkpoints_failing.run(lambda: asyncio.get_running_loop().run_in_executor(executor, store.chain_tick))

    if sharded:
        publish_failing = TickFailures("shards not published to the lake")

        @app.timer(PUBLISH_INTERVAL)
        async def _publish() -> None:  # idle shards still publish their last rows
            await publish_failing.run(lambda: asyncio.get_running_loop().run_in_executor(executor, store.tick))

        @app.on_partitions_assigned.connect
        async def _assigned(sender, assigned, **kwargs) -> None:
            # hand over the shards of partitions the group gave to other workers (they wait for our lock)
            kept = {(tp.topic, tp.partition) for tp in assigned}
            gone = [tp for tp in list(store.shards) if tp not in kept]
            await asyncio.get_running_loop().run_in_executor(executor, store.release, gone)

    if on_ready is not None:
        @app.on_rebalance_complete.connect
        async def _ready(sender, **kwargs) -> None:
            on_ready(totals)

    app.modelog_totals = totals  # type: ignore[attr-defined]
    app.modelog_highwaters = {}  # type: ignore[attr-defined]
    return app


_highwater_errors_seen: set[str] = set()


def sharded_store(store) -> bool:
    return isinstance(store, ShardSet)


def snapshot_highwaters(app: faust.App) -> None:
    """Record the high watermark of each assigned partition as carried by the consumer's last fetch
    response (right on tansu, unlike ListOffsets) in ``app.modelog_highwaters``, replaced whole so the
    HTTP server's thread reads a consistent dict. Runs on the app's event loop."""
    hw: dict[tuple[str, int], int] = {}
    if getattr(app, "_consumer", None) is None:  # not started: do not create one from here
        return
    try:
        consumer = app.consumer
        for tp in consumer.assignment():
            try:
                h = consumer.highwater(tp)
            except (AssertionError, KeyError, AttributeError):  # revoked meanwhile
                continue
            if h is not None and h >= 0:
                hw[(tp.topic, tp.partition)] = int(h)
    except Exception as exc:  # noqa: BLE001 -- not started / rebalancing: keep the last snapshot
        reason = f"{type(exc).__name__}: {exc}"
        if reason not in _highwater_errors_seen:  # a timer calls this each second: each reason once
            _highwater_errors_seen.add(reason)
            log.warning("high watermarks not sampled (%s); keeping the last ones", reason)
        else:
            log.debug("high watermarks not sampled (%s)", reason)
        return
    app.modelog_highwaters = hw  # type: ignore[attr-defined]


def processor_info(settings: Settings, server: QueryServer, **extra) -> dict:
    """What ``$MODELOG_HOME/processor.json`` says about a running processor (not ready yet)."""
    return {"pid": os.getpid(), "db": str(settings.views_target), "sql_url": server.url + "/sql",
            "health_url": server.url + "/health", "metrics_url": server.url + "/metrics",
            "bootstrap": settings.resolve_bootstrap(), **extra, "started_at": time.time(), "ready": False}


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def run_processor(settings: Settings, loglevel: str = "warning", publish_info: bool = True,
                  on_joined=None) -> None:
    """Run the projector in the foreground until SIGINT/SIGTERM (this is ``modelog process``).

    With ``settings.lake_path`` it is one worker of several: it projects the partitions the consumer
    group gives it into shards and publishes them to the lake; its SQL endpoint reads the whole lake.
    ``publish_info``: write ``$MODELOG_HOME/processor.json`` (not for the workers of ``--workers N``,
    whose supervisor does); ``on_joined``: called once the consumer first joined its group.
    """
    settings.home.mkdir(parents=True, exist_ok=True)
    ensure_topics(settings)
    # Arrow's buffers through malloc, not Arrow's own jemalloc, which keeps freed pages for seconds: the
    # projector holds a batch's arrays only until they are inserted (peak RSS: store.LEAN_ALLOCATOR)
    import pyarrow

    pyarrow.set_memory_pool(pyarrow.system_memory_pool())
    if settings.lake_path is not None:
        # the worker reads every partition's trust records itself (decision 0015): its shards own only some
        store: ViewStore | ShardSet = ShardSet(lake_for(settings), settings.duckdb_memory_limit,
                                               reader=TrustReader(settings).start())
        queries = reader_for(settings)
    else:
        store = queries = ViewStore(settings.views_path, memory_limit=settings.duckdb_memory_limit,
                                    lean_allocator=True)
    server = QueryServer(queries, host=settings.processor_host, port=settings.processor_port,
                         limits=QueryLimits.from_settings(settings), cache_bytes=int(settings.sql_cache_mb * 2**20))
    server.ready = False  # until the consumer has joined (GET /ready)
    server.start()
    info_path = processor_file(settings) if publish_info else None
    info = processor_info(settings, server)
    if info_path:
        _write_json(info_path, info)

    def on_ready(_totals) -> None:
        server.ready = True
        if not info["ready"]:
            info["ready"] = True
            info["ready_at"] = time.time()
            if info_path:
                _write_json(info_path, info)
            if on_joined is not None:
                on_joined()

    app = create_app(settings, store, on_ready=on_ready)
    server.highwaters = lambda: app.modelog_highwaters
    worker = faust.Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    try:
        worker.execute_from_commandline()
    finally:
        server.stop()
        try:
            store.checkpoint()
            store.close()
        finally:
            try:
                if info_path and json.loads(info_path.read_text()).get("pid") == os.getpid():
                    info_path.unlink()
            except (OSError, ValueError):
                pass

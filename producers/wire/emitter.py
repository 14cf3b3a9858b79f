"""Emitters: the one write primitive every SDK call reduces to.

An emitter is a small protocol (``emit``, ``flush``, ``close``). ``KafkaEmitter``
publishes to the tracking topic with an idempotent, acks=all producer and never
blocks the caller on the network; ``flush`` waits (bounded) and raises
``DeliveryError`` if any event was not acknowledged. ``MemoryEmitter`` keeps
events in a list, for unit tests of the SDK itself.

``KafkaEmitter`` keeps every event it handed to librdkafka in an ``Outbox`` until the
broker acknowledged it: a delivery error that may pass re-sends the event (same bytes,
same event id: the projector drops duplicates by event id), a fatal producer error
replaces the producer and re-sends everything unacknowledged. Only an event refused for
good (too large, not authorised) or not acknowledged within ``MODELOG_FLUSH_TIMEOUT`` of
its emit makes ``flush`` raise. See docs/decisions/0012-emitter-resends.md.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, NamedTuple, Protocol

from confluent_kafka import KafkaError, KafkaException, Producer

from modelog.wire.codec import Codec
from modelog.wire.settings import Settings
from modelog.wire.errors import DeliveryError
from modelog.wire.envelope import Event
from modelog.wire.signing import Signer, signer_for
from modelog.wire.topics import ensure_topics

_OWN_KEY = object()  # KafkaEmitter's default signer: the key of settings.principal, if it has one


class Emitter(Protocol):
    def emit(self, events: Sequence[Event]) -> None: ...
    def flush(self, timeout: float | None = None) -> None: ...
    def close(self) -> None: ...


class MemoryEmitter:
    """Keeps emitted events in ``self.events`` (validated and encoded, like the Kafka emitter)."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.encoded: list[bytes] = []
        self._codec = Codec()

    def emit(self, events: Sequence[Event]) -> None:
        for e in events:
            self.encoded.append(self._codec.encode(e.event_type, e.record))
            self.events.append(e)

    def flush(self, timeout: float | None = None) -> None:
        return None

    def close(self) -> None:
        return None


log = logging.getLogger("modelog.emitter")

# Errors that no re-send can cure: the event fails at once instead of at the flush deadline.
# Everything else (retriable errors, UNKNOWN, OUT_OF_ORDER_SEQUENCE_NUMBER, fatal idempotence
# errors, local timeouts, purges) is re-sent while the event is younger than the flush timeout.
PERMANENT_ERRORS = frozenset(
    code for code in (getattr(KafkaError, name, None) for name in (
        "MSG_SIZE_TOO_LARGE", "INVALID_MSG", "INVALID_MSG_SIZE", "RECORD_LIST_TOO_LARGE", "INVALID_RECORD",
        "TOPIC_AUTHORIZATION_FAILED", "CLUSTER_AUTHORIZATION_FAILED", "INVALID_REQUIRED_ACKS",
        "UNSUPPORTED_FOR_MESSAGE_FORMAT", "UNSUPPORTED_COMPRESSION_TYPE", "POLICY_VIOLATION", "_INVALID_ARG",
    )) if code is not None
)

# Errors of the idempotent producer's state (its id, epoch, sequence numbers): sending again on
# the same producer fails the same way, so they replace the producer as a fatal error does.
PRODUCER_STATE_ERRORS = frozenset(
    code for code in (getattr(KafkaError, name, None) for name in (
        "OUT_OF_ORDER_SEQUENCE_NUMBER", "UNKNOWN_PRODUCER_ID", "INVALID_PRODUCER_EPOCH", "PRODUCER_FENCED",
        "INVALID_PRODUCER_ID_MAPPING", "_FATAL",
    )) if code is not None
)


class Pending(NamedTuple):
    """One event handed to the producer: what it takes to send it again."""

    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]
    event_type: str
    emitted_at: float  # time.monotonic() at emit: the re-send deadline counts from here


class Outbox:
    """Events sent and not yet acknowledged, keyed by a sequence number. Thread-safe; no Kafka in it.

    Every send of an event carries ``(seq, attempt)``; a report about an older attempt than the
    event's current one is stale (the event was sent again meanwhile) and only an acknowledgement
    of it counts. Acknowledgements and failures are final: a second report changes nothing.
    """

    def __init__(self, timeout: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout = timeout
        self.clock = clock
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # an event settled or a re-send was queued
        self._items: dict[int, Pending] = {}
        self._attempt: dict[int, int] = {}  # seq -> current attempt, for events sent more than once
        self._resend: deque[tuple[int, int]] = deque()  # (seq, attempt that failed)
        self._failures: list[tuple[str, str]] = []
        self._next = 0
        self.resent = 0  # re-sends scheduled (by error or by restart)

    def __len__(self) -> int:
        return len(self._items)

    def add(self, pending: Pending) -> int:
        """Register an event about to be sent (attempt 0); returns its sequence number."""
        with self._lock:
            seq = self._next
            self._next = seq + 1
            self._items[seq] = pending
        return seq

    def mark(self) -> int:
        """The sequence number the next event gets: ``flush`` waits for the events numbered below it."""
        with self._lock:
            return self._next

    def pending_before(self, mark: int) -> int:
        """How many events numbered below ``mark`` are unacknowledged (and not failed for good)."""
        with self._lock:
            # numbers are added in increasing order and only removed: the first key is the oldest one pending
            if not self._items or next(iter(self._items)) >= mark:
                return 0
            return sum(1 for seq in self._items if seq < mark)

    def discard(self, seq: int) -> None:
        """Forget an event whose send was refused outright (the caller raises instead)."""
        with self._lock:
            self._items.pop(seq, None)
            self._attempt.pop(seq, None)

    def acked(self, seq: int) -> bool:
        """The broker acknowledged some attempt of ``seq``. True the first time."""
        with self._lock:
            if self._items.pop(seq, None) is None:
                return False
            self._attempt.pop(seq, None)
            self._changed.notify_all()
            return True

    def failed(self, seq: int, attempt: int, code: int | None, reason: str) -> str:
        """An attempt failed: returns ``"resend"`` (queued), ``"failed"`` (final) or ``"ignored"``."""
        with self._lock:
            pending = self._items.get(seq)
            if pending is None or self._attempt.get(seq, 0) != attempt:
                return "ignored"  # acknowledged or failed already, or sent again since
            if code in PERMANENT_ERRORS:
                return self._fail(seq, pending, reason)
            if self.clock() - pending.emitted_at >= self.timeout:
                return self._fail(seq, pending, f"{reason} (not acknowledged within {self.timeout:g}s)")
            self._resend.append((seq, attempt))
            self._changed.notify_all()
            return "resend"

    def _fail(self, seq: int, pending: Pending, reason: str) -> str:
        del self._items[seq]
        self._attempt.pop(seq, None)
        self._failures.append((pending.event_type, reason))
        self._changed.notify_all()
        return "failed"

    def take_resends(self) -> list[tuple[int, int, Pending]]:
        """The queued re-sends still due, each with its new attempt number."""
        out: list[tuple[int, int, Pending]] = []
        with self._lock:
            while self._resend:
                seq, attempt = self._resend.popleft()
                pending = self._items.get(seq)
                if pending is None or self._attempt.get(seq, 0) != attempt:
                    continue
                self._attempt[seq] = attempt + 1
                out.append((seq, attempt + 1, pending))
            self.resent += len(out)
        return out

    def take_all(self) -> list[tuple[int, int, Pending]]:
        """Every unacknowledged event with a new attempt number (a new producer sends them all again)."""
        with self._lock:
            self._resend.clear()
            out = []
            for seq, pending in self._items.items():
                attempt = self._attempt.get(seq, 0) + 1
                self._attempt[seq] = attempt
                out.append((seq, attempt, pending))
            self.resent += len(out)
        return out

    def wait(self, count: int, timeout: float) -> None:
        """Wait up to ``timeout`` s while ``count`` or more events are unacknowledged and no re-send is
        queued: returns as soon as a delivery report settles one (whichever thread served it)."""
        with self._lock:
            if len(self._items) >= count and not self._resend:
                self._changed.wait(timeout)

    def has_resends(self) -> bool:
        return bool(self._resend)

    def take_failures(self) -> list[tuple[str, str]]:
        with self._lock:
            failures, self._failures = self._failures, []
        return failures


class KafkaEmitter:
    """Publishes events keyed by entity key, each to its type's topic (``Settings.topic_for``),
    or every event to ``topic`` when one is given.

    ``positions``: highest acknowledged offset per (topic, partition); ``delivered``: events
    acknowledged; ``restarts``: producers replaced after a fatal error; ``resent``: re-sends.
    """

    RESTART_BACKOFF = 0.2  # seconds between producer replacements: a broker failing every new producer is not hammered
    RESEND_BACKOFF = 0.05  # seconds between rounds of re-sends, like librdkafka's retry.backoff.ms

    def __init__(self, settings: Settings, topic: str | None = None, signer: Signer | None | object = _OWN_KEY) -> None:
        self.settings = settings
        self.topic = topic
        # one Ed25519 signature per record (a batch event of up to 5,000 points), over its exact bytes,
        # topic and event id, in two headers (modelog.wire.signing; decision 0015)
        self.signer: Signer | None = signer_for(settings) if signer is _OWN_KEY else signer  # type: ignore[assignment]
        ensure_topics(settings)
        self._codecs: dict[str, Codec] = {}
        self._conf = settings.librdkafka(**{
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            "compression.type": "lz4",
            "message.max.bytes": 16 * 1024 * 1024,
            "delivery.timeout.ms": int(max(settings.flush_timeout, 1) * 1000),
            "allow.auto.create.topics": False,
            "error_cb": self._on_error,
        })
        self._outbox = Outbox(settings.flush_timeout)
        self._lock = threading.Lock()  # positions and counters
        self._service_lock = threading.Lock()  # one thread at a time replaces the producer / re-sends
        self._fatal: str | None = None  # set by callbacks; the poll thread (or flush) replaces the producer
        self._last_restart = 0.0
        self._last_resend = 0.0
        self._producer = Producer(self._conf)
        self.delivered = 0
        self.restarts = 0
        # highest acknowledged offset per (topic, partition): read-your-writes by offset
        self.positions: dict[tuple[str, int], int] = {}
        self._closed = threading.Event()
        self._poller = threading.Thread(target=self._poll_loop, name="modelog-emitter-poll", daemon=True)
        self._poller.start()

    @property
    def resent(self) -> int:
        return self._outbox.resent

    @property
    def pending(self) -> int:
        """Events emitted and not yet acknowledged (nor failed for good)."""
        return len(self._outbox)

    # -- callbacks: run inside poll()/flush() on whichever thread calls them; they never raise ----------
    def _on_error(self, err: KafkaError) -> None:
        try:
            if err.fatal():
                self._fatal = str(err)
                log.warning("Kafka producer fatal error, replacing the producer: %s", err)
            else:
                log.debug("Kafka producer error: %s", err)
        except Exception:  # noqa: BLE001 -- an exception here would surface as SystemError in poll()
            log.exception("error callback failed")

    def _on_delivery(self, seq: int, attempt: int, err: KafkaError | None, msg: Any) -> None:
        try:
            if err is None and msg.offset() is None:
                # librdkafka reports a broker's DUPLICATE_SEQUENCE_NUMBER as a delivery without an offset: the
                # broker claims an earlier attempt is stored. A broker killed between recording the sequence
                # and writing the batch claims it wrongly (tansu on s3://; bench/faults.py broker-outage):
                # send it again, as a new message (the projector drops the copy by event id if it was stored).
                reason = "the broker acknowledged it as a duplicate, without an offset"
                if self._outbox.failed(seq, attempt, None, reason) == "resend":
                    log.warning("re-sending event %d: %s", seq, reason)
                return
            if err is None:
                if self._outbox.acked(seq):
                    p, o = (msg.topic(), msg.partition()), msg.offset()
                    with self._lock:
                        self.delivered += 1
                        if o > self.positions.get(p, -1):
                            self.positions[p] = o
                return
            code = err.code()
            if err.fatal() or (code in PRODUCER_STATE_ERRORS and self._fatal is None):
                self._fatal = str(err)
            outcome = self._outbox.failed(seq, attempt, code, str(err))
            if outcome == "resend":
                log.debug("re-sending event %d after %s", seq, err)
            elif outcome == "failed":
                log.warning("event not delivered: %s", err)
        except Exception:  # noqa: BLE001 -- never raise into librdkafka
            log.exception("delivery callback failed")

    # -- sending -------------------------------------------------------------------------------------
    def emit(self, events: Sequence[Event]) -> None:
        if self._closed.is_set():
            raise DeliveryError("cannot publish: this client was closed", [(e.event_type, "closed") for e in events])
        for e in events:
            topic = self.topic or self.settings.topic_for(e.event_type)
            codec = self._codecs.get(topic)
            if codec is None:
                codec = self._codecs[topic] = Codec(self.settings.schema_registry_url, topic)
            value = codec.encode(e.event_type, e.record)
            headers = [("modelog.event_type", e.event_type.encode()), ("modelog.event_id", e.event_id.encode())]
            if self.signer is not None:
                headers += self.signer.headers(topic, e.event_id, value)
            pending = Pending(topic, e.key.encode(), value, headers, e.event_type, time.monotonic())
            seq = self._outbox.add(pending)  # registered before the producer is read: a restart re-sends it
            error = self._send(self._producer, seq, 0, pending)
            if error is not None:  # refused for good (e.g. too large): raised here, as before
                self._outbox.discard(seq)
                raise DeliveryError(f"cannot publish {e.event_type}: {error}", [(e.event_type, str(error))])

    def _send(self, producer: Producer, seq: int, attempt: int, p: Pending) -> KafkaError | None:
        """Hand one attempt to ``producer``. Returns the error of a refused produce that must not be retried."""
        while True:
            try:
                producer.produce(p.topic, value=p.value, key=p.key, headers=p.headers,
                                 on_delivery=partial(self._on_delivery, seq, attempt))
                return None
            except BufferError:  # local queue full: let deliveries drain (backpressure)
                if producer is not self._producer:
                    return None  # replaced meanwhile: the new producer sends it
                try:
                    producer.poll(0.05)
                except KafkaException as exc:
                    self._note(exc)
            except KafkaException as exc:
                err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
                if err is not None and err.code() in PERMANENT_ERRORS:
                    return err
                self._note(exc)  # fatal or transient: the event stays in the outbox and is sent again
                self._outbox.failed(seq, attempt, None if err is None else err.code(), str(exc))
                return None
            except RuntimeError:  # a retired producer, closed under us: the restart re-sends it
                if producer is self._producer:
                    raise
                return None

    def _note(self, exc: KafkaException) -> None:
        err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
        if err is not None and err.fatal():
            self._fatal = str(err)
        log.warning("Kafka producer error: %s", exc)

    # -- recovery: the poll thread (and flush) -------------------------------------------------------
    def _poll_loop(self) -> None:
        while not self._closed.is_set():
            try:
                self._service()
                # serve the delivery reports queued so far, then sleep outside librdkafka: a thread blocked in
                # poll() takes the report a flush() is waiting for, and rd_kafka_flush then waits out its
                # 10 ms poll slice before it sees the queue empty (the floor of every flush: 10.3 ms on the
                # embedded broker's memory:// storage for a round trip of 0.35 ms)
                self._producer.poll(0)
                self._closed.wait(0.05)
            except KafkaException as exc:
                self._note(exc)
            except Exception:  # noqa: BLE001 -- the poll thread must not die: it serves every delivery
                log.exception("emitter poll loop error")
                self._closed.wait(0.05)

    def _service(self) -> None:
        """Replace a failed producer; send queued re-sends. Cheap when there is nothing to do."""
        if self._fatal is None and not self._outbox.has_resends():
            return
        if not self._service_lock.acquire(blocking=False):
            return  # another thread is at it
        try:
            if self._fatal is not None and time.monotonic() - self._last_restart >= self.RESTART_BACKOFF:
                self._restart()
            elif self._fatal is None and time.monotonic() - self._last_resend >= self.RESEND_BACKOFF:
                self._last_resend = time.monotonic()
                producer = self._producer
                for seq, attempt, p in self._outbox.take_resends():
                    error = self._send(producer, seq, attempt, p)
                    if error is not None:
                        self._outbox.failed(seq, attempt, error.code(), str(error))
        finally:
            self._service_lock.release()

    def _restart(self) -> None:
        reason, self._fatal = self._fatal, None
        self._last_restart = time.monotonic()
        try:
            new = Producer(self._conf)
        except Exception as exc:  # noqa: BLE001 -- try again after the back-off
            self._fatal = reason
            log.warning("cannot create a new Kafka producer (will retry): %s", exc)
            return
        old, self._producer = self._producer, new
        with self._lock:
            self.restarts += 1
        resend = self._outbox.take_all()  # after the swap: anything emitted later goes to the new producer
        log.warning("replaced the Kafka producer after a fatal error (%s); re-sending %d unacknowledged event(s)",
                    reason, len(resend))
        for seq, attempt, p in resend:
            error = self._send(new, seq, attempt, p)
            if error is not None:
                self._outbox.failed(seq, attempt, error.code(), str(error))
        _retire(old)

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every event emitted before this call is acknowledged; raise DeliveryError if any failed
        or is still unacknowledged after ``timeout`` (default ``MODELOG_FLUSH_TIMEOUT``).

        Events other threads emit meanwhile (a run's background publisher) are not waited for: they count
        towards the next flush. Waiting on "the outbox is empty" instead raised a false timeout at once when
        such an event arrived between the check and the count, and never returned under a steady stream.
        """
        if self._closed.is_set():
            return  # close() flushed everything that was emitted
        timeout = self.settings.flush_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        mark = self._outbox.mark()
        while self._outbox.pending_before(mark):
            self._service()
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                queued = self._producer.flush(min(left, 0.1))
            except KafkaException as exc:
                self._note(exc)
                queued = 0
            pending = len(self._outbox)
            if not queued and pending:
                # librdkafka's queue is empty but the outbox is not: the poll thread is serving the delivery
                # report (woken by it, not after a fixed 10 ms: that was the floor of every flush), or a
                # re-send or a restart's back-off is due
                self._outbox.wait(pending, min(0.01, max(0.0, deadline - time.monotonic())))
        failures = self._outbox.take_failures()
        if failures:
            kinds = ", ".join(sorted({f"{t}: {r}" for t, r in failures})[:5])
            raise DeliveryError(f"{len(failures)} event(s) were not delivered to Kafka ({kinds})", failures)
        pending = self._outbox.pending_before(mark)
        if pending:
            raise DeliveryError(
                f"{pending} event(s) not acknowledged by Kafka at "
                f"{self.settings.resolve_bootstrap()} within {timeout:.0f}s (MODELOG_FLUSH_TIMEOUT)",
                [("unknown", "timeout")] * pending,
            )

    def close(self) -> None:
        if self._closed.is_set():
            return
        try:
            self.flush()
            if len(self._outbox):  # emitted by another thread during that flush (a run's publisher): those too
                self.flush()
        finally:
            self._closed.set()
            self._poller.join(timeout=1)
            # Release librdkafka's connections now, not at garbage collection: a lingering
            # handle logs "Disconnected" noise when the broker stops later.
            close = getattr(self._producer, "close", None)
            if close is not None:
                close()


def _retire(producer: Producer) -> None:
    """Drop a replaced producer without blocking the caller: purge what it still holds (those
    events were sent again on its successor), serve the purge reports, close it in the background."""
    try:
        producer.purge(in_queue=True, in_flight=True, blocking=False)
    except Exception as exc:  # noqa: BLE001
        log.debug("purge of the replaced producer: %s", exc)

    def finish() -> None:
        try:
            producer.flush(5)  # delivery reports of purged events: stale attempts, ignored
            close = getattr(producer, "close", None)
            if close is not None:
                close()
        except Exception as exc:  # noqa: BLE001
            log.debug("closing the replaced producer: %s", exc)

    threading.Thread(target=finish, name="modelog-emitter-retire", daemon=True).start()

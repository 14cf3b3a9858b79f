"""The SDK through a modelog server instead of the broker (``MODELOG_URL`` + ``MODELOG_TOKEN``), for jobs
that cannot reach Kafka.

:class:`HttpEmitter` is an emitter like :class:`modelog.wire.emitter.KafkaEmitter`: ``emit`` never
waits on the network (events are buffered and a background thread POSTs them in batches to
``/api/v1/events``), and ``flush`` waits (bounded by ``MODELOG_FLUSH_TIMEOUT``) and raises
:class:`modelog.DeliveryError` unless the server answered that the broker acknowledged every event.
The server answers only after the broker acknowledged, so an answer is an acknowledgement. A failed
or unanswered request is re-sent with the same events (the same event ids: the projector keeps one
copy); a refused one (4xx: invalid event, missing permission, bad token) is not, and ``flush``
reports it. The actor of every event is the token's principal, whatever ``MODELOG_PRINCIPAL`` says.

``positions`` holds the offsets the server reported, so ``Client.wait_projected`` works through
``GET /api/v1/positions``.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from modelog.wire import metric_columns, prediction_columns
from modelog.wire.envelope import Event
from modelog.wire.errors import DeliveryError, QueryError
from modelog.wire.settings import Settings

BATCH_EVENTS = 500  # events per request (the server takes up to 1000)
REQUEST_TIMEOUT = 30.0
PERMANENT = (400, 401, 403, 404, 413, 422)


def _request(settings: Settings, method: str, path: str, body: bytes | None = None,
             timeout: float = REQUEST_TIMEOUT) -> tuple[int, Any]:
    url = settings.url.rstrip("/") + path  # type: ignore[union-attr]
    req = urllib.request.Request(url, data=body, method=method, headers={
        "Authorization": f"Bearer {settings.token}", "Content-Type": "application/json",
        "Accept": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        with exc:
            raw = exc.read()
        try:
            detail = json.loads(raw).get("detail") or raw.decode(errors="replace")
        except (ValueError, AttributeError):
            detail = raw[:300].decode(errors="replace")
        return exc.code, {"detail": detail}


def _json_record(e: Event) -> dict[str, Any]:
    """The record as JSON carries it: a columnar metric batch (bytes) as its points, prediction columns as lists."""
    if e.event_type == "MetricsLogged" and e.record.get("columns") is not None:
        return {**{k: v for k, v in e.record.items() if k != "columns"}, "points": metric_columns.points(e.record)}
    if e.event_type == "PredictionsLogged":  # buffer columns (decision 0025) as lists, which every server takes
        return prediction_columns.to_lists(e.record)
    return e.record


class HttpEmitter:
    """Publishes events through a modelog server's API. Thread-safe."""

    def __init__(self, settings: Settings) -> None:
        if not settings.url or not settings.token:
            raise ValueError("HttpEmitter needs MODELOG_URL and MODELOG_TOKEN")
        self.settings = settings
        self._lock = threading.Condition()
        self._buffer: list[Event] = []
        self._emitted = 0  # events emitted so far
        self._settled = 0  # of those, acknowledged or failed for good (one sender, in order: the oldest first)
        self._failures: list[tuple[str, str]] = []
        self._closed = False
        self.delivered = 0
        self.positions: dict[tuple[str, int], int] = {}
        self._wake = threading.Event()
        self._linger = max(settings.linger_ms, 1) / 1000
        self._thread = threading.Thread(target=self._loop, name="modelog-http-emitter", daemon=True)
        self._thread.start()

    # -- the emitter protocol ---------------------------------------------------------
    def emit(self, events: Sequence[Event]) -> None:
        with self._lock:
            if self._closed:
                raise DeliveryError("cannot publish: this client was closed", [(e.event_type, "closed") for e in events])
            self._buffer.extend(events)
            self._emitted += len(events)
            if len(self._buffer) >= BATCH_EVENTS:
                self._wake.set()

    def flush(self, timeout: float | None = None) -> None:
        """Wait until the server acknowledged every event emitted before this call; raise DeliveryError otherwise.
        Events other threads emit meanwhile count towards the next flush (as ``KafkaEmitter.flush``)."""
        timeout = self.settings.flush_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        self._wake.set()
        with self._lock:
            mark = self._emitted
            while self._settled < mark and time.monotonic() < deadline:
                self._wake.set()
                self._lock.wait(min(0.05, max(0.0, deadline - time.monotonic())))
            failures, self._failures = self._failures, []
            pending = max(0, mark - self._settled)
        if failures:
            kinds = ", ".join(sorted({f"{t}: {r}" for t, r in failures})[:5])
            raise DeliveryError(f"{len(failures)} event(s) were not delivered through {self.settings.url} ({kinds})",
                                failures)
        if pending:
            raise DeliveryError(f"{pending} event(s) not acknowledged through {self.settings.url} within "
                                f"{timeout:.0f}s (MODELOG_FLUSH_TIMEOUT)", [("unknown", "timeout")] * pending)

    def close(self) -> None:
        if self._closed:
            return
        try:
            self.flush()
            if self._emitted > self._settled:  # emitted by another thread during that flush: those too
                self.flush()
        finally:
            with self._lock:
                self._closed = True
            self._wake.set()
            self._thread.join(timeout=5)

    # -- sending ----------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            self._wake.wait(self._linger)
            self._wake.clear()
            with self._lock:
                if self._closed and not self._buffer:
                    return
                batch, self._buffer = self._buffer[:BATCH_EVENTS], self._buffer[BATCH_EVENTS:]
                more = bool(self._buffer)
            if batch:
                self._send(batch)
                with self._lock:
                    self._settled += len(batch)
                    self._lock.notify_all()
            if more:
                self._wake.set()

    def _send(self, batch: list[Event]) -> None:
        """POST one batch until it is acknowledged, refused, or MODELOG_FLUSH_TIMEOUT passes (same event ids)."""
        body = json.dumps({"events": [{"event_type": e.event_type, "key": e.key, "record": _json_record(e)}
                                      for e in batch]}).encode()
        deadline = time.monotonic() + self.settings.flush_timeout
        delay, why = 0.05, "no answer"
        while True:
            try:
                status, answer = _request(self.settings, "POST", "/api/v1/events", body,
                                          timeout=min(REQUEST_TIMEOUT, max(1.0, deadline - time.monotonic())))
            except (OSError, ValueError) as exc:  # unreachable, reset, timed out, not JSON: re-send
                status, answer = 0, {"detail": str(exc)}
            if 200 <= status < 300:
                with self._lock:
                    self.delivered += len(batch)
                    for k, o in (answer.get("positions") or {}).items():
                        topic, _, part = k.rpartition("/")
                        tp = (topic, int(part))
                        if o > self.positions.get(tp, -1):
                            self.positions[tp] = o
                return
            why = f"HTTP {status}: {answer.get('detail')}" if status else str(answer.get("detail"))
            if status in PERMANENT or time.monotonic() + delay > deadline:
                with self._lock:
                    self._failures.extend((e.event_type, why) for e in batch)
                return
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def projected_positions(settings: Settings) -> dict[tuple[str, int], int]:
    """The views' projected positions, as the server reports them (``GET /api/v1/positions``)."""
    try:
        status, answer = _request(settings, "GET", "/api/v1/positions", timeout=10)
    except (OSError, ValueError) as exc:
        raise QueryError(f"{settings.url} unreachable: {exc}") from exc
    if status != 200:
        raise QueryError(f"{settings.url}/api/v1/positions: HTTP {status}: {answer.get('detail')}")
    out = {}
    for k, v in answer["positions"].items():
        topic, _, part = k.rpartition("/")
        out[(topic, int(part))] = int(v)
    return out


def wait_projected(settings: Settings, offsets: dict[tuple[str, int], int], timeout: float = 30.0) -> float:
    """Block until the server's views hold every record up to ``offsets``; raises QueryError on timeout."""
    from modelog.consumers.query import wait_projected as wait

    return wait(settings, offsets, timeout, positions=projected_positions, interval=0.05)

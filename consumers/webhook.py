"""The webhook forwarder: POST every alert of the alerts topic to a URL, at least once.

Contract (docs/alerts.md): one POST per alert, body = :func:`modelog.consumers.alerts.alert_payload` as JSON,
headers ``Content-Type: application/json``, ``Idempotency-Key: <alert_id>:<state>``,
``X-Modelog-Event-Id``. A 2xx acknowledges the alert; only then is its offset committed, in a
consumer group of its own per URL (``modelog-webhook-<hash>``), so a restarted forwarder resumes
after the last acknowledged alert and an alert is never skipped. Redelivery can happen (a crash
between the 2xx and the commit), hence the idempotency key.

Connection errors, timeouts, 408, 429 and 5xx are retried with exponential backoff and jitter
(``Retry-After`` wins when the receiver sends it). Any other answer (3xx: redirects are not
followed; 4xx) rejects the alert: it is logged, published to the dead-letter topic with reason
``webhook_rejected``, and the forwarder moves on. When the retries run out the forwarder stops
with an error and commits nothing, so a restart (e.g. by a supervisor) tries the same alert again.
"""

from __future__ import annotations

import email.utils
import hashlib
import http.client
import json
import logging
import random
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from modelog.consumers.alerts import decode_alert, matches
from modelog.wire.codec import Codec
from modelog.wire.settings import Settings
from modelog.wire.errors import BrokerError, DeliveryError
from modelog._version import __version__

log = logging.getLogger("modelog.webhook")

DEAD_LETTER_REASON = "webhook_rejected"
MAX_RETRY_AFTER = 900.0  # seconds: a larger Retry-After is capped (a typo must not park the forwarder for days)
RETRYABLE = frozenset({408, 429})


def group_id(url: str, topic: str, model: str | None = None, deployment: str | None = None) -> str:
    """``modelog-webhook-<12 hex>``: stable for one URL, topic and filter set (restarts resume)."""
    ident = "\n".join([url, topic, model or "", deployment or ""])
    return f"modelog-webhook-{hashlib.sha256(ident.encode()).hexdigest()[:12]}"


def redact(url: str) -> str:
    """The URL without path, query or credentials, for logs (webhook paths often hold tokens)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}/…" if parts.path not in ("", "/") or parts.query else f"{parts.scheme}://{host}/"


def backoff(retry: int, base: float = 0.5, cap: float = 60.0, rng: Callable[[], float] = random.random) -> float:
    """Seconds to wait before retry number ``retry`` (1, 2, ...): exponential, capped, with "equal
    jitter" -- uniformly between half and all of ``min(cap, base * 2**(retry-1))``."""
    ceiling = min(cap, base * 2 ** (retry - 1))
    return ceiling / 2 + rng() * ceiling / 2


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP-date), capped; None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    now = time.time() if now is None else now
    return min(max(0.0, when.timestamp() - now), MAX_RETRY_AFTER)


@dataclass(frozen=True)
class Attempt:
    """One POST: the HTTP status (None: no answer), the Retry-After seconds, and a short detail."""

    status: int | None
    retry_after: float | None = None
    detail: str = ""

    @property
    def outcome(self) -> str:
        """``delivered`` (2xx), ``retry`` (no answer, 408, 429, 5xx) or ``rejected`` (anything else)."""
        if self.status is None or self.status in RETRYABLE or self.status >= 500:
            return "retry"
        return "delivered" if 200 <= self.status < 300 else "rejected"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # a 3xx surfaces as HTTPError: the alert is rejected
        return None


_opener = urllib.request.build_opener(_NoRedirect)


def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> Attempt:
    """POST ``body`` once; never raises for network or HTTP errors (they are the Attempt)."""
    req = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with _opener.open(req, timeout=timeout) as resp:
            resp.read(65536)
            return Attempt(resp.status, detail=f"HTTP {resp.status}")
    except urllib.error.HTTPError as exc:
        with exc:
            try:
                text = exc.read(500).decode(errors="replace")
            except (OSError, http.client.HTTPException):
                text = ""
        return Attempt(exc.code, retry_after(exc.headers.get("Retry-After") if exc.headers else None),
                       f"HTTP {exc.code} {text}".strip())
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:  # refused, reset, timeout
        reason = getattr(exc, "reason", exc)
        return Attempt(None, detail=f"{type(exc).__name__}: {reason}")


def deliver(url: str, alert: dict[str, Any], *, timeout: float = 10.0, max_retries: int = 10,
            backoff_base: float = 0.5, backoff_cap: float = 60.0, stop: threading.Event | None = None,
            send: Callable[[str, bytes, dict[str, str], float], Attempt] = post) -> tuple[str, Attempt, int]:
    """POST one alert until it is acknowledged, rejected, the retries run out or ``stop`` is set.

    Returns (outcome, last attempt, attempts made); outcome is ``delivered``, ``rejected``,
    ``exhausted`` or ``stopped``.
    """
    stop = stop or threading.Event()
    body = json.dumps(alert, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", "Idempotency-Key": alert["idempotency_key"],
               "X-Modelog-Event-Id": alert["event_id"], "User-Agent": f"modelog/{__version__}"}
    attempts = 0
    while True:
        attempt = send(url, body, headers, timeout)
        attempts += 1
        if attempt.outcome != "retry":
            return attempt.outcome, attempt, attempts
        if attempts > max_retries:
            return "exhausted", attempt, attempts
        wait = attempt.retry_after if attempt.retry_after is not None else backoff(attempts, backoff_base, backoff_cap)
        log.warning("alert %s: %s (attempt %d); retrying in %.2fs", alert["idempotency_key"], attempt.detail,
                    attempts, wait)
        if stop.wait(wait):
            return "stopped", attempt, attempts


class WebhookForwarder:
    """Consumes the alerts topic in a stable group and POSTs each alert to ``url`` (see the module docstring)."""

    def __init__(self, settings: Settings, url: str, *, model: str | None = None, deployment: str | None = None,
                 timeout: float = 10.0, max_retries: int = 10, backoff_base: float = 0.5,
                 backoff_cap: float = 60.0, stop: threading.Event | None = None) -> None:
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise ValueError(f"URL must be http:// or https:// (got {url!r})")
        self.settings, self.url, self.model, self.deployment = settings, url, model, deployment
        self.timeout, self.max_retries = timeout, max_retries
        self.backoff_base, self.backoff_cap = backoff_base, backoff_cap
        self.stop = stop or threading.Event()
        self.group_id = group_id(url, settings.alerts_topic, model, deployment)
        self.counts = {"delivered": 0, "rejected": 0, "skipped": 0}
        self._deadletters: Producer | None = None

    def _consumer(self) -> Consumer:
        s = self.settings
        # a retry loop may hold the next poll for its whole budget: keep the group membership meanwhile
        budget_ms = int(1000 * ((self.max_retries + 1) * self.timeout + self.max_retries
                                * max(self.backoff_cap, MAX_RETRY_AFTER) + 60))
        return Consumer(s.librdkafka(**{
            "group.id": self.group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",  # a new URL receives the alert history
            "allow.auto.create.topics": False,
            "fetch.wait.max.ms": 100,
            "session.timeout.ms": s.session_timeout_ms,
            "heartbeat.interval.ms": s.heartbeat_ms,
            "max.poll.interval.ms": max(s.session_timeout_ms, min(budget_ms, 86_400_000)),
        }))

    def run(self) -> dict[str, int]:
        """Forward until ``stop`` is set. Returns counts; raises DeliveryError when retries run out."""
        from modelog.wire.topics import ensure_topics

        ensure_topics(self.settings)
        topic = self.settings.alerts_topic
        codec = Codec(self.settings.schema_registry_url, topic)
        consumer = self._consumer()
        consumer.subscribe([topic], on_assign=lambda c, ps: log.info(
            "assigned %s", ", ".join(f"{p.topic}/{p.partition}" for p in ps)))
        log.info("forwarding %s to %s (group %s)", topic, redact(self.url), self.group_id)
        try:
            while not self.stop.is_set():
                msg = consumer.poll(0.5)
                if msg is None:
                    continue
                if msg.error():
                    if msg.error().fatal():
                        raise BrokerError(f"reading {topic}: {msg.error()}")
                    log.warning("consumer: %s", msg.error())
                    continue
                if not self._handle(codec, msg):
                    break  # stopped mid-retry: not committed, a restart sends it again
                self._commit(consumer, msg)
        finally:
            consumer.close()  # leaves the group at once
            if self._deadletters is not None:
                self._deadletters.flush(10)
        return dict(self.counts)

    def _handle(self, codec: Codec, msg) -> bool:
        """Forward one record; False if stopped before it was settled."""
        alert = decode_alert(codec, msg)
        if alert is None or not matches(alert, self.model, self.deployment):
            self.counts["skipped"] += 1  # not an alert (the projector dead-letters those) or filtered out
            return True
        outcome, attempt, n = deliver(self.url, alert, timeout=self.timeout, max_retries=self.max_retries,
                                      backoff_base=self.backoff_base, backoff_cap=self.backoff_cap, stop=self.stop)
        if outcome == "stopped":
            return False
        if outcome == "exhausted":
            raise DeliveryError(f"alert {alert['idempotency_key']} not accepted by {redact(self.url)} after "
                                f"{n} attempts ({attempt.detail}); nothing committed, a restart retries it",
                                [("AlertChanged", attempt.detail)])
        if outcome == "rejected":
            log.error("alert %s rejected by %s: %s; dead-lettered", alert["idempotency_key"], redact(self.url),
                      attempt.detail)
            self._dead_letter(msg, f"POST {redact(self.url)}: {attempt.detail}")
            self.counts["rejected"] += 1
            return True
        log.info("delivered %s (%s, attempt %d)", alert["idempotency_key"], attempt.detail, n)
        self.counts["delivered"] += 1
        return True

    def _commit(self, consumer: Consumer, msg) -> None:
        try:
            consumer.commit(offsets=[TopicPartition(msg.topic(), msg.partition(), msg.offset() + 1)],
                            asynchronous=False)
        except KafkaException as exc:  # e.g. partition revoked meanwhile: its new owner sends it again
            log.warning("commit of %s/%s/%s failed: %s", msg.topic(), msg.partition(), msg.offset(), exc)

    def _dead_letter(self, msg, detail: str) -> None:
        """Publish the original record to the dead-letter topic (headers as the projector's), acknowledged."""
        if self._deadletters is None:
            self._deadletters = Producer(self.settings.librdkafka(**{
                "acks": "all", "enable.idempotence": True, "linger.ms": 5, "allow.auto.create.topics": False}))
        failed: list[str] = []
        self._deadletters.produce(
            self.settings.deadletter_topic, key=msg.key(), value=msg.value() or b"",
            headers=[("modelog.reason", DEAD_LETTER_REASON.encode()), ("modelog.detail", detail[:4000].encode()),
                     ("modelog.source", f"{msg.topic()}/{msg.partition()}/{msg.offset()}".encode())],
            on_delivery=lambda err, _m: failed.append(str(err)) if err is not None else None)
        if self._deadletters.flush(self.settings.flush_timeout) or failed:
            raise DeliveryError(f"could not dead-letter {msg.topic()}/{msg.partition()}/{msg.offset()}: "
                                f"{failed or 'timeout'}", [("AlertChanged", DEAD_LETTER_REASON)])

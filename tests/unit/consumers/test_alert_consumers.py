"""Alert payloads and text, and the webhook's retry policy against a local HTTP receiver (no broker)."""

from __future__ import annotations

import json
import socket
import threading
import time
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from modelog.consumers.alerts import alert_payload, format_text, matches
from modelog.consumers.webhook import Attempt, backoff, deliver, group_id, redact, retry_after

RECORD = {
    "envelope": {"event_id": "01890f5e-0000-7000-8009-000000000001", "event_type": "AlertChanged",
                 "occurred_at": 1_760_000_000_123_456, "actor": {"principal": "drift", "kind": "SERVICE"},
                 "source": {"host": "h", "pid": 1, "program": "tests", "sdk_version": "0.1.0"},
                 "entity": {"type": "monitor", "key": "monitor:credit-risk/prod"}},
    "alert_id": "credit-risk/prod/dataset_drift/3", "model": "credit-risk", "deployment": "prod",
    "rule": "dataset_drift", "state": "RAISED", "severity": "warning", "window": 3, "value": 0.6, "threshold": 0.5,
    "message": "60% of features drifted",
}


def test_payload_is_strict_json_with_the_idempotency_key():
    p = alert_payload(dict(RECORD, value=float("nan")), "modelog.alerts", 2, 17)
    assert p["idempotency_key"] == "credit-risk/prod/dataset_drift/3:RAISED"
    assert p["changed_at"] == "2025-10-09T08:53:20.123456Z"
    assert p["value"] is None and p["threshold"] == 0.5
    assert (p["topic"], p["partition"], p["offset"]) == ("modelog.alerts", 2, 17)
    json.loads(json.dumps(p, allow_nan=False))


def test_text_line_has_time_state_target_rule_value_vs_threshold_message_and_id():
    line = format_text(alert_payload(RECORD))
    assert line == ("2025-10-09T08:53:20.123Z  RAISED    credit-risk/prod  dataset_drift  0.6 >= 0.5  "
                    "60% of features drifted  [credit-risk/prod/dataset_drift/3]")
    resolved = format_text(alert_payload(dict(RECORD, state="RESOLVED", value=0.1)))
    assert "RESOLVED  credit-risk/prod  dataset_drift  0.1 < 0.5" in resolved
    assert "- vs 0.5" in format_text(alert_payload(dict(RECORD, value=None)))


def test_filters():
    p = alert_payload(RECORD)
    assert matches(p) and matches(p, "credit-risk", "prod")
    assert not matches(p, "other") and not matches(p, deployment="canary")


def test_backoff_grows_exponentially_with_jitter_and_a_cap():
    assert [backoff(n, 0.5, 60, rng=lambda: 1.0) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]
    assert [backoff(n, 0.5, 60, rng=lambda: 0.0) for n in (1, 2, 3)] == [0.25, 0.5, 1.0]
    assert backoff(30, 0.5, 60, rng=lambda: 1.0) == 60


def test_retry_after_seconds_and_http_dates():
    assert retry_after("3") == 3.0
    assert retry_after(None) is None and retry_after("soon") is None
    assert retry_after("999999") == 900.0
    now = time.time()
    assert 9 <= retry_after(formatdate(now + 10, usegmt=True), now=now) <= 10
    assert retry_after(formatdate(now - 10, usegmt=True), now=now) == 0.0


@pytest.mark.parametrize(("status", "outcome"), [(200, "delivered"), (204, "delivered"), (None, "retry"),
                                                 (500, "retry"), (503, "retry"), (429, "retry"), (408, "retry"),
                                                 (400, "rejected"), (404, "rejected"), (302, "rejected")])
def test_outcome_of_a_status(status, outcome):
    assert Attempt(status).outcome == outcome


def test_group_is_stable_per_url_topic_and_filters_and_logs_hide_paths():
    g = group_id("https://hooks.example/T0/secret", "modelog.alerts")
    assert g == group_id("https://hooks.example/T0/secret", "modelog.alerts") and g.startswith("modelog-webhook-")
    assert g != group_id("https://hooks.example/T0/other", "modelog.alerts")
    assert g != group_id("https://hooks.example/T0/secret", "modelog.alerts", model="m")
    assert redact("https://user:pw@hooks.example:8443/T0/secret?x=1") == "https://hooks.example:8443/…"
    assert redact("http://127.0.0.1:9000") == "http://127.0.0.1:9000/"


class Receiver:
    """An HTTP receiver answering a scripted list of (status, headers) in turn, then 200."""

    def __init__(self, script):
        self.script = list(script)
        self.requests: list[tuple[float, dict, dict]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                return None

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append((time.monotonic(), dict(self.headers), body))
                status, headers = outer.script.pop(0) if outer.script else (200, {})
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(request):
    r = Receiver(request.param)
    yield r
    r.close()


@pytest.mark.parametrize("receiver", [[(503, {"Retry-After": "1"}), (500, {}), (429, {})]], indirect=True)
def test_retries_until_accepted_honouring_retry_after(receiver):
    alert = alert_payload(RECORD)
    outcome, attempt, n = deliver(receiver.url, alert, timeout=5, max_retries=5, backoff_base=0.01)
    assert (outcome, attempt.status, n) == ("delivered", 200, 4)
    times = [t for t, _, _ in receiver.requests]
    assert times[1] - times[0] >= 0.95  # Retry-After: 1
    assert {h["Idempotency-Key"] for _, h, _ in receiver.requests} == {"credit-risk/prod/dataset_drift/3:RAISED"}
    assert receiver.requests[0][1]["Content-Type"] == "application/json"
    assert receiver.requests[-1][2] == alert


@pytest.mark.parametrize("receiver", [[(400, {})], [(302, {"Location": "http://127.0.0.1:1/"})]], indirect=True)
def test_a_4xx_or_a_redirect_rejects_without_retrying(receiver):
    outcome, attempt, n = deliver(receiver.url, alert_payload(RECORD), timeout=5, max_retries=5, backoff_base=0.01)
    assert (outcome, n) == ("rejected", 1) and attempt.status in (400, 302)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_connection_errors_are_retried_until_the_retries_run_out():
    outcome, attempt, n = deliver(f"http://127.0.0.1:{_closed_port()}/", alert_payload(RECORD), timeout=2,
                                  max_retries=2, backoff_base=0.01)
    assert (outcome, attempt.status, n) == ("exhausted", None, 3)
    assert "Connection refused" in attempt.detail or "Errno" in attempt.detail


def test_stop_interrupts_a_backoff():
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    started = time.monotonic()
    outcome, _, _ = deliver(f"http://127.0.0.1:{_closed_port()}/", alert_payload(RECORD), timeout=2,
                            max_retries=100, backoff_base=30, stop=stop)
    assert outcome == "stopped" and time.monotonic() - started < 5

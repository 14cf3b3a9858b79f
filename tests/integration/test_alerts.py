"""Alert consumers against the real broker: ``modelog alerts tail``, the webhook forwarder (at least once,
across restarts, with a receiver that fails first) and ``GET /metrics`` of a running processor."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from confluent_kafka import Consumer, TopicPartition

from conftest import run_cli
from waiting import wait_until

pytestmark = pytest.mark.broker


def publish_alert(client, alert_id: str, model: str, state: str = "RAISED", deployment: str = "prod",
                  value: float = 0.6) -> None:
    client.publish("AlertChanged", "monitor", f"monitor:{model}", alert_id=alert_id, model=model,
                   deployment=deployment, rule="dataset_drift", state=state, severity="warning", window=0,
                   value=value, threshold=0.5, message=f"{model}/{deployment}: {value:.0%} of features drifted")


def child_env(env: dict[str, str]) -> dict[str, str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("MODELOG_")}
    full.update(env, NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    return full


class Lines:
    """Collects a pipe's lines in a thread; ``wait_for(text)`` blocks until a line contains it."""

    def __init__(self, pipe) -> None:
        self.lines: list[str] = []
        self._cond = threading.Condition()
        threading.Thread(target=self._read, args=(pipe,), daemon=True).start()

    def _read(self, pipe) -> None:
        for line in pipe:
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()

    def wait_for(self, text: str, timeout: float = 60) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: any(text in line for line in self.lines), timeout):
                raise TimeoutError(f"no line with {text!r} in:\n{''.join(self.lines)}")


def test_tail_replays_history_or_shows_only_new_alerts(client, env, settings):
    a1, a2 = f"a1-{uuid.uuid4().hex[:6]}", f"a2-{uuid.uuid4().hex[:6]}"
    publish_alert(client, a1, "m1")
    publish_alert(client, a1, "m1", state="RESOLVED", value=0.1)  # same key, same partition, same batch
    publish_alert(client, a2, "m2")
    client.flush()

    out = run_cli(env, "alerts", "tail", "--from-beginning", "--max", "3", "--format", "json")
    alerts = [json.loads(line) for line in out.stdout.splitlines()]
    assert sorted((a["alert_id"], a["state"]) for a in alerts) == [(a1, "RAISED"), (a1, "RESOLVED"), (a2, "RAISED")]
    m1 = [a["state"] for a in alerts if a["model"] == "m1"]
    assert m1 == ["RAISED", "RESOLVED"]  # one model/deployment is one partition: in order
    first = next(a for a in alerts if a["alert_id"] == a2)
    assert first["idempotency_key"] == f"{a2}:RAISED" and first["value"] == 0.6 and first["threshold"] == 0.5
    assert first["topic"] == settings.alerts_topic and first["changed_at"].endswith("Z")

    text = run_cli(env, "alerts", "tail", "--from-beginning", "--max", "1", "--model", "m2").stdout
    assert "RAISED" in text and "m2/prod" in text and "0.6 >= 0.5" in text and f"[{a2}]" in text

    # default: start at the end. tansu's ListOffsets answers the newest batch's start + 1, which would
    # re-read a1's RESOLVED here; tail must print only the alert published after it reported ready.
    proc = subprocess.Popen([sys.executable, "-m", "modelog", "alerts", "tail", "--max", "1", "--format", "json"],
                            env=child_env(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        Lines(proc.stderr).wait_for("ready")
        a3 = f"a3-{uuid.uuid4().hex[:6]}"
        publish_alert(client, a3, "m1")
        client.flush()
        stdout, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0
    assert [(a["alert_id"], a["state"]) for a in map(json.loads, stdout.splitlines())] == [(a3, "RAISED")]


class Receiver:
    """A webhook receiver: the very first POST gets 503 (Retry-After: 1), model 'bad' gets 422, others 200."""

    def __init__(self) -> None:
        self.log: list[tuple[str, int, dict, dict]] = []  # (idempotency key, status answered, headers, body)
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a) -> None:
                return None

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer.lock:
                    status = 503 if not outer.log else 422 if body["model"] == "bad" else 200
                    outer.log.append((self.headers["Idempotency-Key"], status, dict(self.headers), body))
                self.send_response(status)
                if status == 503:
                    self.send_header("Retry-After", "1")
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def accepted(self) -> list[str]:
        with self.lock:
            return [k for k, status, _, _ in self.log if status == 200]

    def wait(self, keys: set[str], timeout: float = 60) -> None:
        """Until every key was accepted (keys of model 'bad': answered at all)."""
        def done() -> bool:
            with self.lock:
                answered = {k for k, _, _, _ in self.log}
            return keys <= set(self.accepted()) | {k for k in answered if k.startswith("bad")}

        wait_until(done, timeout, lambda: f"the receiver answered {sorted(keys)}; it got {self.log}")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


class Forwarder:
    def __init__(self, env: dict[str, str], url: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "modelog", "alerts", "webhook", url, "--backoff", "0.05",
                                      "--timeout", "5"], env=child_env(env), stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)

    def stop(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate(timeout=10)
        return self.proc.returncode, out


def test_webhook_delivers_every_alert_at_least_once_across_restarts(client, env, settings, receiver):
    a1, a2, bad = f"a1-{uuid.uuid4().hex[:6]}", f"a2-{uuid.uuid4().hex[:6]}", f"bad-{uuid.uuid4().hex[:6]}"
    publish_alert(client, a1, "m1")
    publish_alert(client, a2, "m2")
    publish_alert(client, bad, "bad")
    client.flush()

    first = Forwarder(env, receiver.url)
    try:
        receiver.wait({f"{a1}:RAISED", f"{a2}:RAISED", f"{bad}:RAISED"})
    finally:
        rc, out = first.stop()
    assert rc == 0, out
    assert "1 rejected" in out and "rejected by http://127.0.0.1" in out and "/hooks" not in out  # path redacted
    retried = receiver.log[0][0]
    assert receiver.log[0][1] == 503  # the very first POST; retried after Retry-After (checked below)

    publish_alert(client, a1, "m1", state="RESOLVED", value=0.1)  # while no forwarder runs
    # end markers, one per model so one behind every earlier alert on its partition: the forwarder
    # handles a partition in log order, so once a marker is answered, anything the restarted forwarder
    # would re-send from that partition has been sent before it
    markers = {model: f"{'bad-' if model == 'bad' else ''}end-{model}-{uuid.uuid4().hex[:6]}"
               for model in ("m1", "m2", "bad")}
    for model, marker in markers.items():
        publish_alert(client, marker, model)
    client.flush()
    before_restart = len(receiver.log)
    second = Forwarder(env, receiver.url)
    try:
        receiver.wait({f"{a1}:RESOLVED"} | {f"{m}:RAISED" for m in markers.values()})
    finally:
        rc, out = second.stop()
    assert rc == 0, out

    # after the restart: exactly the alert published meanwhile and the markers, each once -- nothing
    # acknowledged (or rejected) before the restart is sent again
    after = sorted((k, status) for k, status, _, _ in receiver.log[before_restart:])
    assert after == sorted([(f"{a1}:RESOLVED", 200), (f"{markers['m1']}:RAISED", 200),
                            (f"{markers['m2']}:RAISED", 200), (f"{markers['bad']}:RAISED", 422)])
    accepted = receiver.accepted()
    assert sorted(accepted) == sorted([f"{a1}:RAISED", f"{a2}:RAISED", f"{a1}:RESOLVED",
                                       f"{markers['m1']}:RAISED", f"{markers['m2']}:RAISED"])  # each once
    # the first forwarder: one 503 (retried after Retry-After), then each of its three alerts answered once
    assert sorted((k, status) for k, status, _, _ in receiver.log[:before_restart]) == sorted(
        [(retried, 503), (f"{a1}:RAISED", 200), (f"{a2}:RAISED", 200), (f"{bad}:RAISED", 422)])
    assert [k for k, status, _, _ in receiver.log if status == 422] == [f"{bad}:RAISED", f"{markers['bad']}:RAISED"]

    key, _, headers, body = next(e for e in receiver.log if e[0] == f"{a2}:RAISED" and e[1] == 200)
    assert headers["Content-Type"] == "application/json" and headers["Idempotency-Key"] == key
    assert body["alert_id"] == a2 and body["state"] == "RAISED" and body["model"] == "m2"
    assert body["rule"] == "dataset_drift" and body["value"] == 0.6 and body["threshold"] == 0.5
    assert headers["X-Modelog-Event-Id"] == body["event_id"]

    # the rejected alert is on the dead-letter topic with the reason and where it came from
    consumer = Consumer(settings.librdkafka(**{"group.id": f"dlq-{uuid.uuid4().hex}", "enable.auto.commit": False}))
    try:
        parts = consumer.list_topics(timeout=30).topics[settings.deadletter_topic].partitions
        consumer.assign([TopicPartition(settings.deadletter_topic, p, 0) for p in parts])
        found = None
        deadline = time.monotonic() + 30
        while found is None and time.monotonic() < deadline:
            m = consumer.poll(0.5)
            if m is not None and not m.error():
                headers = {k: v.decode() for k, v in m.headers()}
                if headers.get("modelog.reason") == "webhook_rejected":
                    found = headers
    finally:
        consumer.close()
    assert found is not None
    assert found["modelog.source"].startswith(settings.alerts_topic + "/") and "HTTP 422" in found["modelog.detail"]


def _metrics(settings) -> str:
    info = json.loads((settings.home / "processor.json").read_text())
    with urllib.request.urlopen(info["metrics_url"], timeout=10) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return resp.read().decode()


def test_metrics_show_open_alerts_and_the_projector_lag(client, processor, settings):
    alert = f"a-{uuid.uuid4().hex[:6]}"
    publish_alert(client, alert, "m1")
    client.wait_projected(timeout=30)
    sample = 'modelog_alert_open{model="m1",deployment="prod",rule="dataset_drift"}'
    assert f"{sample} 1\n" in _metrics(settings)

    publish_alert(client, alert, "m1", state="RESOLVED", value=0.1)
    client.wait_projected(timeout=30)
    text = _metrics(settings)
    assert f"{sample} 0\n" in text
    assert 'modelog_events_projected_total{event_type="AlertChanged"} 2\n' in text

    (topic, partition), offset = next(iter(client.emitter.positions.items()))
    labels = f'{{topic="{topic}",partition="{partition}"}}'
    sample = f"modelog_processor_high_watermark{labels} {offset + 1}\n"
    # high watermarks are sampled each second
    def sampled() -> str | None:
        text = _metrics(settings)
        return text if sample in text else None

    text = wait_until(sampled, 15, f"/metrics shows {sample.strip()!r}", interval=0.2)
    assert f"modelog_processor_lag_records{labels} 0\n" in text
    assert f"modelog_processor_next_offset{labels} {offset + 1}\n" in text

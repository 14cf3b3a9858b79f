"""Garbage, unknown schema ids and invalid events go to the dead-letter topic; the processor keeps going."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer

import modelog
from factories import sample_records
from modelog.wire.codec import Codec

pytestmark = pytest.mark.broker


def test_bad_records_are_dead_lettered_with_a_reason(client, processor, settings, bootstrap):
    client.create_experiment("warmup")
    client.flush()
    invalid = dict(sample_records()["MetricsLogged"])
    invalid["envelope"] = dict(invalid["envelope"], event_id=str(uuid.uuid4()))
    invalid["points"] = [{"key": "bad key!", "value": 1.0, "step": 0, "timestamp": 1}]
    invalid["columns"] = None
    bad = {
        b"garbage": "not_modelog_event",
        b"\xc3\x01" + b"\x42" * 8 + b"\x00": "unknown_schema",
        Codec().encode("MetricsLogged", invalid): "invalid_event",
    }
    producer = Producer({"bootstrap.servers": bootstrap})
    for value in bad:
        producer.produce(settings.tracking_topic, key=b"poison", value=value)
    producer.flush(10)

    with client.start_run(experiment="after", name="still-works") as run:  # the processor keeps going
        run.log_metric("ok", 1.0)
    client.wait_projected(timeout=30)
    assert modelog.sql("SELECT name FROM runs", settings).values.tolist() == [["still-works"]]

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        rows = modelog.sql_arrow("SELECT reason, detail FROM dead_letters ORDER BY reason", settings).to_pylist()
        if len(rows) == 3:
            break
        time.sleep(0.1)
    assert sorted(r["reason"] for r in rows) == sorted(bad.values())
    assert any("bad key!" in r["detail"] or "points.0.key" in r["detail"] for r in rows)

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"dlq-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "session.timeout.ms": 6000})
    consumer.subscribe([settings.deadletter_topic])
    got = {}
    try:
        deadline = time.monotonic() + 30
        while len(got) < 3 and time.monotonic() < deadline:
            m = consumer.poll(0.5)
            if m is None or m.error():
                continue
            headers = dict(m.headers())
            got[m.value()] = (headers["modelog.reason"].decode(), headers["modelog.source"].decode())
    finally:
        consumer.close()
    assert {v: r for v, (r, _) in got.items()} == bad
    assert all(src.startswith(settings.tracking_topic + "/") for _, src in got.values())

"""Idempotence: duplicates change nothing; kill -9 mid-batch, restart: nothing lost, nothing doubled."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

import modelog
from conftest import Processor

pytestmark = pytest.mark.broker

VIEWS = ("experiments", "runs", "params", "metrics", "latest_metrics", "tags", "artifacts")


def snapshot(settings):
    return {v: sorted(map(repr, modelog.sql_arrow(f"SELECT * FROM {v}", settings).to_pylist())) for v in VIEWS}


def read_all(bootstrap, topic):
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"copy-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    parts = consumer.list_topics(timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in parts])
    out, idle = [], 0
    while idle < 10:
        msgs = consumer.consume(500, timeout=0.2)
        idle = 0 if msgs else idle + 1
        out += [(m.key(), m.value()) for m in msgs if not m.error()]
    consumer.close()
    return out


def test_the_same_events_delivered_twice_leave_the_views_unchanged(client, processor, settings, bootstrap):
    with client.start_run(experiment="dup", name="r", tags={"x": "1"}) as run:
        run.log_params({"a": 1})
        for s in range(50):
            run.log_metrics({"m": s * 0.5}, step=s)
    client.wait_projected()
    before = snapshot(settings)
    assert len(before["metrics"]) == 50

    records = read_all(bootstrap, settings.tracking_topic)
    producer = Producer({"bootstrap.servers": bootstrap})
    for key, value in records:  # the whole log again, byte for byte
        producer.produce(settings.tracking_topic, key=key, value=value)
    producer.flush(10)
    with client.start_run(experiment="dup", name="marker") as marker:  # to know when the copies are consumed
        pass
    client.wait_projected()
    after = snapshot(settings)
    assert {k: v for k, v in after.items() if k not in ("runs", "experiments")} == \
        {k: v for k, v in before.items() if k not in ("runs", "experiments")}
    assert [r for r in after["runs"] if marker.id not in r] == before["runs"]
    audit = modelog.sql("SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM audit_log", settings)
    assert audit.n[0] == audit.d[0] == len(records) + 2  # marker's RunStarted + RunEnded (experiment known)


def test_kill_9_mid_batch_then_restart_loses_and_duplicates_nothing(env, client, settings):
    runs, events, per_event = 4, 300, 200  # 240,000 points in 1,200 events: several processor batches
    for i in range(runs):
        with client.start_run(experiment="crash", name=f"r{i}") as run:
            for e in range(events):
                points = [{"key": f"k{j % 20}", "value": float(j), "step": e * 10 + j // 20,
                           "timestamp": 1_760_000_000_000_000 + j} for j in range(per_event)]
                client.publish("MetricsLogged", "run", run.id, run_id=run.id, points=points)
    client.flush()
    expected = runs * events * per_event

    proc = Processor(env, settings).start()
    deadline = time.monotonic() + 60
    seen = 0
    while time.monotonic() < deadline:  # kill as soon as it is part-way through
        try:
            seen = int(modelog.sql("SELECT count(*) AS n FROM log_metrics", settings).n[0])
        except modelog.QueryError:
            seen = 0
        if seen > 0:
            break
        time.sleep(0.01)
    proc.kill9()
    assert 0 < seen < expected, f"expected to kill part-way, saw {seen}/{expected}"

    proc = Processor(env, settings).start()
    try:
        client.wait_projected(timeout=120)
        counts = modelog.sql(
            "SELECT count(*) AS n, count(DISTINCT (run_id, key, step)) AS d FROM metrics", settings)
        assert counts.n[0] == counts.d[0] == expected
        status = modelog.sql("SELECT status, count(*) AS n FROM runs GROUP BY status", settings).values.tolist()
        assert status == [["FINISHED", runs]]
    finally:
        proc.stop()

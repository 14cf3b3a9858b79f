"""Idempotence: duplicates change nothing; kill -9 mid-batch, restart: nothing lost, nothing doubled."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

import modelog
from modelog import Client, Settings
from conftest import Processor
from waiting import wait_until

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


def _publish_runs(client, runs: int, events: int, per_event: int) -> int:
    """``runs`` finished runs of ``events`` MetricsLogged events with ``per_event`` points each; the points."""
    for i in range(runs):
        with client.start_run(experiment="crash", name=f"r{i}") as run:
            for e in range(events):
                points = [{"key": f"k{j % 20}", "value": float(j), "step": e * 10 + j // 20,
                           "timestamp": 1_760_000_000_000_000 + j} for j in range(per_event)]
                client.publish("MetricsLogged", "run", run.id, run_id=run.id, points=points)
    client.flush()
    return runs * events * per_event


def _projected_points(settings) -> int:
    try:
        return int(modelog.sql("SELECT count(*) AS n FROM log_metrics", settings).n[0])
    except modelog.QueryError:  # no views file (or table) yet
        return 0


def _kill_part_way(env, settings, client, runs: int) -> tuple[int, int]:
    """Publish, start a processor, SIGKILL it once the views hold some points; return (expected points,
    points the views file holds after the kill, read from the file with no processor running)."""
    expected = _publish_runs(client, runs, events=300, per_event=200)
    proc = Processor(env, settings).start()
    try:
        wait_until(lambda: _projected_points(settings) > 0, 60, "the processor projected some points")
    finally:
        proc.kill9()
    return expected, _projected_points(settings)


def test_kill_9_mid_batch_then_restart_loses_and_duplicates_nothing(env, client, settings, tmp_path):
    # 4 runs: 240,000 points in 1,200 events, several processor batches. If the processor got through all
    # of them before the kill landed, the test would prove nothing: try again, in a fresh deployment
    # (own topics and home), with twice the data.
    runs, attempts = 4, []
    for attempt in range(3):
        if attempt:
            env = env | {"MODELOG_HOME": str(tmp_path / f"home-retry-{attempt}"),
                         "MODELOG_TOPIC_PREFIX": f"t{uuid.uuid4().hex[:10]}."}
            settings = Settings.load(env=env)
            client = Client(settings)
        expected, at_kill = _kill_part_way(env, settings, client, runs)
        attempts.append((runs, at_kill, expected))
        if 0 < at_kill < expected:
            break
        if attempt:
            client.close()
        runs *= 2
    else:
        pytest.fail(f"the kill never landed part-way (runs, points at the kill, points published): {attempts}")

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
        if len(attempts) > 1:
            client.close()

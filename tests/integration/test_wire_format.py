"""A reader with only the .avsc files decodes any record: plain consumer + fastavro, no modelog code."""

from __future__ import annotations

import glob
import io
import math
import uuid

import numpy as np
import pytest
from confluent_kafka import Consumer, TopicPartition
from fastavro import schemaless_reader
from fastavro.schema import fingerprint, load_schema, to_parsing_canonical_form

pytestmark = pytest.mark.broker


def test_plain_consumer_and_fastavro_decode_every_record(client, settings, bootstrap):
    with client.start_run(experiment="raw", name="r", tags={"a": "b"}) as run:
        run.log_params({"lr": 0.1})
        run.log_metrics({"loss": math.nan, "acc": 0.5}, step=2)
        run.set_tags({"c": "d"})
    client.flush()

    # Only the schema files: index them by the fingerprint the single-object header carries.
    import modelog.schemas

    by_fp = {}
    for path in glob.glob(str(modelog.schemas.SCHEMA_DIR / "modelog.events.*.avsc")):
        schema = load_schema(path)
        by_fp[bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))] = schema

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"raw-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "session.timeout.ms": 6000})
    meta = consumer.list_topics(timeout=10).topics[settings.tracking_topic]
    consumer.assign([TopicPartition(settings.tracking_topic, p, 0) for p in meta.partitions])
    decoded = []
    try:
        for _ in range(100):
            for m in consumer.consume(100, timeout=0.2):
                value = m.value()
                assert value[:2] == b"\xc3\x01", "Avro single-object encoding marker"
                record = schemaless_reader(io.BytesIO(value[10:]), by_fp[value[2:10]])
                assert m.key().decode() == record["envelope"]["entity"]["key"]
                decoded.append(record)
            if len(decoded) >= 6:
                break
    finally:
        consumer.close()
    types = sorted(r["envelope"]["event_type"] for r in decoded)
    assert types == sorted(["ExperimentCreated", "RunStarted", "ParamsLogged", "MetricsLogged", "TagsSet", "RunEnded"])
    # the SDK's batches are columnar (decision 0021): the schema's documented little-endian layout is all
    # a reader needs, here plain numpy
    columns = next(r for r in decoded if r["envelope"]["event_type"] == "MetricsLogged")["columns"]
    keys = [columns["keys"][i] for i in np.frombuffer(columns["key_index"], "<i4")]
    values = np.frombuffer(columns["values"], "<f8")
    assert len(keys) == len(values) == len(np.frombuffer(columns["steps"], "<i8"))
    assert set(keys) == {"loss", "acc"} and any(math.isnan(v) for v in values)
    assert all(r["envelope"]["actor"]["principal"] == "tester" for r in decoded)

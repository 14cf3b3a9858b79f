"""Topic names and configuration; idempotent creation.

Metadata topics never expire: the log is the audit trail (retention.ms = -1,
retention.bytes = -1, cleanup.policy = delete: never compacted away).
"""

from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from modelog.wire.settings import Settings
from modelog.wire.errors import BrokerError

METADATA_TOPIC_CONFIG = {
    "retention.ms": "-1",
    "retention.bytes": "-1",
    "cleanup.policy": "delete",
    "min.insync.replicas": "1",
}

# reference profiles (samples of up to 10,000 values per column) and prediction batches exceed
# Kafka's 1 MB default record limit
LARGE_RECORDS = {"max.message.bytes": str(16 * 1024 * 1024)}

_ensured: set[tuple[str, str]] = set()


def ensure_topics(settings: Settings, timeout: float = 30.0) -> None:
    """Create the metadata topics if missing (idempotent; cached per process)."""
    bootstrap = settings.resolve_bootstrap()
    wanted = [t for t in settings.metadata_topics if (bootstrap, t) not in _ensured]
    if not wanted:
        return
    admin = AdminClient(settings.librdkafka())
    try:
        existing = set(admin.list_topics(timeout=timeout).topics)  # no topic= : that would auto-create
    except KafkaException as exc:
        raise BrokerError(f"cannot reach Kafka at {bootstrap}: {exc}") from exc
    config = dict(METADATA_TOPIC_CONFIG)
    if settings.replication > 1:
        config["min.insync.replicas"] = str(min(2, settings.replication))
    new = [
        NewTopic(t, num_partitions=settings.partitions, replication_factor=settings.replication,
                 config=config | (LARGE_RECORDS if t == settings.monitoring_topic else {}))
        for t in wanted if t not in existing
    ]
    if new:
        for topic, future in admin.create_topics(new, request_timeout=timeout).items():
            try:
                future.result(timeout=timeout)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise BrokerError(f"cannot create topic {topic}: {exc}") from exc
    for t in wanted:
        _ensured.add((bootstrap, t))

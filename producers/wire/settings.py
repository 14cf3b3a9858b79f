"""Settings: built once from arguments -> environment (``MODELOG_*``) -> defaults.

Nothing deeper than the edges (SDK entry points, CLI, processor start) reads
``os.environ``; they build one frozen :class:`Settings` and pass it down.

Environment variables
---------------------
MODELOG_HOME                 data directory: broker state, logs, views (default ``~/.modelog``)
MODELOG_KAFKA_BOOTSTRAP      bootstrap servers of your Kafka; unset = the embedded broker
MODELOG_KAFKA_<OPTION>       any librdkafka option, passed through: ``MODELOG_KAFKA_SECURITY_PROTOCOL``
                             -> ``security.protocol`` (underscores become dots, lower case)
MODELOG_TOPIC_PREFIX         prefix of every topic (default ``modelog.``)
MODELOG_TOPIC_PARTITIONS     partitions of topics modelog creates (default 4)
MODELOG_TOPIC_REPLICATION    replication factor of topics modelog creates (default 1)
MODELOG_PRINCIPAL            the actor recorded on events (default: the OS user)
MODELOG_ACTOR_KIND           USER or SERVICE (default USER)
MODELOG_DB                   DuckDB file of the views (default ``$MODELOG_HOME/views.duckdb``)
MODELOG_DUCKDB_MEMORY_LIMIT  memory DuckDB may use for the views, per views file or shard (e.g. ``1GB``; default
                             DuckDB's own: 80% of RAM). Its buffer cache grows with the views up to this
MODELOG_SQL_TIMEOUT          seconds one SQL statement from a user may run before it is stopped (default 60)
MODELOG_SQL_MAX_ROWS         rows one SQL answer may hold (default 5,000,000); more is a clear error
MODELOG_SQL_CACHE_MB         memory the SQL endpoint may keep answers in until the views next change (default 64;
                             0: none). Only statements that read neither the clock nor chance are kept
MODELOG_LAKE                 where several projector workers publish: Delta Lake tables in a directory or
                             at ``s3://bucket/prefix`` (any S3-compatible store; endpoint and credentials from
                             the standard AWS_* variables, as for MODELOG_ARTIFACT_URI). Each worker projects
                             the partitions it is given into shards of its own and appends them there; the
                             views read them all (decisions 0009, 0024). Unset: one processor, one views
                             file (MODELOG_DB)
MODELOG_SCHEMA_REGISTRY_URL  Confluent Schema Registry; set = Confluent framing instead of single-object
MODELOG_SESSION_TIMEOUT_MS   consumer group session timeout (default 6000)
MODELOG_LINGER_MS            how long the SDK gathers metric points into one event (default 50)
MODELOG_FLUSH_TIMEOUT        seconds ``end_run`` waits for delivery before raising (default 30)
MODELOG_PROCESSOR_ID         consumer group / faust app id of the projector (default ``modelog-projector``)
MODELOG_PROCESSOR_HOST       address the processor's HTTP endpoint binds (default 127.0.0.1; 0.0.0.0 in a
                             container, for probes and Prometheus; the SQL endpoint is read-only)
MODELOG_PROCESSOR_PORT       port of the processor's HTTP endpoint (/sql, /health, /metrics);
                             default 0: a free port, written to ``$MODELOG_HOME/processor.json``
MODELOG_URL                  a modelog server (``modelog serve``), e.g. ``https://modelog.example.com``: the SDK
                             publishes through its API (``POST /api/v1/events``) instead of the broker, for jobs
                             that cannot reach Kafka. The actor is the token's principal, not MODELOG_PRINCIPAL
MODELOG_TOKEN                the API token (``mlg_...``) sent with MODELOG_URL (``modelog token create``)
MODELOG_ARTIFACT_URI         where ``log_artifact`` stores the bytes, content-addressed by sha256:
                             ``s3://bucket/prefix`` (any S3-compatible store; endpoint and credentials from the
                             standard ``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
                             ``AWS_SESSION_TOKEN``, ``AWS_REGION``) or ``file:///a/directory``. Unset: the
                             embedded broker's S3 server under MODELOG_HOME (bucket ``modelog-artifacts``)
                             (docs/artifacts.md)
MODELOG_SIGNING_KEY          this process's Ed25519 signing key: a path to a PEM file, or the PEM text. Unset: the
                             key file of MODELOG_PRINCIPAL under ``$MODELOG_HOME/keys/`` if there is one, else
                             events are published unsigned (``modelog keys create``; decision 0015)
MODELOG_CHECKPOINT_EVERY     the processor signs a checkpoint of a partition's Merkle tree every this many
                             records of it (default 1000; decision 0023, ``modelog audit verify``)
MODELOG_CHECKPOINT_SECONDS   ... and at the latest this many seconds after its oldest record not checkpointed
                             yet (default 60; 0: only every MODELOG_CHECKPOINT_EVERY records)
"""

from __future__ import annotations

import dataclasses
import getpass
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelog.wire.errors import ConfigError

_PREFIX = "MODELOG_"
_PASSTHROUGH = "MODELOG_KAFKA_"


MONITORING_EVENTS = frozenset({"ReferenceProfileLogged", "PredictionsLogged", "LabelsLogged", "MonitorConfigured",
                               "DriftMeasured"})


@dataclass(frozen=True)
class Settings:
    """Every setting modelog reads. Build with :meth:`Settings.load`."""

    home: Path
    bootstrap: str | None = None
    kafka_options: Mapping[str, str] = field(default_factory=dict)
    topic_prefix: str = "modelog."
    partitions: int = 4
    replication: int = 1
    principal: str = "unknown"
    actor_kind: str = "USER"
    db_path: Path | None = None
    lake_path: Path | str | None = None  # a directory, or an ``s3://bucket/prefix`` URI (kept as a string)
    duckdb_memory_limit: str | None = None
    sql_timeout: float = 60.0
    sql_max_rows: int = 5_000_000
    sql_cache_mb: float = 64.0
    schema_registry_url: str | None = None
    session_timeout_ms: int = 6000
    linger_ms: int = 50
    flush_timeout: float = 30.0
    processor_id: str = "modelog-projector"
    processor_port: int = 0
    processor_host: str = "127.0.0.1"
    url: str | None = None
    token: str | None = field(default=None, repr=False)
    artifact_uri: str | None = None
    artifact_options: Mapping[str, str] = field(default_factory=dict, repr=False)  # AWS_* for the S3 client
    signing_key: str | None = field(default=None, repr=False)
    checkpoint_every: int = 1000
    checkpoint_seconds: float = 60.0

    # -- derived -----------------------------------------------------------------
    @property
    def views_path(self) -> Path:
        return self.db_path if self.db_path is not None else self.home / "views.duckdb"

    @property
    def views_target(self) -> Path:
        """Where the views live: the lake when several workers share the log, else the views file."""
        return self.lake_path if self.lake_path is not None else self.views_path

    @property
    def tracking_topic(self) -> str:
        return f"{self.topic_prefix}tracking"

    @property
    def deadletter_topic(self) -> str:
        return f"{self.topic_prefix}deadletter"

    @property
    def monitoring_topic(self) -> str:
        """Reference profiles, production predictions and labels, monitor configuration, drift metrics."""
        return f"{self.topic_prefix}monitoring"

    @property
    def alerts_topic(self) -> str:
        """Alerts the drift processor raises and resolves (what alert consumers read)."""
        return f"{self.topic_prefix}alerts"

    @property
    def checkpoints_topic(self) -> str:
        """The processors' signed checkpoints of the projected partitions' Merkle trees (decision 0023)."""
        return f"{self.topic_prefix}checkpoints"

    @property
    def metadata_topics(self) -> tuple[str, ...]:
        return (self.tracking_topic, self.deadletter_topic, self.monitoring_topic, self.alerts_topic,
                self.checkpoints_topic)

    @property
    def projected_topics(self) -> tuple[str, ...]:
        """The topics the projector reads into the views."""
        return (self.tracking_topic, self.monitoring_topic, self.alerts_topic)

    def topic_for(self, event_type: str) -> str:
        """The topic an event type is published to."""
        if event_type in MONITORING_EVENTS:
            return self.monitoring_topic
        if event_type == "AlertChanged":
            return self.alerts_topic
        if event_type == "LogCheckpoint":
            return self.checkpoints_topic
        return self.tracking_topic

    @property
    def heartbeat_ms(self) -> int:
        return max(100, self.session_timeout_ms // 4)

    def resolve_bootstrap(self) -> str:
        """The bootstrap servers to use: the setting, else the running embedded broker."""
        if self.bootstrap:
            return self.bootstrap
        from modelog.wire.home import embedded_broker_address

        address = embedded_broker_address(self.home)
        if address is None:
            raise ConfigError(
                "MODELOG_KAFKA_BOOTSTRAP: no broker configured and the embedded broker is not "
                f"running under {self.home}; run `modelog broker start` or set MODELOG_KAFKA_BOOTSTRAP"
            )
        return address

    def librdkafka(self, **extra: Any) -> dict[str, Any]:
        """Base librdkafka configuration (bootstrap + pass-through options) plus ``extra``."""
        conf: dict[str, Any] = {"bootstrap.servers": self.resolve_bootstrap()}
        conf.update(self.kafka_options)
        conf.update(extra)
        return conf

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    # -- loading -----------------------------------------------------------------
    @classmethod
    def load(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Arguments win over ``MODELOG_*`` environment variables, which win over defaults.

        Raises ConfigError naming the variable for unknown ``MODELOG_*`` names and bad values.
        """
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        passthrough: dict[str, str] = {}
        for name, raw in env.items():
            if not name.startswith(_PREFIX):
                continue
            spec = _ENV.get(name)
            if spec is not None:
                attr, convert = spec
                try:
                    values[attr] = convert(raw)
                except (TypeError, ValueError) as exc:
                    raise ConfigError(f"{name}: {exc} (got {raw!r})") from exc
            elif name.startswith(_PASSTHROUGH):
                option = name[len(_PASSTHROUGH):].lower().replace("_", ".")
                passthrough[option] = raw
            else:
                known = ", ".join(sorted(_ENV))
                raise ConfigError(f"{name}: unknown setting; known: {known}, MODELOG_KAFKA_<librdkafka option>")
        if passthrough:
            values["kafka_options"] = passthrough
        aws = {option: env[name] for name, option in _AWS.items() if env.get(name)}
        if aws:
            values["artifact_options"] = aws
        values.update({k: v for k, v in overrides.items() if v is not None})
        values.setdefault("home", Path("~/.modelog").expanduser())
        values["home"] = Path(values["home"]).expanduser().resolve()
        values.setdefault("principal", _default_principal())
        for attr in ("db_path", "lake_path"):
            if values.get(attr) is not None:
                values[attr] = _location(values[attr]) if attr == "lake_path" else Path(values[attr]).expanduser().resolve()
        settings = cls(**values)
        settings._check()
        return settings

    def _check(self) -> None:
        if self.actor_kind not in ("USER", "SERVICE"):
            raise ConfigError(f"MODELOG_ACTOR_KIND: must be USER or SERVICE (got {self.actor_kind!r})")
        for attr, name in (("partitions", "MODELOG_TOPIC_PARTITIONS"), ("replication", "MODELOG_TOPIC_REPLICATION"),
                           ("session_timeout_ms", "MODELOG_SESSION_TIMEOUT_MS"), ("sql_max_rows", "MODELOG_SQL_MAX_ROWS"),
                           ("checkpoint_every", "MODELOG_CHECKPOINT_EVERY")):
            if getattr(self, attr) < 1:
                raise ConfigError(f"{name}: must be >= 1 (got {getattr(self, attr)})")
        if not self.checkpoint_seconds >= 0:
            raise ConfigError(f"MODELOG_CHECKPOINT_SECONDS: must be >= 0 (got {self.checkpoint_seconds})")
        if not self.sql_cache_mb >= 0:
            raise ConfigError(f"MODELOG_SQL_CACHE_MB: must be >= 0 (got {self.sql_cache_mb}; 0 keeps no answers)")
        if not self.sql_timeout > 0:
            raise ConfigError(f"MODELOG_SQL_TIMEOUT: must be > 0 seconds (got {self.sql_timeout})")
        if self.linger_ms < 0 or self.flush_timeout <= 0:
            raise ConfigError("MODELOG_LINGER_MS must be >= 0 and MODELOG_FLUSH_TIMEOUT > 0")
        if not 0 <= self.processor_port <= 65535:
            raise ConfigError(f"MODELOG_PROCESSOR_PORT: must be 0..65535 (got {self.processor_port})")
        if not self.principal.strip():
            raise ConfigError("MODELOG_PRINCIPAL: must not be empty")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ConfigError(f"MODELOG_URL: must start with http:// or https:// (got {self.url!r})")
        if self.url is not None and not self.token:
            raise ConfigError("MODELOG_TOKEN: required with MODELOG_URL (an API token: modelog token create)")
        if self.artifact_uri is not None and not re.fullmatch(r"(s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/.*)?"
                                                              r"|file:///.*)", self.artifact_uri):
            raise ConfigError("MODELOG_ARTIFACT_URI: must be s3://bucket[/prefix] or file:///absolute/directory "
                              f"(got {self.artifact_uri!r})")


def _positive_int(raw: str) -> int:
    return int(raw)


def _default_principal() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return f"uid-{os.getuid()}"


_ENV: dict[str, tuple[str, Any]] = {
    "MODELOG_HOME": ("home", Path),
    "MODELOG_KAFKA_BOOTSTRAP": ("bootstrap", str),
    "MODELOG_TOPIC_PREFIX": ("topic_prefix", str),
    "MODELOG_TOPIC_PARTITIONS": ("partitions", _positive_int),
    "MODELOG_TOPIC_REPLICATION": ("replication", _positive_int),
    "MODELOG_PRINCIPAL": ("principal", str),
    "MODELOG_ACTOR_KIND": ("actor_kind", str.upper),
    "MODELOG_DB": ("db_path", Path),
    "MODELOG_LAKE": ("lake_path", str),
    "MODELOG_DUCKDB_MEMORY_LIMIT": ("duckdb_memory_limit", str),
    "MODELOG_SQL_TIMEOUT": ("sql_timeout", float),
    "MODELOG_SQL_MAX_ROWS": ("sql_max_rows", _positive_int),
    "MODELOG_SQL_CACHE_MB": ("sql_cache_mb", float),
    "MODELOG_SCHEMA_REGISTRY_URL": ("schema_registry_url", str),
    "MODELOG_SESSION_TIMEOUT_MS": ("session_timeout_ms", int),
    "MODELOG_LINGER_MS": ("linger_ms", int),
    "MODELOG_FLUSH_TIMEOUT": ("flush_timeout", float),
    "MODELOG_PROCESSOR_ID": ("processor_id", str),
    "MODELOG_PROCESSOR_PORT": ("processor_port", int),
    "MODELOG_PROCESSOR_HOST": ("processor_host", str),
    "MODELOG_URL": ("url", str),
    "MODELOG_TOKEN": ("token", str),
    "MODELOG_ARTIFACT_URI": ("artifact_uri", str),
    "MODELOG_SIGNING_KEY": ("signing_key", str),
    "MODELOG_CHECKPOINT_EVERY": ("checkpoint_every", _positive_int),
    "MODELOG_CHECKPOINT_SECONDS": ("checkpoint_seconds", float),
}

def _location(value: Path | str) -> Path | str:
    """MODELOG_LAKE: ``s3://bucket/prefix`` as given; a directory or ``file://`` URI as an absolute path."""
    text = str(value)
    if text.startswith("s3://"):
        if not text[5:].split("/", 1)[0]:
            raise ConfigError(f"MODELOG_LAKE: s3:// needs a bucket: s3://bucket[/prefix] (got {text!r})")
        return text.rstrip("/")
    if "://" in text and not text.startswith("file://"):
        raise ConfigError(f"MODELOG_LAKE: must be a directory, file:///dir or s3://bucket[/prefix] (got {text!r})")
    return Path(text.removeprefix("file://")).expanduser().resolve()


# The standard AWS variables an S3-compatible artifact store is configured with -> obstore's S3 config keys.
_AWS: dict[str, str] = {
    "AWS_ENDPOINT_URL": "endpoint",
    "AWS_ENDPOINT_URL_S3": "endpoint",
    "AWS_ACCESS_KEY_ID": "access_key_id",
    "AWS_SECRET_ACCESS_KEY": "secret_access_key",
    "AWS_SESSION_TOKEN": "session_token",
    "AWS_DEFAULT_REGION": "region",
    "AWS_REGION": "region",
}

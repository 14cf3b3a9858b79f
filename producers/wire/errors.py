"""The errors modelog raises.

    ModelogError                 root: catch this to catch everything modelog raises
    ├── ConfigError              a setting is missing, unknown or malformed
    ├── ValidationError          input broke a rule; names the field, the value and the rule
    ├── NoActiveRunError         a module-level verb was called with no active run
    ├── DeliveryError            events could not be delivered to the broker in time
    ├── DecodeError              bytes on a topic are not a modelog event (carries the raw record)
    ├── BrokerError              the embedded broker could not be started / stopped / reached
    ├── QueryError               a SQL query failed or no views exist yet
    └── ArtifactError            an artifact's stored bytes are missing, corrupted or unreachable

Kafka and DuckDB exceptions are translated at the boundary with ``raise ... from exc``.
"""

from __future__ import annotations

from typing import Any


class ModelogError(Exception):
    """Root of every error modelog raises."""


class ConfigError(ModelogError):
    """A setting is missing, unknown or malformed."""


class ValidationError(ModelogError, ValueError):
    """Input broke a rule. ``field``, ``value`` and ``rule`` say which, where and why."""

    def __init__(self, field: str, value: Any, rule: str) -> None:
        self.field = field
        self.value = value
        self.rule = rule
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        super().__init__(f"{field}: {rule} (got {shown})")


class NoActiveRunError(ModelogError):
    """A module-level verb such as ``modelog.log_metric`` was called outside a run."""


class DeliveryError(ModelogError):
    """Events were not acknowledged by the broker. ``failures`` lists (event_type, reason)."""

    def __init__(self, message: str, failures: list[tuple[str, str]] | None = None) -> None:
        self.failures = failures or []
        super().__init__(message)


class DecodeError(ModelogError):
    """A record is not a decodable modelog event. ``reason`` is a short machine-readable code."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


class BrokerError(ModelogError):
    """The embedded broker could not be started, stopped or reached."""


class QueryError(ModelogError):
    """A SQL query failed, or there are no views to query yet."""


class ArtifactError(ModelogError):
    """An artifact's stored bytes are missing, do not match their sha256, or the store cannot be reached.

    ``run_id``, ``path``, ``expected`` and ``actual`` (sha256; ``actual`` is None when nothing could be
    read) say which artifact and what was found. A failed download never leaves a file at its destination.
    """

    def __init__(self, message: str, *, run_id: str | None = None, path: str | None = None,
                 expected: str | None = None, actual: str | None = None) -> None:
        self.run_id = run_id
        self.path = path
        self.expected = expected
        self.actual = actual
        super().__init__(message)

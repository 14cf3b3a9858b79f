"""modelog: event-sourced ML metadata.

Every change is an immutable Avro event on Kafka; processors project the log
into DuckDB views you query with SQL.

    import modelog

    with modelog.start_run(experiment="credit-risk", name="baseline") as run:
        run.log_params({"lr": 0.01})
        run.log_metrics({"loss": 0.25, "auc": 0.91}, step=1)

    modelog.sql("SELECT * FROM latest_metrics")
"""

from ._client import (
    Client,
    active_run,
    configure,
    end_run,
    log_artifact,
    log_metric,
    log_metrics,
    log_param,
    log_params,
    set_tag,
    set_tags,
    start_run,
    wait_projected,
)
from ._config import Settings
from ._emitter import KafkaEmitter, MemoryEmitter
from ._errors import (
    BrokerError,
    ConfigError,
    DecodeError,
    DeliveryError,
    ModelogError,
    NoActiveRunError,
    QueryError,
    ValidationError,
)
from ._client import log_dataset, record_lineage, register_dataset
from ._datasets import DatasetVersion
from ._monitor import Monitor, configure_monitor, log_reference
from ._query import sql, sql_arrow
from ._registry import (
    ModelVersion,
    Registry,
    RequestStatus,
    annotate_model,
    approve,
    grant_role,
    promote,
    record_deployment,
    register_model,
    reject,
    request_change,
    set_alias,
    set_policy,
)
from ._run import Run
from ._version import __version__

__all__ = [
    "log_reference",
    "configure_monitor",
    "Monitor",
    "set_policy",
    "set_alias",
    "request_change",
    "reject",
    "register_model",
    "record_deployment",
    "promote",
    "grant_role",
    "approve",
    "annotate_model",
    "RequestStatus",
    "Registry",
    "ModelVersion",
    "BrokerError",
    "Client",
    "ConfigError",
    "DecodeError",
    "DeliveryError",
    "KafkaEmitter",
    "MemoryEmitter",
    "ModelogError",
    "NoActiveRunError",
    "QueryError",
    "Run",
    "Settings",
    "ValidationError",
    "__version__",
    "active_run",
    "configure",
    "end_run",
    "log_artifact",
    "log_metric",
    "log_metrics",
    "log_param",
    "log_params",
    "set_tag",
    "set_tags",
    "sql",
    "sql_arrow",
    "start_run",
    "wait_projected",
    "DatasetVersion",
    "log_dataset",
    "record_lineage",
    "register_dataset",
]


def __getattr__(name: str):
    # ``modelog.drift`` (offline drift statistics) pulls in scipy: import it on first use only.
    if name == "drift":
        import importlib

        return importlib.import_module(".drift", __name__)
    raise AttributeError(f"module 'modelog' has no attribute {name!r}")

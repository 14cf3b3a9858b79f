"""modelog: event-sourced ML metadata.

Every change is an immutable Avro event on Kafka; processors project the log
into DuckDB views you query with SQL.

    import modelog

    with modelog.start_run(experiment="credit-risk", name="baseline") as run:
        run.log_params({"lr": 0.01})
        run.log_metrics({"loss": 0.25, "auc": 0.91}, step=1)

    modelog.sql("SELECT * FROM latest_metrics")
"""

from modelog._version import __version__
from modelog.consumers.query import sql, sql_arrow
from modelog.integrations import autolog
from modelog.sdk.client import Client
from modelog.sdk.datasets import DatasetVersion
from modelog.sdk.fluent import (
    active_run,
    annotate_model,
    approve,
    configure,
    download_artifact,
    end_run,
    grant_role,
    load_model_path,
    log_artifact,
    log_artifacts,
    log_dataset,
    log_metric,
    log_metrics,
    log_param,
    log_params,
    promote,
    record_deployment,
    record_lineage,
    register_dataset,
    register_model,
    reject,
    request_change,
    set_alias,
    set_policy,
    set_tag,
    set_tags,
    start_run,
    wait_projected,
)
from modelog.sdk.monitoring import Monitor, configure_monitor, log_reference
from modelog.sdk.registry import ModelVersion, Registry, RequestStatus
from modelog.sdk.tracking import Run
from modelog.wire.emitter import KafkaEmitter, MemoryEmitter
from modelog.wire.errors import (
    ArtifactError,
    BrokerError,
    ConfigError,
    DecodeError,
    DeliveryError,
    ModelogError,
    NoActiveRunError,
    QueryError,
    ValidationError,
)
from modelog.wire.settings import Settings

__all__ = [
    "ArtifactError",
    "BrokerError",
    "Client",
    "ConfigError",
    "DatasetVersion",
    "DecodeError",
    "DeliveryError",
    "KafkaEmitter",
    "MemoryEmitter",
    "ModelVersion",
    "ModelogError",
    "Monitor",
    "NoActiveRunError",
    "QueryError",
    "Registry",
    "RequestStatus",
    "Run",
    "Settings",
    "ValidationError",
    "__version__",
    "active_run",
    "annotate_model",
    "approve",
    "autolog",
    "configure",
    "configure_monitor",
    "download_artifact",
    "end_run",
    "grant_role",
    "load_model_path",
    "log_artifact",
    "log_artifacts",
    "log_dataset",
    "log_metric",
    "log_metrics",
    "log_param",
    "log_params",
    "log_reference",
    "promote",
    "record_deployment",
    "record_lineage",
    "register_dataset",
    "register_model",
    "reject",
    "request_change",
    "set_alias",
    "set_policy",
    "set_tag",
    "set_tags",
    "sql",
    "sql_arrow",
    "start_run",
    "wait_projected",
]


def __getattr__(name: str):
    # ``modelog.drift`` (offline drift statistics) pulls in scipy: import it on first use only.
    if name == "drift":
        import importlib

        return importlib.import_module(".drift", __name__)
    raise AttributeError(f"module 'modelog' has no attribute {name!r}")

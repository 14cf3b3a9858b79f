import pytest

from modelog import ConfigError, Settings


def test_defaults(tmp_path):
    s = Settings.load(env={"MODELOG_HOME": str(tmp_path)})
    assert s.home == tmp_path.resolve()
    assert s.views_path == tmp_path.resolve() / "views.duckdb"
    assert s.tracking_topic == "modelog.tracking" and s.deadletter_topic == "modelog.deadletter"
    assert s.principal
    assert (s.checkpoint_every, s.checkpoint_seconds) == (1000, 60.0)
    assert s.checkpoints_topic == "modelog.checkpoints" and s.topic_for("LogCheckpoint") == s.checkpoints_topic
    assert s.checkpoints_topic in s.metadata_topics and s.checkpoints_topic not in s.projected_topics


def test_environment_and_passthrough(tmp_path):
    s = Settings.load(env={
        "MODELOG_HOME": str(tmp_path), "MODELOG_KAFKA_BOOTSTRAP": "k1:9092,k2:9092",
        "MODELOG_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "MODELOG_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "MODELOG_TOPIC_PREFIX": "ml.", "MODELOG_PRINCIPAL": "ci-bot", "MODELOG_ACTOR_KIND": "service",
    })
    assert s.librdkafka(**{"acks": "all"}) == {
        "bootstrap.servers": "k1:9092,k2:9092", "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512", "acks": "all"}
    assert s.tracking_topic == "ml.tracking" and s.principal == "ci-bot" and s.actor_kind == "SERVICE"


def test_arguments_win_over_environment(tmp_path):
    s = Settings.load(env={"MODELOG_TOPIC_PREFIX": "env."}, home=tmp_path, topic_prefix="arg.")
    assert s.topic_prefix == "arg."


@pytest.mark.parametrize("env, name", [
    ({"MODELOG_HOMEE": "/x"}, "MODELOG_HOMEE"),
    ({"MODELOG_TOPIC_PARTITIONS": "many"}, "MODELOG_TOPIC_PARTITIONS"),
    ({"MODELOG_TOPIC_PARTITIONS": "0"}, "MODELOG_TOPIC_PARTITIONS"),
    ({"MODELOG_ACTOR_KIND": "robot"}, "MODELOG_ACTOR_KIND"),
    ({"MODELOG_CHECKPOINT_EVERY": "0"}, "MODELOG_CHECKPOINT_EVERY"),
    ({"MODELOG_CHECKPOINT_SECONDS": "-1"}, "MODELOG_CHECKPOINT_SECONDS"),
    ({"MODELOG_CHECKPOINT_SECONDS": "soon"}, "MODELOG_CHECKPOINT_SECONDS"),
])
def test_bad_settings_name_the_variable(tmp_path, env, name):
    with pytest.raises(ConfigError, match=name):
        Settings.load(env={"MODELOG_HOME": str(tmp_path), **env})


def test_no_broker_is_a_clear_error(tmp_path):
    s = Settings.load(env={"MODELOG_HOME": str(tmp_path)})
    with pytest.raises(ConfigError, match="modelog broker start"):
        s.resolve_bootstrap()


def test_public_api_is_pinned():
    import modelog

    assert sorted(modelog.__all__) == sorted([
        "BrokerError", "Client", "ConfigError", "DecodeError", "DeliveryError", "KafkaEmitter", "MemoryEmitter",
        "ModelogError", "NoActiveRunError", "QueryError", "Run", "Settings", "ValidationError", "__version__",
        "active_run", "configure", "end_run", "log_artifact", "log_metric", "log_metrics", "log_param",
        "log_params", "set_tag", "set_tags", "sql", "sql_arrow", "start_run", "wait_projected",
        "DatasetVersion", "log_dataset", "record_lineage", "register_dataset",
        # model registry
        "ModelVersion", "Registry", "RequestStatus", "annotate_model", "approve", "grant_role", "promote",
        "record_deployment", "register_model", "reject", "request_change", "set_alias", "set_policy",
        # monitoring
        "Monitor", "configure_monitor", "log_reference",
        # artifact store
        "ArtifactError", "download_artifact", "load_model_path", "log_artifacts",
        # integrations
        "autolog"])
    for name in modelog.__all__:
        assert hasattr(modelog, name)

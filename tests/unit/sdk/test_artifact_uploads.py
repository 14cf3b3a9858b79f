"""log_artifact stores the bytes from a background thread; the event carries the content address once they are
stored; end_run waits and raises DeliveryError for a failed upload; store=False records a reference only."""

from __future__ import annotations

import hashlib

import pytest

from modelog import Client, DeliveryError, MemoryEmitter, Settings, ValidationError
from modelog.wire.models import validate


def _client(tmp_path, store_dir):
    settings = Settings.load(env={}, home=tmp_path / "home", linger_ms=1, artifact_uri=store_dir.as_uri())
    return Client(settings, emitter=MemoryEmitter())


def _logged(client):
    return [e.record for e in client.emitter.events if e.event_type == "ArtifactLogged"]


def test_stored_artifacts_carry_their_content_address(tmp_path):
    client = _client(tmp_path, tmp_path / "store")
    out = tmp_path / "outputs"
    (out / "sub").mkdir(parents=True)
    (out / "weights.bin").write_bytes(b"w" * 100)
    (out / "sub" / "config.json").write_bytes(b"{}")
    (tmp_path / "model.pkl").write_bytes(b"weights")
    with client.start_run(experiment="e") as run:
        one = run.log_artifact(tmp_path / "model.pkl")
        many = run.log_artifacts(out, artifact_path="model")
    sha = hashlib.sha256(b"weights").hexdigest()
    assert one[0]["content_address"] == (tmp_path / "store").as_uri() + "/sha256/" + sha
    assert [a["path"] for a in many] == ["model/sub/config.json", "model/weights.bin"]
    events = {r["path"]: r for r in _logged(client)}
    assert set(events) == {"model.pkl", "model/sub/config.json", "model/weights.bin"}
    for r in events.values():
        validate("ArtifactLogged", r)
        assert (tmp_path / "store" / "sha256" / r["sha256"]).read_bytes() == \
            (tmp_path / "model.pkl" if r["path"] == "model.pkl" else out / r["path"][len("model/"):]).read_bytes()
    assert events["model.pkl"]["content_address"] == one[0]["content_address"]
    # every ArtifactLogged is published before RunEnded: end_run waited for the uploads
    order = [e.event_type for e in client.emitter.events]
    assert order.index("RunEnded") > max(i for i, t in enumerate(order) if t == "ArtifactLogged")


def test_store_false_keeps_a_reference_only(tmp_path):
    client = _client(tmp_path, tmp_path / "store")
    (tmp_path / "secret.csv").write_bytes(b"pii")
    with client.start_run(experiment="e") as run:
        rec = run.log_artifact(tmp_path / "secret.csv", store=False)
    assert rec[0]["content_address"] is None
    (event,) = _logged(client)
    assert event["content_address"] is None and event["uri"].startswith("file:///")
    assert not (tmp_path / "store" / "sha256").exists()


@pytest.mark.parametrize("name", ["../escape.pkl", "%2e%2e/escape.pkl", "/abs.pkl", "file:///etc/passwd"])
def test_artifact_paths_that_escape_are_refused_on_log(tmp_path, name):
    client = _client(tmp_path, tmp_path / "store")
    (tmp_path / "model.pkl").write_bytes(b"w")
    with client.start_run(experiment="e") as run:
        with pytest.raises(ValidationError) as err:
            run.log_artifact(tmp_path / "model.pkl", name)
    assert err.value.field == "artifact_path"
    assert _logged(client) == []


def test_a_failed_upload_raises_delivery_error_at_end_run_naming_the_artifact(tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    (store / "sha256").write_text("a file where the store's folder must be")  # every write fails
    client = _client(tmp_path, store)
    (tmp_path / "model.pkl").write_bytes(b"weights")
    run = client.start_run(experiment="e")
    run.log_artifact(tmp_path / "model.pkl")
    with pytest.raises(DeliveryError, match="model.pkl") as err:
        run.end()
    assert err.value.failures and err.value.failures[0][0] == "ArtifactLogged"
    assert _logged(client) == []  # no event claims bytes that are not stored
    assert [e.event_type for e in client.emitter.events][-1] == "RunEnded"  # the run still ended


def test_no_artifact_store_is_a_clear_config_error(tmp_path):
    from modelog import ConfigError

    client = Client(Settings.load(env={}, home=tmp_path / "home"), emitter=MemoryEmitter())
    (tmp_path / "model.pkl").write_bytes(b"w")
    with client.start_run(experiment="e") as run:
        with pytest.raises(ConfigError, match="MODELOG_ARTIFACT_URI"):
            run.log_artifact(tmp_path / "model.pkl")
        run.log_artifact(tmp_path / "model.pkl", store=False)  # a reference needs no store
    assert len(_logged(client)) == 1

"""The SDK with an in-memory emitter: what it publishes, and what it refuses before publishing."""

import math
import os
import platform
import socket
import subprocess
import sys

import pytest

import modelog
from modelog import Client, MemoryEmitter, ModelogError, NoActiveRunError, Settings, ValidationError
from modelog.wire.models import validate


@pytest.fixture
def client(tmp_path):
    return Client(Settings.load(env={}, home=tmp_path, linger_ms=1, artifact_uri=(tmp_path / "store").as_uri()),
                  emitter=MemoryEmitter())


def types(client):
    return [e.event_type for e in client.emitter.events]


def test_a_full_run_publishes_valid_events_in_order(client, tmp_path):
    model = tmp_path / "model.pkl"
    model.write_bytes(b"weights")
    with client.start_run(experiment="credit-risk", name="baseline", tags={"team": "risk"}) as run:
        run.log_params({"lr": 0.01, "depth": 6, "use_gpu": False, "note": None})
        for step in range(10):
            run.log_metrics({"loss": 1 / (step + 1), "auc": math.nan if step == 3 else step / 10}, step=step)
        art = run.log_artifact(model)
        run.set_tags({"candidate": "yes"})
    assert types(client)[:2] == ["ExperimentCreated", "RunStarted"]
    assert types(client)[-1] == "RunEnded"
    assert {"ParamsLogged", "MetricsLogged", "ArtifactLogged", "TagsSet"} <= set(types(client))
    for e in client.emitter.events:
        validate(e.event_type, e.record)  # everything published passes the schema rules
        assert e.key == run.id or e.event_type == "ExperimentCreated"
    points = [p for e in client.emitter.events if e.event_type == "MetricsLogged" for p in e.record["points"]]
    assert len(points) == 20
    assert math.isnan(next(p["value"] for p in points if p["key"] == "auc" and p["step"] == 3))
    params = next(e for e in client.emitter.events if e.event_type == "ParamsLogged").record["params"]
    assert {(p["key"], p["value"], p["value_type"]) for p in params} == {
        ("lr", "0.01", "float"), ("depth", "6", "int"), ("use_gpu", "False", "bool"), ("note", "None", "none")}
    import hashlib

    assert art[0]["sha256"] == hashlib.sha256(b"weights").hexdigest() and art[0]["size_bytes"] == 7
    assert art[0]["uri"].startswith("file:///") and art[0]["path"] == "model.pkl"
    ended = client.emitter.events[-1].record
    assert ended["status"] == "FINISHED" and ended["error"] is None
    assert run.status == "FINISHED"


def test_environment_is_recorded(client, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a working directory of the test's own, not the default one
    with client.start_run(experiment="e") as run:
        pass
    env = next(e for e in client.emitter.events if e.event_type == "RunStarted").record["environment"]
    assert env["python_version"] == platform.python_version()
    assert (env["cpu_count"], env["hostname"]) == (os.cpu_count(), socket.gethostname())
    assert env["packages"]["pytest"] == pytest.__version__
    assert env["command"] == [sys.executable, *sys.argv] and env["working_dir"] == os.path.realpath(tmp_path)
    assert run.name.startswith("run-")


def test_exception_ends_failed_with_the_error(client):
    with pytest.raises(RuntimeError, match="^diverged$"):
        with client.start_run(experiment="e"):
            raise RuntimeError("diverged")
    ended = client.emitter.events[-1].record
    assert ended["status"] == "FAILED" and ended["error"] == "RuntimeError: diverged"


def test_keyboard_interrupt_ends_killed(client):
    with pytest.raises(KeyboardInterrupt):
        with client.start_run(experiment="e"):
            raise KeyboardInterrupt
    assert client.emitter.events[-1].record["status"] == "KILLED"


def test_module_level_verbs_use_the_active_run(tmp_path):
    c = modelog.configure(Settings.load(env={}, home=tmp_path, linger_ms=1), emitter=MemoryEmitter())
    with modelog.start_run(experiment="e", name="r") as run:
        assert modelog.active_run() is run
        modelog.log_metric("loss", 0.5, step=1)
        modelog.log_metrics({"acc": 1})
        modelog.log_param("lr", 0.1)
        modelog.log_params({"depth": 3})
        modelog.set_tag("a", "b")
        modelog.set_tags({"c": 1})
    assert modelog.active_run() is None
    with pytest.raises(NoActiveRunError):
        modelog.log_metric("loss", 1.0)
    run2 = modelog.start_run(experiment="e")
    modelog.end_run(status="KILLED")
    assert c.emitter.events[-1].record["status"] == "KILLED" and run2.status == "KILLED"


def test_one_active_run_at_a_time(client):
    with client.start_run(experiment="e"):
        with pytest.raises(ModelogError, match="already active"):
            client.start_run(experiment="e")


@pytest.mark.parametrize("call, field, rule", [
    (lambda r: r.log_metrics({"bad name!": 1.0}), "metric name", "letters, digits"),
    (lambda r: r.log_metrics({"": 1.0}), "metric name", "1-250"),
    (lambda r: r.log_metrics({"x" * 251: 1.0}), "metric name", "1-250"),
    (lambda r: r.log_metrics({"loss": "0.5"}), "metrics['loss']", "real number"),
    (lambda r: r.log_metrics({"loss": True}), "metrics['loss']", "real number"),
    (lambda r: r.log_metrics({"loss": None}), "metrics['loss']", "real number"),
    (lambda r: r.log_metrics({"loss": 1.0}, step=1.5), "step", "integer"),
    (lambda r: r.log_metrics({"loss": 1.0}, step=2**64), "step", "64 bits"),
    (lambda r: r.log_metrics([("loss", 1.0)]), "metrics", "mapping"),
    (lambda r: r.log_params({"lr": [1, 2]}), "params['lr']", "scalar"),
    (lambda r: r.log_params({"lr": "x" * 6001}), "params['lr']", "6000"),
    (lambda r: r.log_params({"lr?": 1}), "param name", "letters"),
    (lambda r: r.set_tags({"t": "x" * 8001}), "tags['t']", "8000"),
    (lambda r: r.set_tags({"bad?": "x"}), "tag name", "letters"),
    (lambda r: r.log_artifact("/does/not/exist"), "local_path", "existing file"),
])
def test_bad_input_is_rejected_before_publishing(client, call, field, rule):
    with client.start_run(experiment="e") as run:
        before = len(client.emitter.events)
        with pytest.raises(ValidationError) as err:
            call(run)
        assert err.value.field == field
        assert rule in err.value.rule and field in str(err.value)
        run._drain()
        assert len(client.emitter.events) == before, "nothing may be published for a rejected call"


def test_a_rejected_batch_publishes_none_of_its_points(client):
    with client.start_run(experiment="e") as run:
        with pytest.raises(ValidationError):
            run.log_metrics({"good": 1.0, "bad": "x"})
        run.log_metrics({"ok": 2.0})
    points = [p for e in client.emitter.events if e.event_type == "MetricsLogged" for p in e.record["points"]]
    assert [p["key"] for p in points] == ["ok"]


def test_params_are_immutable(client):
    with client.start_run(experiment="e") as run:
        run.log_params({"lr": 0.1})
        run.log_params({"lr": 0.1})  # same value: fine, nothing new published
        with pytest.raises(ValidationError, match="immutable"):
            run.log_params({"lr": 0.2})
    assert sum(e.event_type == "ParamsLogged" for e in client.emitter.events) == 1


@pytest.mark.parametrize("kwargs, field", [
    ({"experiment": "bad name!"}, "experiment"),
    ({"experiment": "e", "name": ""}, "name"),
    ({"experiment": "e", "tags": {"ok": "x" * 9000}}, "tags['ok']"),
    ({"experiment": "e", "run_id": "not a valid id!"}, "run_id"),
])
def test_start_run_validates_before_publishing(client, kwargs, field):
    with pytest.raises(ValidationError) as err:
        client.start_run(**kwargs)
    assert err.value.field == field
    assert client.emitter.events == []


def test_logging_after_end_is_an_error(client):
    run = client.start_run(experiment="e")
    run.end()
    run.end()  # idempotent
    with pytest.raises(ModelogError, match="has ended"):
        run.log_metric("x", 1.0)
    run2 = client.start_run(experiment="e")
    with pytest.raises(ValidationError, match="FINISHED, FAILED, KILLED"):
        run2.end(status="DONE")
    run2.end("FINISHED")


def test_many_points_are_batched_into_few_events(client):
    with client.start_run(experiment="e") as run:
        for step in range(12_000):
            run.log_metrics({"a": 1.0, "b": 2.0}, step=step)
    batches = [len(e.record["points"]) for e in client.emitter.events if e.event_type == "MetricsLogged"]
    assert sum(batches) == 24_000
    assert max(batches) <= 5000 and len(batches) <= 24_000 / 1000


def test_git_environment_inside_a_repository(tmp_path):
    from modelog.sdk.environment import git_info

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "f.txt").write_text("x")
    subprocess.run(["git", "-C", str(tmp_path), "add", "f.txt"], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-qm", "x"],
                   check=True)
    info = git_info(str(tmp_path))
    assert len(info["git_commit"]) == 40 and info["git_dirty"] is False
    (tmp_path / "f.txt").write_text("changed")
    assert git_info(str(tmp_path))["git_dirty"] is True
    assert git_info("/")["git_commit"] is None


def test_git_environment_branch_detached_and_remote(tmp_path):
    from modelog.sdk.environment import git_info

    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), "-c", "user.email=a@b", "-c", "user.name=a", *args], check=True,
                       capture_output=True)

    subprocess.run(["git", "init", "-q", "-b", "trunk", str(tmp_path)], check=True)
    assert git_info(str(tmp_path)) == dict.fromkeys(["git_commit", "git_branch", "git_dirty", "git_remote"])
    (tmp_path / "f.txt").write_text("x")
    git("add", "f.txt")
    git("commit", "-qm", "x")
    git("remote", "add", "origin", "https://user:secret@example.invalid/r.git")
    info = git_info(str(tmp_path))
    assert info["git_branch"] == "trunk" and info["git_remote"] == "https://example.invalid/r.git"
    git("checkout", "-q", "--detach")
    assert git_info(str(tmp_path))["git_branch"] == "HEAD" and git_info(str(tmp_path))["git_commit"] == info["git_commit"]

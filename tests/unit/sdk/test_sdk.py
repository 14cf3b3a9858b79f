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
from modelog.wire import metric_columns
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
    points = [p for e in client.emitter.events if e.event_type == "MetricsLogged"
              for p in metric_columns.points(e.record)]
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
    points = [p for e in client.emitter.events if e.event_type == "MetricsLogged"
              for p in metric_columns.points(e.record)]
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
    batches = [len(metric_columns.points(e.record)) for e in client.emitter.events if e.event_type == "MetricsLogged"]
    assert sum(batches) == 24_000
    assert max(batches) <= 5000 and len(batches) <= 24_000 / 1000


def test_points_are_published_as_columns_in_the_order_logged(client):
    """The SDK's batches are columnar (decision 0021): a dictionary of names and one array item per point."""
    with client.start_run(experiment="e") as run:
        for step in range(3):
            run.log_metrics({"loss": 1.0 / (step + 1), "auc": step * 0.25}, step=step, timestamp=1_760_000_000 + step)
        run.log_metric("lr", 0.5, step=7, timestamp=1_760_000_100)
    (event,) = [e for e in client.emitter.events if e.event_type == "MetricsLogged"]
    assert event.record["points"] == [] and set(event.record["columns"]["keys"]) == {"loss", "auc", "lr"}
    got = [(p["key"], p["value"], p["step"], p["timestamp"]) for p in metric_columns.points(event.record)]
    assert got == [("loss", 1.0, 0, 1_760_000_000_000_000), ("auc", 0.0, 0, 1_760_000_000_000_000),
                   ("loss", 0.5, 1, 1_760_000_001_000_000), ("auc", 0.25, 1, 1_760_000_001_000_000),
                   ("loss", 1 / 3, 2, 1_760_000_002_000_000), ("auc", 0.5, 2, 1_760_000_002_000_000),
                   ("lr", 0.5, 7, 1_760_000_100_000_000)]


def test_columns_of_many_names_carry_only_the_names_each_event_uses():
    from modelog.sdk.tracking import BATCH_POINTS, metric_batches

    chunks = [((f"m{i}",), [float(i)], i, 1000 + i) for i in range(2 * BATCH_POINTS + 10)]
    batches = metric_batches(chunks, len(chunks))
    assert [len(b["keys"]) for b in batches] == [BATCH_POINTS, BATCH_POINTS, 10]
    pts = [p for b in batches for p in metric_columns.points({"columns": b})]
    assert pts == [{"key": f"m{i}", "value": float(i), "step": i, "timestamp": 1000 + i} for i in range(len(chunks))]


def test_values_of_other_numeric_types_are_converted_and_bad_ones_rejected(client):
    import numpy as np

    with client.start_run(experiment="e") as run:
        run.log_metrics({"i": 3, "np": np.float32(0.5), "np64": np.float64(2.5), "inf": math.inf}, step=np.int64(4))
        with pytest.raises(ValidationError) as err:
            run.log_metrics({"ok": 1.0, "flag": True})
        assert err.value.field == "metrics['flag']"
    pts = [p for e in client.emitter.events if e.event_type == "MetricsLogged" for p in metric_columns.points(e.record)]
    assert [(p["key"], p["value"], p["step"]) for p in pts] == [("i", 3.0, 4), ("np", 0.5, 4), ("np64", 2.5, 4),
                                                                ("inf", math.inf, 4)]


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

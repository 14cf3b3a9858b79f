"""The MLflow importer's pure pieces: meta.yaml and metric lines of the file store, run ids, version sources,
and the events one run becomes (times and users of MLflow, marked as imported), on an in-memory emitter.
The real mlflow package writing a store and serving it: tests/integration/test_import_mlflow.py."""

from __future__ import annotations

import hashlib
import math

import pytest

from modelog import Client, Settings
from modelog.integrations import mlflow_import as imp
from modelog.integrations.mlflow_source import (Experiment, FileStore, LoggedModel, MlRun, MlVersion, Point, SourceError,
                                                open_source, parse_meta, parse_metric_line)
from modelog.wire.artifact_store import ArtifactStore
from modelog.wire.emitter import MemoryEmitter


def test_meta_yaml_scalars_quoted_folded_and_nested_blocks():
    meta = parse_meta("artifact_uri: file:///tmp/mlruns/1/abc/artifacts\nend_time: 1700000060000\n"
                      "experiment_id: '1'\nname: 'it''s: quoted'\nrun_name: \"a \\\"b\\\"\"\nstatus: 3\n"
                      "tags: []\nuser_id: null\ndescription: a long text that\n  goes on here\nlist:\n- one\n")
    assert meta == {"artifact_uri": "file:///tmp/mlruns/1/abc/artifacts", "end_time": 1700000060000,
                    "experiment_id": "1", "name": "it's: quoted", "run_name": 'a "b"', "status": 3, "tags": None,
                    "user_id": None, "description": "a long text that goes on here", "list": "- one"}


def test_metric_lines_with_and_without_step():
    assert parse_metric_line("1700000000000 0.5 7") == Point(0.5, 1700000000000, 7)
    assert parse_metric_line("1700000000000 -3") == Point(-3.0, 1700000000000, 0)
    assert math.isnan(parse_metric_line("1 nan 2").value)
    with pytest.raises(SourceError, match="expected"):
        parse_metric_line("12")


def test_run_ids_are_mlflow_s_own_or_derived():
    assert imp.run_id_for("0123456789abcdef0123456789abcdef", "file:///x") == "0123456789abcdef0123456789abcdef"
    derived = imp.run_id_for("not/an id", "file:///x")
    assert len(derived) == 32 and derived != imp.run_id_for("not/an id", "file:///y")


@pytest.mark.parametrize("source, expected", [
    ("runs:/abc/model/model.pkl", ("abc", "model/model.pkl")),
    ("mlflow-artifacts:/3/abc/artifacts/model", ("abc", "model")),
    ("file:///tmp/mlruns/3/0123456789abcdef0123456789abcdef/artifacts/m.pkl",
     ("0123456789abcdef0123456789abcdef", "m.pkl")),
    ("models:/m-123", ("fromrun", None)),
    ("s3://bucket/key", ("fromrun", None)),
])
def test_a_version_s_source_names_its_run_and_artifact(source, expected):
    v = MlVersion("m", 1, None, "", source, "fromrun", None, "None")
    assert imp.version_source(v) == expected


def test_existing_versions_from_map_rows():
    rows = [{"model": "m", "tags": [("mlflow.version", "2"), ("x", "y")]}, {"model": "n", "tags": {"a": "b"}}]
    assert imp.existing_versions(rows) == {("m", "2")}


def test_unknown_tracking_uris_are_refused_with_the_way_out(tmp_path):
    with pytest.raises(SourceError, match="mlflow server"):
        open_source("sqlite:///mlflow.db")
    with pytest.raises(SourceError, match="not a directory"):
        open_source(str(tmp_path / "nope"))
    assert open_source(str(tmp_path)).uri == tmp_path.resolve().as_uri()


class FakeSource:
    """What a FileStore or RestStore returns, without files."""

    uri = "http://mlflow.example:5000"

    def __init__(self, artifacts: dict[str, bytes]) -> None:
        self.files = artifacts

    def experiments(self):
        return [Experiment("1", "exp #1", 1_600_000_000_000, {"mlflow.note.content": "notes"}),
                Experiment("2", "gone", None, {}, deleted=True)]

    def runs(self, exp):
        yield MlRun("a" * 32, "1", "first run", "alice", "FINISHED", 1_700_000_000_000, 1_700_000_009_000,
                    "mlflow-artifacts:/1/" + "a" * 32 + "/artifacts", params={"lr": "0.1"},
                    tags={"mlflow.user": "alice", "bad#tag": "v"}, metric_keys=["loss"])
        yield MlRun("b" * 32, "1", "open", "", "RUNNING", 1_700_000_100_000, None, "", deleted=False)

    def history(self, run, key):
        return [Point(1.0, 1_700_000_001_000, 0), Point(0.5, 1_700_000_002_000, 5), Point(0.1, 1, -1)]

    def artifacts(self, run):
        return [(p, len(b)) for p, b in self.files.items()] if run.run_id == "a" * 32 else []

    def artifact_uri(self, run, path):
        return f"{run.artifact_uri}/{path}"

    def fetch(self, run, path, out):
        out.write(self.files[path])

    def logged_models(self, exp):
        return [LoggedModel("m-1", "clf", "a" * 32, "mlflow-artifacts:/1/models/m-1/artifacts"),
                LoggedModel("m-0", "clf", "a" * 32, "mlflow-artifacts:/1/models/m-0/artifacts"),
                LoggedModel("m-9", "orphan", None, "x")] if exp.id == "1" else []

    def model_artifacts(self, model):
        return [("MLmodel", 5)]

    def fetch_model(self, model, path, out):
        out.write(b"flav" + model.model_id[-1].encode())

    def model_versions(self):
        return [MlVersion("credit", 1, 1_700_000_050_000, "bob", f"runs:/{'a' * 32}/model.pkl", "a" * 32, "d",
                          "Production", ["champion"]),
                MlVersion("credit", 2, 1_700_000_060_000, "bob", "models:/m-1", "a" * 32, None, "None")]


def events_of(client):
    return [(e.event_type, e.record) for e in client._emitter.events]


def test_one_run_becomes_events_with_mlflow_s_times_and_users(tmp_path):
    settings = Settings.load(env={"MODELOG_HOME": str(tmp_path / "home"), "MODELOG_PRINCIPAL": "importer"})
    client = Client(settings, emitter=MemoryEmitter(), program=imp.PROGRAM)
    store = ArtifactStore.open((tmp_path / "store").as_uri(), settings)
    source = FakeSource({"model.pkl": b"x" * 100, "../evil": b"no"})
    plans = []
    summary = imp.import_mlflow(client, source, store=store, plan=plans.append)
    assert plans == [4] and summary.runs == ["exp #1/first run", "exp #1/open"]
    assert summary.skipped == [("experiment gone", "deleted in MLflow")]
    assert summary.points == 2 and summary.artifacts == 3 and summary.stored_bytes == 110
    assert summary.versions == ["credit/1", "credit/2"]
    assert "logged model orphan (m-9) names no run: not imported" in summary.warnings
    assert any("'../evil' not imported" in w for w in summary.warnings)
    assert any("'bad#tag' imported as 'bad_tag'" in w for w in summary.warnings)
    assert any("step -1 skipped" in w for w in summary.warnings)
    evs = events_of(client)
    kinds = [k for k, _ in evs]
    assert kinds == ["ExperimentCreated", "RunStarted", "ParamsLogged", "MetricsLogged", "ArtifactLogged",
                     "ArtifactLogged", "ArtifactLogged", "RunEnded", "RunStarted", "ModelVersionRegistered",
                     "ModelVersionRegistered"]  # the RUNNING run does not end
    created, started = evs[0][1], evs[1][1]
    assert created["experiment"] == "exp _1" and created["description"] == "notes"
    assert created["envelope"]["occurred_at"] == 1_600_000_000_000_000
    assert created["envelope"]["actor"] == {"principal": "importer", "kind": "USER"}
    assert started["run_id"] == "a" * 32 and started["start_time"] == 1_700_000_000_000_000
    assert started["envelope"]["actor"]["principal"] == "alice"
    assert started["envelope"]["source"]["program"] == "modelog-import-mlflow"
    assert started["tags"]["modelog.import"] == "mlflow" and started["tags"]["modelog.import.source"] == source.uri
    points = evs[3][1]["points"]
    assert [(p["step"], p["timestamp"]) for p in points] == [(0, 1_700_000_001_000_000), (5, 1_700_000_002_000_000)]
    art = evs[4][1]
    assert art["content_address"] == store.address(art["sha256"]) and art["size_bytes"] == 100
    assert art["uri"].endswith("/artifacts/model.pkl")
    # the logged models' files, under their name (a second of the same name: name-<model id>)
    assert [(e["path"], e["uri"]) for _, e in evs[5:7]] == [
        ("clf/MLmodel", "mlflow-artifacts:/1/models/m-0/artifacts/MLmodel"),
        ("clf-m-1/MLmodel", "mlflow-artifacts:/1/models/m-1/artifacts/MLmodel")]
    assert evs[7][1]["end_time"] == 1_700_000_009_000_000 and evs[7][1]["envelope"]["actor"]["principal"] == "alice"
    second = evs[8][1]
    assert second["envelope"]["actor"]["principal"] == "importer"  # MLflow had no user
    mv, mv2 = evs[9][1], evs[10][1]
    assert (mv["model"], mv["run_id"], mv["artifact"]) == ("credit", "a" * 32, "model.pkl")
    assert (mv2["run_id"], mv2["artifact"], mv2["uri"]) == ("a" * 32, "clf-m-1", "models:/m-1")
    assert mv["tags"]["mlflow.stage"] == "Production" and mv["tags"]["mlflow.aliases"] == "champion"
    assert mv["envelope"]["actor"]["principal"] == "bob"


def test_what_was_imported_before_is_skipped_and_nothing_published(tmp_path):
    settings = Settings.load(env={"MODELOG_HOME": str(tmp_path / "home")})
    client = Client(settings, emitter=MemoryEmitter())
    summary = imp.import_mlflow(client, FakeSource({}), existing_runs={"a" * 32, "b" * 32},
                                versions_before={("credit", "1"), ("credit", "2")})
    assert events_of(client) == [] and summary.runs == [] and summary.versions == []
    assert [why for _, why in summary.skipped] == ["deleted in MLflow", f"already imported (run {'a' * 32})",
                                                   f"already imported (run {'b' * 32})", "already imported",
                                                   "already imported"]


def test_without_a_store_artifacts_are_references_and_unknown_experiments_are_named(tmp_path):
    settings = Settings.load(env={"MODELOG_HOME": str(tmp_path / "home")})
    client = Client(settings, emitter=MemoryEmitter())
    summary = imp.import_mlflow(client, FakeSource({"m.bin": b"abc"}), experiments=["exp #1"])
    art = [r for k, r in events_of(client) if k == "ArtifactLogged"]
    assert summary.references == 3 and art[0]["content_address"] is None and art[0]["size_bytes"] == 3
    with pytest.raises(SourceError, match="no MLflow experiment named 'nope'.*exp #1"):
        imp.import_mlflow(client, FakeSource({}), experiments=["nope"])


def test_the_file_store_reader_on_a_hand_made_mlruns(tmp_path):
    run = tmp_path / "mlruns" / "1" / ("c" * 32)
    (run / "metrics" / "val").mkdir(parents=True)
    (run / "params").mkdir()
    (run / "tags").mkdir()
    (run / "artifacts" / "d").mkdir(parents=True)
    (tmp_path / "mlruns" / "1" / "meta.yaml").write_text("experiment_id: '1'\nname: e\ncreation_time: 5\n"
                                                          "lifecycle_stage: active\n")
    (run / "meta.yaml").write_text(f"run_id: {'c' * 32}\nrun_name: r\nstatus: 4\nstart_time: 10\nend_time: 20\n"
                                   f"user_id: dana\nartifact_uri: {(run / 'artifacts').as_uri()}\n"
                                   "lifecycle_stage: active\n")
    (run / "metrics" / "val" / "loss").write_text("11 0.5 1\n12 0.25 2\n")
    (run / "params" / "lr").write_text("0.1")
    (run / "tags" / "mlflow.user").write_text("dana")
    (run / "artifacts" / "d" / "f.txt").write_text("hi")
    fs = FileStore(tmp_path / "mlruns")
    [exp] = fs.experiments()
    assert exp == Experiment("1", "e", 5, {}, False)
    [r] = list(fs.runs(exp))
    assert (r.name, r.user, r.status, r.start_ms, r.end_ms, r.params, r.metric_keys) == (
        "r", "dana", "FAILED", 10, 20, {"lr": "0.1"}, ["val/loss"])
    assert fs.history(r, "val/loss") == [Point(0.5, 11, 1), Point(0.25, 12, 2)]
    assert fs.artifacts(r) == [("d/f.txt", 2)]


def test_through_a_server_the_bytes_go_to_its_upload_route_which_logs_them(tmp_path):
    class ServerStore:  # what modelog.sdk.http_artifacts.ServerArtifacts offers
        publishes = True

        def __init__(self):
            self.uploads = []

        def upload(self, up, progress=None):
            self.uploads.append((up.run_id, up.path, up.sha256, up.size_bytes, up.file.read_bytes()))

    settings = Settings.load(env={"MODELOG_HOME": str(tmp_path / "home")})
    client = Client(settings, emitter=MemoryEmitter())
    store = ServerStore()
    summary = imp.import_mlflow(client, FakeSource({"m.bin": b"abc"}), store=store)
    assert ("a" * 32, "m.bin", hashlib.sha256(b"abc").hexdigest(), 3, b"abc") in store.uploads
    assert len(store.uploads) == 3 and summary.artifacts == 3 and summary.references == 0
    assert [k for k, _ in events_of(client)].count("ArtifactLogged") == 0  # the server logs them


def test_a_run_whose_reading_fails_halfway_publishes_nothing_of_itself(tmp_path):
    class Failing(FakeSource):
        def history(self, run, key):
            raise SourceError("http://mlflow.example:5000/...: HTTP 503: busy")

    settings = Settings.load(env={"MODELOG_HOME": str(tmp_path / "home")})
    client = Client(settings, emitter=MemoryEmitter())
    summary = imp.import_mlflow(client, Failing({}))
    failed = [why for what, why in summary.skipped if what.startswith("run exp #1/first run")]
    assert failed == ["failed: http://mlflow.example:5000/...: HTTP 503: busy"]
    started = [r["run_id"] for k, r in events_of(client) if k == "RunStarted"]
    assert started == ["b" * 32]  # the other run is imported; nothing of the failed one (tried again next time)
    assert not [k for k, r in events_of(client) if k not in ("ExperimentCreated", "ModelVersionRegistered")
                and r.get("run_id") == "a" * 32]  # (its versions name it: it comes with the next import)


def test_with_experiments_named_only_the_versions_of_their_runs_are_imported(tmp_path):
    class TwoExperiments(FakeSource):
        def experiments(self):
            return [Experiment("1", "exp #1"), Experiment("3", "other")]

        def runs(self, exp):
            return super().runs(exp) if exp.id == "1" else iter([])

    settings = Settings.load(env={"MODELOG_HOME": str(tmp_path / "home")})
    client = Client(settings, emitter=MemoryEmitter())
    summary = imp.import_mlflow(client, TwoExperiments({}), experiments=["other"])
    assert summary.runs == [] and summary.versions == []
    assert summary.skipped == [("model version credit/1", "its run is not in the experiments imported (--experiment)"),
                               ("model version credit/2", "its run is not in the experiments imported (--experiment)")]
    summary = imp.import_mlflow(client, TwoExperiments({}), experiments=["exp #1"])
    assert summary.versions == ["credit/1", "credit/2"]

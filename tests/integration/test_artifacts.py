"""The artifact store on the embedded default: the broker's own S3 server under MODELOG_HOME (bucket
modelog-artifacts), a real processor and real DuckDB views; the CLI and the SDK read the bytes back, checked."""

from __future__ import annotations

import hashlib
import json
import uuid

import pytest

import modelog
from conftest import SESSION_TIMEOUT_MS, Processor, run_cli
from modelog import ArtifactError, Client, Settings, ValidationError
from modelog.local.broker import EmbeddedBroker

pytestmark = pytest.mark.broker


@pytest.fixture
def stack(tmp_path):
    """An embedded broker (memory log; its S3 server holds the artifacts) and a processor under one home."""
    home = tmp_path / "home"
    broker = EmbeddedBroker(home, storage="memory")
    broker.start()
    env = {"MODELOG_HOME": str(home), "MODELOG_TOPIC_PREFIX": f"a{uuid.uuid4().hex[:10]}.",
           "MODELOG_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS), "MODELOG_LINGER_MS": "20",
           "MODELOG_PRINCIPAL": "tester"}
    settings = Settings.load(env=env)
    processor = Processor(env, settings).start()
    client = Client(settings)
    try:
        yield env, settings, client, home
    finally:
        client.close()
        processor.stop()
        broker.stop()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_artifacts_are_stored_on_the_embedded_s3_server_and_come_back_checked(stack, tmp_path):
    env, settings, client, home = stack
    model = tmp_path / "model.pkl"
    model.write_bytes(b"weights-" * 5000)
    (tmp_path / "copy.pkl").write_bytes(model.read_bytes())
    bundle = tmp_path / "bundle"
    (bundle / "tok").mkdir(parents=True)
    (bundle / "config.json").write_text('{"depth": 6}')
    (bundle / "tok" / "vocab.txt").write_text("a\nb\n")
    (tmp_path / "secret.csv").write_text("pii")
    with client.start_run(experiment="credit-risk") as run:
        run.log_artifact(model)
        run.log_artifact(tmp_path / "copy.pkl")
        run.log_artifacts(bundle, "bundle")
        run.log_artifact(tmp_path / "secret.csv", store=False)
    mv = run.register_model("credit-risk", artifact="model.pkl", wait=True, timeout=60)
    client.wait_projected(60)

    objects = home / "broker" / "s3" / "modelog-artifacts" / "sha256"
    assert sorted(p.name for p in objects.iterdir()) == sorted(
        {_sha(model.read_bytes()), _sha(b'{"depth": 6}'), _sha(b"a\nb\n")})  # model.pkl and copy.pkl: stored once

    listed = json.loads(run_cli(env, "artifacts", "list", run.id, "--format", "json").stdout)
    by_path = {r["path"]: r for r in listed}
    assert set(by_path) == {"model.pkl", "copy.pkl", "bundle/config.json", "bundle/tok/vocab.txt", "secret.csv"}
    assert by_path["model.pkl"]["content_address"] == f"s3://modelog-artifacts/sha256/{_sha(model.read_bytes())}"
    assert by_path["secret.csv"]["content_address"] is None

    out = tmp_path / "out"
    out.mkdir()
    run_cli(env, "artifacts", "get", run.id, "model.pkl", "-o", str(out))
    assert (out / "model.pkl").read_bytes() == model.read_bytes()
    run_cli(env, "artifacts", "get", run.id, "bundle", "-o", str(out / "b"))
    assert (out / "b" / "tok" / "vocab.txt").read_text() == "a\nb\n"
    assert (out / "b" / "config.json").read_text() == '{"depth": 6}'
    run_cli(env, "model", "download", "credit-risk", "--version", str(mv.version), str(out / "m.pkl"))
    assert (out / "m.pkl").read_bytes() == model.read_bytes()

    not_stored = run_cli(env, "artifacts", "get", run.id, "secret.csv", "-o", str(out), check=False)
    assert not_stored.returncode == 2 and "not stored" in not_stored.stderr
    escape = run_cli(env, "artifacts", "get", run.id, "%2e%2e/%2e%2e/etc/passwd", "-o", str(out), check=False)
    assert escape.returncode == 2 and "relative path" in escape.stderr

    # the command line logs to an existing run too: stored (waits for it), or --no-store a reference only
    (tmp_path / "report.html").write_text("<p>ok</p>")
    logged = run_cli(env, "artifacts", "log", run.id, str(tmp_path / "report.html"), "--artifact-path", "eval/report.html")
    assert f"s3://modelog-artifacts/sha256/{_sha(b'<p>ok</p>')}" in logged.stdout
    assert (objects / _sha(b"<p>ok</p>")).read_bytes() == b"<p>ok</p>"
    ref = run_cli(env, "artifacts", "log", run.id, str(tmp_path / "secret.csv"), "--artifact-path", "pii.csv",
                  "--no-store")
    assert "reference only" in ref.stdout and not (objects / _sha(b"pii")).exists()
    bad_log = run_cli(env, "artifacts", "log", run.id, str(model), "--artifact-path", "../../x.pkl", check=False)
    assert bad_log.returncode == 2 and "artifact_path" in bad_log.stderr

    status = client.registry.set_alias("credit-risk", "champion", mv.version, wait=True, timeout=60)
    assert status.status == "APPROVED", status.reason
    client.wait_projected(60)
    modelog.configure(settings)
    path = modelog.load_model_path("credit-risk", alias="champion")
    assert path.read_bytes() == model.read_bytes() and path.is_relative_to(home / "models")
    got = modelog.download_artifact(run.id, "bundle/config.json", str(tmp_path / "c.json"))
    assert got.read_text() == '{"depth": 6}'
    with pytest.raises(ValidationError):
        modelog.download_artifact(run.id, "../model.pkl", str(tmp_path))

    # a corrupted object is an error naming the run, the path and both hashes; no file is left behind
    stored = objects / _sha(model.read_bytes())
    stored.write_bytes(b"tampered" * 5000)
    bad = run_cli(env, "artifacts", "get", run.id, "model.pkl", "-o", str(tmp_path / "bad.pkl"), check=False)
    assert bad.returncode == 2
    for part in (run.id, "model.pkl", _sha(model.read_bytes()), _sha(b"tampered" * 5000)):
        assert part in bad.stderr
    assert not (tmp_path / "bad.pkl").exists()
    with pytest.raises(ArtifactError, match="corrupted"):
        modelog.load_model_path("credit-risk", version=mv.version, dest=str(tmp_path / "again.pkl"))
    stored.unlink()
    missing = run_cli(env, "model", "download", "credit-risk", "--alias", "champion", str(tmp_path / "x"), check=False)
    assert missing.returncode == 2 and "missing" in missing.stderr

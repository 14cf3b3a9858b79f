"""GET /api/v1/runs/{run_id}/artifacts/{path}: the stored bytes, checked, behind requires("read")."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
from fastapi.testclient import TestClient

from modelog import ArtifactError
from modelog.server.app import create_app
from modelog.server.publish import Publisher



def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def stored(live, tok, tmp_path):
    live.settings = dataclasses.replace(live.settings, artifact_uri=(tmp_path / "store").as_uri())
    client = live.client("writer-user")
    (tmp_path / "model.pkl").write_bytes(b"weights" * 1000)
    (tmp_path / "ref.csv").write_bytes(b"a,b")
    with client.start_run(experiment="e") as run:
        run.log_artifact(tmp_path / "model.pkl", "models/model.pkl")
        run.log_artifact(tmp_path / "ref.csv", store=False)
    live.project()
    app = create_app(live.settings, publisher=Publisher(live.settings, emitter=live.emitter), ui=False)
    return TestClient(app), run.id, tmp_path / "store"


def test_streams_the_stored_bytes_with_their_digest(stored, tok):
    api, run_id, _ = stored
    r = api.get(f"/api/v1/runs/{run_id}/artifacts/models/model.pkl", headers=auth(tok["reader"]))
    assert r.status_code == 200, r.text
    assert r.content == b"weights" * 1000
    assert r.headers["etag"] == f'"{hashlib.sha256(b"weights" * 1000).hexdigest()}"'
    assert "model.pkl" in r.headers["content-disposition"]


def test_needs_a_token(stored):
    api, run_id, _ = stored
    assert api.get(f"/api/v1/runs/{run_id}/artifacts/models/model.pkl").status_code == 401


@pytest.mark.parametrize("path", ["%2e%2e/%2e%2e/etc/passwd", "models/%2E%2E/model.pkl", "file:/etc/passwd"])
def test_paths_that_escape_are_refused(stored, tok, path):
    api, run_id, _ = stored
    r = api.get(f"/api/v1/runs/{run_id}/artifacts/{path}", headers=auth(tok["reader"]))
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "path"


def test_reference_only_and_unknown_artifacts_are_404(stored, tok):
    api, run_id, _ = stored
    r = api.get(f"/api/v1/runs/{run_id}/artifacts/ref.csv", headers=auth(tok["reader"]))
    assert r.status_code == 404 and "not stored" in r.json()["detail"]
    assert api.get(f"/api/v1/runs/{run_id}/artifacts/nope.bin", headers=auth(tok["reader"])).status_code == 404


def test_a_corrupted_object_never_arrives_whole(stored, tok):
    api, run_id, store = stored
    sha = hashlib.sha256(b"weights" * 1000).hexdigest()
    (store / "sha256" / sha).write_bytes(b"WEIGHTS" * 1000)
    # the response is aborted before its last chunk (starlette: "response already started"), with the reason
    with pytest.raises(RuntimeError) as err:
        api.get(f"/api/v1/runs/{run_id}/artifacts/models/model.pkl", headers=auth(tok["reader"]))
    assert isinstance(err.value.__cause__, ArtifactError) and sha in str(err.value.__cause__)


def test_a_missing_object_is_502(stored, tok):
    api, run_id, store = stored
    (store / "sha256" / hashlib.sha256(b"weights" * 1000).hexdigest()).unlink()
    r = api.get(f"/api/v1/runs/{run_id}/artifacts/models/model.pkl", headers=auth(tok["reader"]))
    assert r.status_code == 502 and "missing" in r.json()["detail"]


# -- PUT /api/v1/runs/{run_id}/artifacts/{path}: upload, checked against Repr-Digest ------------------------

def digest(body: bytes) -> dict[str, str]:
    import base64

    return {"Repr-Digest": f"sha-256=:{base64.b64encode(hashlib.sha256(body).digest()).decode()}:"}


def test_an_upload_is_stored_and_logged_with_the_token_s_principal(stored, tok, live):
    api, run_id, store = stored
    body = b"uploaded " * 5000
    r = api.put(f"/api/v1/runs/{run_id}/artifacts/up/data.bin?uri=file:///train/data.bin", content=body,
                headers={**auth(tok["writer"]), **digest(body), "Content-Type": "application/x-thing"})
    assert r.status_code == 201, r.text
    sha = hashlib.sha256(body).hexdigest()
    assert r.json() == {"run_id": run_id, "path": "up/data.bin", "sha256": sha, "size_bytes": len(body),
                        "media_type": "application/x-thing", "content_address": f"{store.as_uri()}/sha256/{sha}"}
    assert (store / "sha256" / sha).read_bytes() == body
    live.project()
    rows = live.sql("SELECT uri, media_type FROM artifacts WHERE run_id = ? AND path = 'up/data.bin'", [run_id])
    assert rows == [{"uri": "file:///train/data.bin", "media_type": "application/x-thing"}]
    got = api.get(f"/api/v1/runs/{run_id}/artifacts/up/data.bin", headers=auth(tok["reader"]))
    assert got.content == body
    assert api.get("/api/v1/artifact-store", headers=auth(tok["reader"])).json() == {"root": store.as_uri()}


@pytest.mark.parametrize("path", ["%2e%2e/%2e%2e/etc/passwd", "a/%2E%2E/b", "file:/etc/passwd", "a//b", "C:x"])
def test_uploads_to_paths_that_escape_are_refused_before_reading(stored, tok, path):
    api, run_id, store = stored
    r = api.put(f"/api/v1/runs/{run_id}/artifacts/{path}", content=b"x", headers={**auth(tok["writer"]), **digest(b"x")})
    assert r.status_code == 422 and r.json()["field"] == "path", r.text
    assert not (store / "sha256" / hashlib.sha256(b"x").hexdigest()).exists()


@pytest.mark.parametrize("headers, why", [
    ({}, "Repr-Digest"), ({"Repr-Digest": "sha-256=:bm90IDMyIGJ5dGVz:"}, "Repr-Digest"),
    ({"Repr-Digest": "md5=:AAAA:"}, "Repr-Digest"), (digest(b"other bytes"), "nothing was stored")])
def test_uploads_without_the_right_digest_are_refused_and_nothing_is_stored(stored, tok, headers, why):
    api, run_id, store = stored
    r = api.put(f"/api/v1/runs/{run_id}/artifacts/x.bin", content=b"the body", headers={**auth(tok["writer"]), **headers})
    assert r.status_code == 422 and why in r.text, r.text
    assert not (store / "sha256" / hashlib.sha256(b"the body").hexdigest()).exists()


def test_uploads_need_write(stored, tok):
    api, run_id, _ = stored
    r = api.put(f"/api/v1/runs/{run_id}/artifacts/x.bin", content=b"b", headers={**auth(tok["reader"]), **digest(b"b")})
    assert r.status_code == 403
    assert api.put(f"/api/v1/runs/{run_id}/artifacts/x.bin", content=b"b", headers=digest(b"b")).status_code == 401

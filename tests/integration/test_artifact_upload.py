"""Artifact bytes through the HTTP server: an SDK job that reaches only ``MODELOG_URL`` (no broker, no artifact
store of its own) logs files with ``run.log_artifact``; the server streams them into its artifact store,
checked against the sha256, and logs them with the token's principal. The upload route refuses paths that
could escape the run, bytes that are not the announced sha256, readers and anonymous callers."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request

import pytest

from test_api import bearer, q, token_for
from waiting import wait_until
from modelog.sdk.artifacts import download
from modelog.wire.home import free_port

pytestmark = pytest.mark.broker

JOB = textwrap.dedent("""
    import sys
    import modelog
    big, folder = sys.argv[1], sys.argv[2]
    with modelog.start_run(experiment="uploads", name="remote") as run:
        stored = run.log_artifact(big, "model/weights.bin")
        run.log_artifacts(folder, artifact_path="outputs")
        run.log_artifact(big, "ref-only.bin", store=False)
    print(stored[0]["content_address"])
    print(run.id)
""")


def put(url: str, token: str | None, body: bytes, sha256: str | None = None) -> tuple[int, str]:
    headers = {"Content-Type": "application/octet-stream", **(bearer(token) if token else {})}
    if sha256 is not None:
        headers["Repr-Digest"] = f"sha-256=:{base64.b64encode(bytes.fromhex(sha256)).decode()}:"
    req = urllib.request.Request(url, data=body, headers=headers, method="PUT")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read().decode()


def test_log_artifact_through_the_server_stores_the_bytes(env, settings, server, tmp_path):
    writer = token_for(env, "remote-job", "writer")
    big = tmp_path / "weights.bin"
    data = os.urandom(12 * 1024 * 1024 + 7)  # above one 8 MiB part: the server stores it in parts
    big.write_bytes(data)
    folder = tmp_path / "out"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("alpha")
    (folder / "sub" / "b.json").write_text('{"b": 1}')
    job_env = {k: v for k, v in os.environ.items() if not k.startswith("MODELOG_")}
    job_env.update({"MODELOG_HOME": str(tmp_path / "job-home"), "MODELOG_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
                    "MODELOG_URL": server.url, "MODELOG_TOKEN": writer, "MODELOG_TOPIC_PREFIX": env["MODELOG_TOPIC_PREFIX"],
                    "MODELOG_FLUSH_TIMEOUT": "60"})
    out = subprocess.run([sys.executable, "-c", JOB, str(big), str(folder)], env=job_env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    address, run_id = out.stdout.strip().splitlines()[-2:]
    sha = hashlib.sha256(data).hexdigest()
    assert address == f"{(tmp_path / 'artifacts').as_uri()}/sha256/{sha}"  # the server's store (conftest's env)

    wait_until(lambda: len(q(settings, "SELECT path FROM artifacts WHERE run_id = ?", [run_id])) == 4
               and q(settings, "SELECT status FROM runs WHERE run_id = ?", [run_id]) == [{"status": "FINISHED"}],
               60, "the run and its four artifacts projected")
    arts = q(settings, "SELECT path, sha256, size_bytes, content_address, uri FROM artifacts WHERE run_id = ? "
                       "ORDER BY path", [run_id])
    assert [(a["path"], a["content_address"] is not None) for a in arts] == [
        ("model/weights.bin", True), ("outputs/a.txt", True), ("outputs/sub/b.json", True), ("ref-only.bin", False)]
    assert arts[0]["sha256"] == sha and arts[0]["size_bytes"] == len(data) and arts[0]["content_address"] == address
    assert arts[0]["uri"] == big.resolve().as_uri()  # where the job logged it from
    assert download(run_id, "model/weights.bin", tmp_path / "back.bin", settings).read_bytes() == data
    req = urllib.request.Request(f"{server.url}/api/v1/runs/{run_id}/artifacts/outputs/sub/b.json",
                                 headers=bearer(writer))
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.read() == b'{"b": 1}'
    actors = q(settings, "SELECT DISTINCT actor FROM audit_log WHERE event_type = 'ArtifactLogged' AND entity_key = ?",
               [run_id])
    assert actors == [{"actor": "remote-job"}]

    # the route itself: only writers, only the announced bytes, only paths inside the run
    route = f"{server.url}/api/v1/runs/{run_id}/artifacts"
    body = b"some bytes"
    good = hashlib.sha256(body).hexdigest()
    reader = token_for(env, "just-reads", "reader")
    assert put(f"{route}/x.txt", None, body, good)[0] == 401
    assert put(f"{route}/x.txt", reader, body, good)[0] == 403
    for path in ("a/%2e%2e/%2e%2e/etc/passwd", "%2e%2e%2fescape.txt", "a//b.txt", "file:/etc/passwd", "C:x",
                 "a%5Cb.txt"):
        status, detail = put(f"{route}/{path}", writer, body, good)
        assert status == 422 and "path" in detail, (path, status, detail)
    status, detail = put(f"{route}/x.txt", writer, body, hashlib.sha256(b"other").hexdigest())
    assert status == 422 and "nothing was stored" in detail
    status, detail = put(f"{route}/x.txt", writer, body)
    assert status == 422 and "Repr-Digest" in detail
    status, answer = put(f"{route}/x.txt", writer, body, good)
    assert status == 201 and good in answer
    wait_until(lambda: q(settings, "SELECT sha256 FROM artifacts WHERE run_id = ? AND path = 'x.txt'", [run_id])
               == [{"sha256": good}], 30, "the uploaded x.txt projected")
    assert len(q(settings, "SELECT path FROM artifacts WHERE run_id = ?", [run_id])) == 5  # nothing else logged

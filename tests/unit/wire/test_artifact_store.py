"""The artifact store: content-addressed, stored once, checked on the way back, streamed in parts.

A local directory (file://) and the real local S3 server (``modelog.local.s3server`` as a child process).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from modelog import ArtifactError, Settings, ValidationError
from modelog.sdk.artifacts import check_path
from modelog.wire.artifact_store import ArtifactStore


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def store(tmp_path) -> ArtifactStore:
    return ArtifactStore.from_settings(Settings.load(env={}, home=tmp_path, artifact_uri=(tmp_path / "st").as_uri()))


def test_round_trip_is_content_addressed_and_stored_once(store, tmp_path):
    src = tmp_path / "model.pkl"
    src.write_bytes(b"weights")
    address = store.put_file(src, _sha(b"weights"), 7)
    assert address == store.root + "/sha256/" + _sha(b"weights")
    obj = tmp_path / "st" / "sha256" / _sha(b"weights")
    assert obj.read_bytes() == b"weights"
    before = obj.stat().st_mtime_ns
    other = tmp_path / "copy.pkl"
    other.write_bytes(b"weights")
    assert store.put_file(other, _sha(b"weights"), 7) == address  # same content: nothing written
    assert obj.stat().st_mtime_ns == before
    out = store.download(_sha(b"weights"), tmp_path / "out" / "m.pkl", run_id="r1", path="model.pkl")
    assert out.read_bytes() == b"weights"


def test_corrupted_object_is_an_error_naming_run_path_and_both_hashes(store, tmp_path):
    src = tmp_path / "model.pkl"
    src.write_bytes(b"weights")
    store.put_file(src, _sha(b"weights"), 7)
    (tmp_path / "st" / "sha256" / _sha(b"weights")).write_bytes(b"evil!!!")
    dest = tmp_path / "out.pkl"
    with pytest.raises(ArtifactError) as err:
        store.download(_sha(b"weights"), dest, run_id="r1", path="model.pkl")
    msg = str(err.value)
    assert "r1" in msg and "model.pkl" in msg and _sha(b"weights") in msg and _sha(b"evil!!!") in msg
    assert err.value.actual == _sha(b"evil!!!")
    assert not dest.exists() and not list(tmp_path.glob(".out.pkl*"))  # no wrong file, no leftover


def test_missing_object_is_an_error(store, tmp_path):
    with pytest.raises(ArtifactError, match="missing") as err:
        store.download("a" * 64, tmp_path / "x", run_id="r1", path="model.pkl")
    assert err.value.expected == "a" * 64 and not (tmp_path / "x").exists()


def test_a_file_changed_since_it_was_hashed_is_not_stored(store, tmp_path):
    src = tmp_path / "model.pkl"
    src.write_bytes(b"new content")
    with pytest.raises(ArtifactError, match="changed"):
        store.put_file(src, _sha(b"old content"), 11)
    assert not store.has(_sha(b"old content"), 11)


@pytest.mark.parametrize("path", ["../x", "a/../../x", "%2e%2e/x", "a/%2E%2e/b", "/etc/passwd", "file:///etc/passwd",
                                  "C:/Windows", "a//b", "./a", "a\\b"])
def test_paths_that_could_escape_are_refused(path):
    with pytest.raises(ValidationError) as err:
        check_path(path)
    assert err.value.field == "path" and "relative path" in err.value.rule


@pytest.mark.parametrize("path", ["model.pkl", "model/weights.bin", "report 100%.txt", "model:v1.pkl"])
def test_ordinary_paths_pass(path):
    assert check_path(path) == path


@pytest.fixture
def s3_server(tmp_path):
    data = tmp_path / "s3"
    (data / "modelog-artifacts").mkdir(parents=True)
    port_file = tmp_path / "s3.port"
    proc = subprocess.Popen([sys.executable, "-m", "modelog.local.s3server", str(data), "--port", "0",
                             "--port-file", str(port_file)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not port_file.exists():
            assert proc.poll() is None, "the S3 server exited"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port_file.read_text()}", data
    finally:
        proc.terminate()
        proc.wait(10)


MEMORY_PROBE = textwrap.dedent("""
    import hashlib, json, resource, sys
    from pathlib import Path
    from modelog import Settings
    from modelog.wire.artifact_store import ArtifactStore
    endpoint, src, sha, size, part = sys.argv[1:6]
    settings = Settings.load(env={"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "local",
                                  "AWS_SECRET_ACCESS_KEY": "local"}, artifact_uri="s3://modelog-artifacts/t")
    store = ArtifactStore.from_settings(settings, part_size=int(part), concurrency=2)
    store.has("0" * 64, 0)  # the client is warm before the baseline
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    address = store.put_file(Path(src), sha, int(size))
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"address": address, "grew_kib": after - before}))
""")


def test_a_file_larger_than_a_part_streams_in_parts_without_being_held_whole(s3_server, tmp_path):
    endpoint, data = s3_server
    part = 5 * 1024 * 1024
    size = 160 * 1024 * 1024  # 32 parts
    src = tmp_path / "big.bin"
    h = hashlib.sha256()
    with src.open("wb") as fh:
        block = os.urandom(1024 * 1024)
        for i in range(size // len(block)):
            chunk = block[:-8] + i.to_bytes(8, "big")
            h.update(chunk)
            fh.write(chunk)
    sha = h.hexdigest()
    out = subprocess.run([sys.executable, "-c", MEMORY_PROBE, endpoint, str(src), sha, str(size), str(part)],
                         capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    assert result["address"] == f"s3://modelog-artifacts/t/sha256/{sha}"
    stored = data / "modelog-artifacts" / "t" / "sha256" / sha
    assert stored.stat().st_size == size
    # at most a few parts in memory (2 in flight + buffers), never the 160 MiB file
    print("peak memory growth during the upload: KiB", result["grew_kib"])
    assert result["grew_kib"] * 1024 < size / 3, result
    settings = Settings.load(env={"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "local",
                                  "AWS_SECRET_ACCESS_KEY": "local"}, artifact_uri="s3://modelog-artifacts/t")
    store = ArtifactStore.from_settings(settings)
    back = store.download(sha, tmp_path / "back.bin", run_id="r1", path="big.bin")
    assert back.stat().st_size == size
    with stored.open("r+b") as fh:  # one byte changed on the server's disk (inverted: random data may hold any value)
        fh.seek(size // 2)
        byte = fh.read(1)[0]
        fh.seek(size // 2)
        fh.write(bytes([byte ^ 0xFF]))
    with pytest.raises(ArtifactError, match="corrupted"):
        store.download(sha, tmp_path / "again.bin", run_id="r1", path="big.bin")
    assert not (tmp_path / "again.bin").exists()

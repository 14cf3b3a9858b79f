"""The embedded S3 server honours If-Match on PUT (tansu's optimistic updates of meta.json and watermarks)."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request

from test_s3server import OURS, _serve


def _put(port: int, key: str, body: bytes, **headers: str) -> tuple[int, str | None]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/bucket/{key}", data=body, method="PUT", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers.get("ETag")
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code, None


def test_if_match_put_succeeds_only_on_the_current_etag(tmp_path):
    (tmp_path / "bucket").mkdir()
    proc, port = _serve(OURS, tmp_path)
    try:
        status, etag = _put(port, "meta.json", b"v0", **{"If-None-Match": "*"})
        assert status == 200
        assert _put(port, "meta.json", b"again", **{"If-None-Match": "*"})[0] == 412
        assert _put(port, "missing.json", b"x", **{"If-Match": etag})[0] == 412
        # many writers read the same version and race to replace it: exactly one wins
        results = []
        threads = [threading.Thread(target=lambda i=i: results.append(_put(port, "meta.json", f"v{i}".encode(),
                                                                           **{"If-Match": etag})))
                   for i in range(1, 9)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(s for s, _ in results) == [200] + [412] * 7
        [winner] = [e for s, e in results if s == 200]
        assert _put(port, "meta.json", b"stale", **{"If-Match": etag})[0] == 412
        assert _put(port, "meta.json", b"next", **{"If-Match": winner})[0] == 200
        assert (tmp_path / "bucket" / "meta.json").read_bytes() == b"next"
        assert _put(port, "plain", b"p")[0] == 200  # unconditional writes unchanged
    finally:
        proc.kill()
        proc.wait()


def _etag_race(port: int, seconds: float = 2.0) -> tuple[int, int]:
    """One thread rewrites an object (same size, new bytes) while another reads it: (reads, reads whose
    ETag is not the MD5 of the bytes they carried)."""
    import hashlib
    import time

    stop = threading.Event()

    def rewrite() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            _put(port, "watermark.json", f'{{"high":{i:08d}}}'.encode())

    writer = threading.Thread(target=rewrite)
    writer.start()
    reads = wrong = 0
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/bucket/watermark.json", timeout=10) as r:
                body, etag = r.read(), r.headers["ETag"].strip('"')
            reads += 1
            wrong += hashlib.md5(body).hexdigest() != etag
    finally:
        stop.set()
        writer.join()
    return reads, wrong


def test_a_read_carries_the_etag_of_the_bytes_it_sends_while_the_object_is_rewritten(tmp_path):
    """tansu's next If-Match update is computed from the bytes it read: an ETag of newer bytes let a
    stale update through (a partition's watermark moved back; two batches got one offset)."""
    (tmp_path / "bucket").mkdir()
    proc, port = _serve(OURS, tmp_path)
    try:
        assert _put(port, "watermark.json", b'{"high":00000000}')[0] == 200
        reads, wrong = _etag_race(port)
        assert reads > 50 and wrong == 0, (reads, wrong)
    finally:
        proc.kill()
        proc.wait()

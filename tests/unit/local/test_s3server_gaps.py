"""The embedded S3 server lists no batch above an offset tansu allocated and has not written yet.

tansu's S3 engine produces in two steps (move ``watermark.json`` on, then write ``records/<offset>.batch``);
concurrent produce requests can write their batches out of order, and a live consumer that listed the later
batch first skipped the earlier one for good (issue 10). These tests play tansu's requests over HTTP.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from urllib.parse import urlencode

from modelog.local.s3server import Gaps
from test_s3server import OURS, _serve

PARTITION = "clusters/c/topics/t/partitions/0000000000"


def _req(port: int, method: str, key: str, body: bytes | None = None, **headers: str) -> tuple[int, bytes, str | None]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/bucket/{key}", data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read(), r.headers.get("ETag")
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read(), None


class Tansu:
    """The S3 requests of tansu's produce: a conditional watermark update, then the batch."""

    def __init__(self, port: int) -> None:
        self.port = port

    def allocate(self, n: int) -> int:
        status, body, etag = _req(self.port, "GET", f"{PARTITION}/watermark.json")
        high = json.loads(body)["high"] if status == 200 else 0
        cond = {"If-Match": etag} if status == 200 else {"If-None-Match": "*"}
        new = json.dumps({"low": None, "high": high + n, "timestamps": None}).encode()
        assert _req(self.port, "PUT", f"{PARTITION}/watermark.json", new, **cond)[0] == 200
        return high

    def write(self, offset: int) -> None:
        key = f"{PARTITION}/records/{offset:020d}.batch"
        assert _req(self.port, "PUT", key, b"batch", **{"If-None-Match": "*"})[0] == 200

    def listed(self) -> list[int]:
        q = urlencode({"list-type": "2", "prefix": f"{PARTITION}/records/"})
        status, body, _ = _req(self.port, "GET", "?" + q)
        assert status == 200
        text = body.decode()
        return [int(part.split(".batch")[0][-20:]) for part in text.split("<Key>")[1:]]


def test_a_batch_written_ahead_of_an_earlier_allocation_is_listed_only_after_it(tmp_path):
    (tmp_path / "bucket").mkdir()
    proc, port = _serve(OURS, tmp_path)
    try:
        t = Tansu(port)
        a = t.allocate(3)
        t.write(a)
        assert t.listed() == [0]
        b, c = t.allocate(2), t.allocate(4)  # two produce requests at once
        assert (b, c) == (3, 5)
        t.write(c)  # the later one lands first
        assert t.listed() == [0]  # 5 is hidden: a consumer at 3 must not jump to 5
        t.write(b)
        assert t.listed() == [0, 3, 5]
        d = t.allocate(1)
        assert t.listed() == [0, 3, 5]  # an allocation hides nothing below it
        t.write(d)
        assert t.listed() == [0, 3, 5, 9]
    finally:
        proc.kill()
        proc.wait()


def test_an_allocation_never_written_stops_hiding_after_the_timeout(tmp_path):
    (tmp_path / "bucket").mkdir()
    proc, port = _serve(OURS + ["--gap-timeout", "1"], tmp_path)
    try:
        import time

        t = Tansu(port)
        t.allocate(2)  # the broker dies before writing this batch
        t.write(t.allocate(1))
        assert t.listed() == []
        time.sleep(1.2)
        assert t.listed() == [2]
    finally:
        proc.kill()
        proc.wait()


def test_gaps_bookkeeping(tmp_path):
    now = [0.0]
    g = Gaps(timeout=30, clock=lambda: now[0])
    part = tmp_path / "p"
    (part / "records").mkdir(parents=True)
    g.allocated(part, None, 3)
    g.allocated(part, 3, 5)
    g.allocated(part, 5, 5)  # high unchanged: nothing allocated
    assert g.first_missing(part) == 0
    (part / "records" / f"{3:020d}.batch").write_bytes(b"x")
    g.written(part / "records" / f"{3:020d}.batch")
    assert g.first_missing(part) == 0
    g.written(part / "records" / f"{0:020d}.batch")  # a write that failed: the object is not there
    assert g.first_missing(part) == 0
    (part / "records" / f"{0:020d}.batch").write_bytes(b"x")
    g.written(part / "records" / f"{0:020d}.batch")
    assert g.first_missing(part) is None
    g.allocated(part, 5, 6)
    now[0] = 29.9
    assert g.first_missing(part) == 5
    now[0] = 30.0
    assert g.first_missing(part) is None  # given up on
    assert g.first_missing(tmp_path / "other") is None

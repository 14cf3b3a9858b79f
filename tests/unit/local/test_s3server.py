"""The embedded S3 server (localbucket with modelog's listing changes) answers exactly as localbucket does.

Both servers run as real processes over one data directory; every listing is compared byte for byte,
before and after objects are written over and deleted (the caches must follow the writes).
"""

from __future__ import annotations

import itertools
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from urllib.parse import urlencode

import localbucket
import pytest

from modelog.local.s3server import _list_entries, _object_path, _plain_dirs
from modelog.wire.home import free_port
from waiting import wait_until

KEYS = ["a.txt", "b/1", "b/2", "b/c/3", "b/c/4", "b/cc", "bb/5", "é/6", "records/00000000000000000000.batch",
        "records/00000000000000000004.batch", "records/00000000000000000010.batch", "z"]


def test_listing_pages_equal_localbuckets_for_every_prefix_delimiter_marker_and_size(tmp_path):
    for key in KEYS:
        path = tmp_path / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(key)
    (tmp_path / "b" / (localbucket.TEMP_PREFIX + "upload")).write_text("partial")  # never listed
    original = localbucket.S3Handler._list_entries
    prefixes = ["", "b", "b/", "b/c", "b/c/", "bb", "records/", "records/0000", "missing/", "é"]
    markers = [("", False), ("b/1", False), ("b/c/", True), ("records/00000000000000000004.batch", False)]
    for prefix, delimiter, (marker, is_prefix), max_keys in itertools.product(prefixes, ["", "/"], markers, [1, 2, 1000]):
        want = original(None, tmp_path, prefix, delimiter, marker, is_prefix, max_keys)
        got = _list_entries(None, tmp_path, prefix, delimiter, marker, is_prefix, max_keys)
        assert got == want, (prefix, delimiter, marker, max_keys)


OURS = ["-m", "modelog.local.s3server"]
PLAIN = ["-c", "import localbucket; localbucket.main()"]


def _serve(args: list[str], root, timeout: float = 20) -> tuple[subprocess.Popen, int]:
    """Start a server over ``root``; return it and its port once it accepts connections.

    Ours binds port 0 and writes the port it got (no race). Plain localbucket must be told a port, so
    one is picked and may be taken before it binds: then it exits, and another port is tried."""
    for _ in range(3):
        if args == OURS:
            port_file = root.parent / f"{root.name}.s3.port"
            port_file.unlink(missing_ok=True)
            port, extra = None, ["--port", "0", "--port-file", str(port_file)]
        else:
            port = free_port()
            extra = ["--port", str(port)]
        proc = subprocess.Popen([sys.executable, *args, str(root), "--host", "127.0.0.1", *extra],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def listening() -> int | None:
            nonlocal port
            if proc.poll() is not None:
                return -1  # exited: its port was taken
            if port is None:
                try:
                    port = int(port_file.read_text())
                except (OSError, ValueError):
                    return None
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            except OSError:
                return None
            return port if proc.poll() is None else -1

        got = wait_until(listening, timeout, f"server {args} accepts connections")
        if got != -1:
            return proc, got
    raise RuntimeError(f"server {args} exited at start three times (ports taken?)")


def _call(port: int, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


@pytest.fixture
def servers(tmp_path):
    (p1, ours), (p2, plain) = _serve(OURS, tmp_path), _serve(PLAIN, tmp_path)
    procs = [p1, p2]
    yield ours, plain
    for p in procs:
        p.terminate()
        p.wait(10)


def test_listings_over_http_equal_localbuckets_and_follow_writes(servers):
    ours, plain = servers
    assert _call(ours, "PUT", "/bkt")[0] == 200
    for key in KEYS:
        assert _call(ours, "PUT", "/bkt/" + urllib.request.quote(key), key.encode())[0] == 200
    queries = [{"list-type": "2"}, {"list-type": "2", "prefix": "records/"},
               {"list-type": "2", "prefix": "records/", "max-keys": "2"},
               {"list-type": "2", "prefix": "b/", "delimiter": "/"}, {"list-type": "2", "start-after": "b/c/3"},
               {"list-type": "2", "prefix": "é", "encoding-type": "url"}, {"prefix": "b"}, {"prefix": "b", "marker": "b/2"}]

    def same() -> None:
        for q in queries:
            a, b = _call(ours, "GET", "/bkt?" + urlencode(q)), _call(plain, "GET", "/bkt?" + urlencode(q))
            assert a == b, q
            assert a[0] == 200

    same()
    same()  # served from the caches now
    assert _call(ours, "PUT", "/bkt/records/00000000000000000004.batch", b"rewritten, longer")[0] == 200
    assert _call(ours, "PUT", "/bkt/records/00000000000000000020.batch", b"new")[0] == 200
    assert _call(ours, "DELETE", "/bkt/b/c/3")[0] == 204
    same()
    listing = _call(ours, "GET", "/bkt?" + urlencode({"list-type": "2", "prefix": "records/"}))[1]
    assert b"00000000000000000020.batch" in listing and b"<Size>17</Size>" in listing


def _resolution(fn, handler, key):
    try:
        return "path", str(fn(handler, "bkt", key))
    except localbucket.S3Error as exc:
        return "refused", exc.args


def test_object_paths_equal_localbuckets_and_a_symlink_is_refused_after_its_directory_is_known(tmp_path):
    root = tmp_path / "root"
    (root / "bkt" / "records").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret").write_text("not in the bucket")
    handler = localbucket.S3Handler.__new__(localbucket.S3Handler)
    handler.data_root = root
    original = localbucket.S3Handler._object_path
    fast = _object_path(original)
    keys = ["records/a.batch", "records/b.batch", "a.txt", "records/../a.txt", "records//x", "records/./x",
            "records/", "records/..", "new/dir/x", "é/ü"]
    for _ in range(2):  # the second pass takes the fast path for every directory the first one resolved
        for key in keys:
            assert _resolution(fast, handler, key) == _resolution(original, handler, key), key
    assert str(root / "bkt" / "records") in _plain_dirs
    # a symlink made in a known directory afterwards, to a file or to a directory, is still refused
    (root / "bkt" / "records" / "link").symlink_to(tmp_path / "outside" / "secret")
    (root / "bkt" / "records" / "dirlink").symlink_to(tmp_path / "outside")
    for key in ("records/link", "records/dirlink/secret"):
        assert _resolution(fast, handler, key)[0] == "refused", key
        assert _resolution(fast, handler, key) == _resolution(original, handler, key), key
    with pytest.raises(localbucket.S3Error, match="bucket does not exist"):
        fast(handler, "nosuch", "records/a.batch")

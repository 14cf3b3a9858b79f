"""The embedded broker's on-disk S3 server: ``localbucket`` with TCP_NODELAY and prefix-scoped listings.

* localbucket (http.server underneath) writes a response's headers and body in separate sends. With
  Nagle's algorithm on, the body waits for the client's delayed ACK (~40 ms on Linux), and tansu makes
  several sequential S3 requests per Kafka fetch, so every fetch stalled ~200 ms and the projector
  caught up at ~15k points/s. Turning Nagle off is the standard fix (``StreamRequestHandler`` has a
  switch for it); see docs/decisions/0004-embedded-broker-durability.md.
* Listings. tansu's S3 engine lists a partition's ``records/`` prefix, page after page, on every fetch,
  and a partition holds one object per produced batch. localbucket answered each page by walking and
  sorting every key of the bucket and building the XML with ElementTree (~100 ms per 1,000-key page
  here), so with 10^4 runs the S3 server saturated a core and ingest slowed quadratically
  (bench/growth.py). Here a listing walks only the directory its prefix names, the sorted keys of a
  directory are kept until the next write, and each object's XML entry is kept until that object is
  written or deleted: a page is a join of cached strings. The answers are byte for byte localbucket's
  (tests/unit/local/test_s3server.py). tansu still reads every page on every fetch: that cost grows with the
  partition, which is a limit of the embedded broker's S3 mode (docs/decisions/0004).
* Request logging at INFO (one line per request) is off; warnings and errors stay.
* Offsets allocated and not yet written (``Gaps``): a listing of a partition's batches stops below the
  oldest offset tansu has allocated and not written yet, so a live consumer never skips a batch that
  lands late (issue 10). GET answers carry the ETag of the bytes they send (``_etag_of_open``).
* Object paths. localbucket resolved every component of an object's path (``realpath``) three times per
  PUT: ~45 % of the server's time on a produce. A directory is resolved once and remembered when it holds
  no symlink on the way (``_object_path``); produce + acknowledgement on ``s3://`` went 9.1 -> 5.9 ms p50.
* Conditional writes. tansu updates its metadata (``meta.json``: producer ids and sequence numbers) and
  each partition's ``watermark.json`` with ``PUT`` + ``If-Match: <etag>``, retrying on 412. localbucket
  honours ``If-None-Match: *`` but ignores ``If-Match``, so concurrent producers overwrote each other's
  updates: two producers got one producer id, watermarks moved back, and records were acknowledged that
  no consumer could read (issue 10; docs/decisions/0012-emitter-resends.md). Here ``If-Match`` is
  checked, and the check and the write are one step with respect to other conditional writes.

    python -m modelog.local.s3server DATA_ROOT --host 127.0.0.1 --port PORT [--port-file FILE]

``--port 0`` binds a port the OS picks; ``--port-file`` receives the bound port once it listens, so a
parent process never has to pick a port and hope it is still free when the server binds it.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import json
import logging
import mimetypes
import os
import threading
import time
import xml.etree.ElementTree as ET
from email.utils import formatdate
from http import HTTPStatus
from pathlib import Path
from urllib.parse import unquote, urlsplit

import localbucket

log = logging.getLogger("modelog.s3server")  # not __name__: it runs as __main__


_lock = threading.Lock()
_generation = 0  # bumped before and after every write: a listing computed across a write is not kept
_listings: dict[tuple[str, str], tuple[int, list[tuple[str, Path]]]] = {}  # (bucket dir, prefix) -> keys
_entries: dict[tuple[str, bool], bytes] = {}  # (object path, url-encoded?) -> its <Contents> XML


def _invalidate(path: str | None) -> None:
    global _generation
    with _lock:
        _generation += 1
        _listings.clear()
        if path is None:
            _entries.clear()
        else:
            _entries.pop((path, False), None)
            _entries.pop((path, True), None)


def _keys_under(bucket_dir: Path, prefix: str) -> list[tuple[str, Path]]:
    """(key, path) of every object whose key starts with ``prefix``, sorted as S3 does (UTF-8 bytes).
    Reads only the directory the prefix names; kept until the next write."""
    with _lock:
        gen = _generation
        hit = _listings.get((str(bucket_dir), prefix))
    if hit is not None and hit[0] == gen:
        return hit[1]
    head, sep, _ = prefix.rpartition("/")
    base = head + "/" if sep else ""
    root = os.path.join(bucket_dir, head) if sep else str(bucket_dir)
    out: list[tuple[str, Path]] = []
    stack = [(root, base)]
    while stack:
        directory, key_dir = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                stack.append((entry.path, key_dir + entry.name + "/"))
            elif not entry.name.startswith(localbucket.TEMP_PREFIX):
                key = key_dir + entry.name
                if key.startswith(prefix):
                    out.append((key, Path(entry.path)))
    out.sort(key=lambda item: item[0].encode())
    with _lock:
        if _generation == gen:
            _listings[(str(bucket_dir), prefix)] = (gen, out)
    return out


def _list_entries(self, bucket_dir: Path, prefix: str, delimiter: str, marker: str, marker_is_prefix: bool,
                  max_keys: int) -> tuple[list[tuple[str, Path]], list[str], bool, str]:
    """localbucket's ``S3Handler._list_entries`` (one page of keys and common prefixes after the
    marker), reading only the directory the prefix names."""
    contents: list[tuple[str, Path]] = []
    common_prefixes: list[str] = []
    last_entry = ""
    truncated = False
    keys = _visible_keys(bucket_dir, prefix)
    start = 0
    if marker and not marker_is_prefix:  # keys are sorted by bytes: skip past the marker at once
        start = bisect.bisect_right(keys, marker.encode(), key=lambda item: item[0].encode())
    for key, path in itertools.islice(keys, start, None):
        if marker and (key.encode() <= marker.encode() or (marker_is_prefix and key.startswith(marker))):
            continue
        common = ""
        if delimiter:
            index = key.find(delimiter, len(prefix))
            if index >= 0:
                common = key[: index + len(delimiter)]
        if common and common_prefixes and common_prefixes[-1] == common:
            continue
        if len(contents) + len(common_prefixes) >= max_keys:
            truncated = max_keys > 0
            break
        if common:
            common_prefixes.append(common)
            last_entry = "P:" + common
        else:
            contents.append((key, path))
            last_entry = "K:" + key
    return contents, common_prefixes, truncated, last_entry


def _add_list_entries(self, root, contents, common_prefixes, encode) -> None:
    """Keep the entries' XML aside (cached per object) for ``_send_xml`` to splice in, instead of
    adding thousands of ElementTree nodes to ``root``."""
    url = self.query.get("encoding-type") == "url"
    parts = []
    for key, path in contents:
        cache_key = (str(path), url)
        with _lock:
            xml = _entries.get(cache_key)
        if xml is None:
            item = ET.Element("Contents")
            stat = path.stat()
            localbucket.sub_element(item, "Key", encode(key))
            localbucket.sub_element(item, "LastModified", localbucket.iso_timestamp(stat.st_mtime))
            localbucket.sub_element(item, "ETag", f'"{localbucket.object_etag(path)}"')
            localbucket.sub_element(item, "Size", str(stat.st_size))
            localbucket.sub_element(item, "StorageClass", "STANDARD")
            xml = ET.tostring(item, encoding="utf-8")
            with _lock:
                _entries[cache_key] = xml
        parts.append(xml)
    for common in common_prefixes:
        item = ET.Element("CommonPrefixes")
        localbucket.sub_element(item, "Prefix", encode(common))
        parts.append(ET.tostring(item, encoding="utf-8"))
    self._modelog_entries = b"".join(parts)


def _send_xml(self, root) -> None:
    body = ET.tostring(root, encoding="UTF-8", xml_declaration=True)
    extra = self.__dict__.pop("_modelog_entries", b"")
    if extra:
        close = b"</" + root.tag.encode() + b">"
        if body.endswith(b" />"):  # no other children: open the element
            body = body[:-3] + b">" + close
        body = body[: -len(close)] + extra + close
    self._send(HTTPStatus.OK, body, {"Content-Type": "application/xml"})


def _writes(method):
    """Wrap a writing verb: invalidate the caches for its object before and after it runs."""
    def run(self):
        try:
            bucket_key = unquote(urlsplit(self.path).path).lstrip("/")
            bucket, _, key = bucket_key.partition("/")
            path = str(self._object_path(bucket, key)) if key else None
        except Exception as exc:  # noqa: BLE001 -- unparsable: let localbucket answer; drop every cache
            log.warning("%s %r: cannot map to an object (%s: %s); dropping every listing cache",
                        self.command, self.path, type(exc).__name__, exc)
            path = None
        _invalidate(path)
        try:
            return method(self)
        finally:
            _invalidate(path)
    return run


_conditional = threading.Lock()

SMALL = 1 << 20  # objects up to this size get an ETag computed from their bytes on every read, never cached


def _md5(file) -> str:
    digest = hashlib.md5()
    file.seek(0)
    while block := file.read(1 << 20):
        digest.update(block)
    return digest.hexdigest()


def _etag_of_open(file, path: Path) -> str:
    """The ETag of the bytes behind ``file`` (an open object), not of whatever ``path`` names by now.

    localbucket's GET opened the object and then computed the ETag of its path: an object replaced in
    between went out as the old bytes with the new ETag, and tansu's next ``If-Match`` update, computed
    from the old bytes, passed: a partition's watermark moved back and two batches got one offset. Small
    objects (tansu's ``watermark.json`` and ``meta.json``) are hashed on every read: localbucket's cache is
    keyed by (inode, size, mtime), which a rewrite can repeat when the file system reuses an inode within
    one timestamp tick. tansu's batches (written once, read on every fetch) and large objects keep the cache,
    keyed by the open file's own ``fstat``."""
    st = os.fstat(file.fileno())
    if st.st_size <= SMALL and not path.name.endswith(".batch"):  # a batch is written once, never replaced
        return _md5(file)
    signature = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    with localbucket._etag_lock:
        cached = localbucket._etag_cache.get(str(path))
    if cached and cached[0] == signature:
        return cached[1]
    etag = _md5(file)
    with localbucket._etag_lock:
        localbucket._etag_cache[str(path)] = (signature, etag)
    return etag


def _get(self, bucket: str, key: str, include_body: bool):
    """localbucket's ``S3Handler._get`` (send an object, or a byte range of it), with the ETag of the bytes
    sent (``_etag_of_open``)."""
    if not bucket or not key:
        raise self._not_implemented_error()
    overrides = self._response_header_overrides()
    target = self._object_path(bucket, key)
    if not target.is_file():
        raise localbucket.S3Error(HTTPStatus.NOT_FOUND, "NoSuchKey", "The specified key does not exist.")
    try:
        file = target.open("rb")
    except FileNotFoundError:
        raise localbucket.S3Error(HTTPStatus.NOT_FOUND, "NoSuchKey", "The specified key does not exist.") from None
    with file:
        stat = os.fstat(file.fileno())
        headers = {
            "Content-Type": mimetypes.guess_type(target.name)[0] or "application/octet-stream",
            "ETag": f'"{_etag_of_open(file, target)}"',
            "Last-Modified": formatdate(stat.st_mtime, usegmt=True),
            "Accept-Ranges": "bytes",
            **overrides,
        }
        status, start, length = HTTPStatus.OK, 0, stat.st_size
        byte_range = localbucket.parse_range(self.headers.get("Range", ""), stat.st_size)
        if byte_range:
            start, end = byte_range
            status, length = HTTPStatus.PARTIAL_CONTENT, end - start + 1
            headers["Content-Range"] = f"bytes {start}-{end}/{stat.st_size}"
        self._send_file(status, file, start, length, headers, include_body)


def _current_etag(path: Path) -> str | None:
    """The ETag of the object's bytes now (no cache: see ``_etag_of_open``); None if there is none."""
    try:
        with path.open("rb") as file:
            return _md5(file)
    except (FileNotFoundError, IsADirectoryError):
        return None


def _written(target: Path) -> None:
    """A write to ``target`` ended: drop the listings kept from before it, then its allocation (in that order:
    a listing kept from before the batch existed must not be served once its allocation is gone)."""
    _invalidate(str(target))
    gaps.written(target)


def _write_object(original):
    """localbucket's write, refusing an ``If-Match`` PUT whose ETag is not the object's (412), and noting
    the offsets tansu allocates (``Gaps``)."""
    def write_object(self, bucket: str, key: str, write) -> str:
        target = self._object_path(bucket, key)
        if_match = self.headers.get("If-Match")
        if if_match is None and self.headers.get("If-None-Match") is None:
            try:
                return original(self, bucket, key, write)
            finally:
                _written(target)
        with _conditional:
            if if_match is not None:
                etag = _current_etag(target)
                if etag is None or not localbucket.etag_matches(if_match, etag):
                    raise self._precondition_failed_error()
            watermark = target.name == "watermark.json"
            before = _high(target) if watermark else None
            try:
                etag = original(self, bucket, key, write)
            finally:
                _written(target)
            if watermark:
                gaps.allocated(target.parent, before, _high(target))
            return etag
    return write_object


_plain_dirs: set[str] = set()  # directories under a bucket whose path has no symlink on the way (resolved once)
_PLAIN_DIRS_MAX = 100_000


def _object_path(original):
    """localbucket's ``_object_path`` (the key's file, refusing one that leaves its bucket) without resolving
    every component of the path on every call: ``realpath`` lstat-ed each of ~14 components three times per
    PUT, ~45 % of the server's time on a produce. A directory whose resolution gave back its own path
    is remembered (nothing but this server writes under its data root, and it never makes a symlink);
    the object's own name is still checked for a symlink on every call, and a key localbucket refuses is
    refused the same way (the original runs for every key not taken by the fast path)."""
    def object_path(self, bucket: str, key: str) -> Path:
        bucket_dir = self._bucket_dir(bucket)
        head, sep, name = key.rpartition("/")
        parent = os.path.join(bucket_dir, head) if sep else str(bucket_dir)
        if parent in _plain_dirs and name not in ("", ".", ".."):
            target = os.path.join(parent, name)
            if not os.path.islink(target):
                return Path(target)
        resolved = original(self, bucket, key)
        if os.path.dirname(resolved) == parent:  # no symlink on the way to the object's directory
            if len(_plain_dirs) >= _PLAIN_DIRS_MAX:
                _plain_dirs.clear()
            _plain_dirs.add(parent)
        return resolved
    return object_path


# -- offsets allocated and not yet written --------------------------------------------------------------------

def _high(watermark: Path) -> int | None:
    """``high`` of a tansu partition's ``watermark.json`` (None: no file, no high, or not tansu's JSON)."""
    try:
        high = json.loads(watermark.read_bytes()).get("high")
    except (OSError, ValueError, AttributeError):
        return None
    return high if isinstance(high, int) else None


class Gaps:
    """Offsets tansu has allocated whose batch is not written yet, per partition directory.

    tansu's S3 engine produces in two steps: it moves the partition's ``watermark.json`` from ``high`` to
    ``high + n`` (a conditional update), then writes the batch object ``records/<high>.batch``. Two produce
    requests run concurrently, so a later allocation's batch can be written before an earlier one's, and a
    fetch in between lists the later batch, returns it, and moves the consumer past the earlier offset for
    good: a record acknowledged and on the log that a live consumer never reads (issue 10: a training job's
    points missing from the views, found only by a rebuild). Real Kafka only exposes offsets below the high
    watermark, all written. Here a listing of a partition's ``records/`` hides every batch above the oldest
    allocation still missing, until it is written; an allocation whose batch never comes (the broker killed
    between the two steps, or the batch refused) stops hiding after ``timeout`` seconds.
    """

    def __init__(self, timeout: float = 10.0, clock=time.monotonic) -> None:
        self.timeout = timeout
        self.clock = clock
        self._lock = threading.Lock()
        self._pending: dict[str, dict[int, float]] = {}  # partition dir -> {allocated offset: since}
        self._listing: dict[str, threading.Lock] = {}  # partition dir -> held while it is listed

    def listing(self, partition: Path) -> threading.Lock:
        """Held across a listing of ``partition``'s batches (the directory read and ``first_missing``), and
        by ``written`` before it drops an allocation: a batch written during the read, after a later one the
        read saw, is still pending when the read's cut is computed."""
        with self._lock:
            return self._listing.setdefault(str(partition), threading.Lock())

    def allocated(self, partition: Path, before: int | None, after: int | None) -> None:
        """``watermark.json`` of ``partition`` went from ``before`` to ``after``: offset ``before`` is taken."""
        if after is None or after <= (before or 0):
            return
        offset = before or 0
        if (partition / "records" / f"{offset:020d}.batch").exists():
            return  # already written (a watermark rewritten after its batch)
        with self._lock:
            self._pending.setdefault(str(partition), {})[offset] = self.clock()

    def written(self, path: Path) -> None:
        """A write to ``path`` ended: if it is an allocated batch that now exists, it is no longer missing."""
        if path.parent.name != "records" or not path.name.endswith(".batch"):
            return
        partition = str(path.parent.parent)
        with self._lock:
            if not self._pending.get(partition):
                return
        with self.listing(path.parent.parent), self._lock:
            pending = self._pending.get(partition)
            if not pending:
                return
            try:
                offset = int(path.name[:20])
            except ValueError:
                return
            if offset in pending and path.exists():
                del pending[offset]
                if not pending:
                    del self._pending[partition]

    def first_missing(self, partition: Path) -> int | None:
        """The oldest allocated offset of ``partition`` whose batch is missing (and not given up on)."""
        with self._lock:
            pending = self._pending.get(str(partition))
            if not pending:
                return None
            now = self.clock()
            for offset in [o for o, since in pending.items() if now - since >= self.timeout]:
                del pending[offset]
                log.warning("partition %s: the batch at offset %d was allocated %.0f s ago and never written; "
                            "the batches after it are listed again", partition, offset, self.timeout)
            if not pending:
                del self._pending[str(partition)]
                return None
            return min(pending)


gaps = Gaps()


def _visible_keys(bucket_dir: Path, prefix: str) -> list[tuple[str, Path]]:
    """``_keys_under(bucket_dir, prefix)`` without the batches above a partition's first missing allocation
    (``Gaps``)."""
    head, sep, _ = prefix.rpartition("/")
    directory = Path(os.path.join(bucket_dir, head))
    if not sep or directory.name != "records":
        return _keys_under(bucket_dir, prefix)
    partition = directory.parent
    with gaps.listing(partition):
        keys = _keys_under(bucket_dir, prefix)
        missing = gaps.first_missing(partition)
    if missing is None:
        return keys
    cut = f"{missing:020d}.batch"
    return [(k, p) for k, p in keys if not (p.parent.name == "records" and p.name.endswith(".batch")
                                             and p.parent.parent == partition and p.name > cut)]


def patch() -> None:
    """Install the changes above into localbucket's handler."""
    h = localbucket.S3Handler
    h.disable_nagle_algorithm = True
    h._list_entries = _list_entries
    h._add_list_entries = _add_list_entries
    h._send_xml = _send_xml
    h._write_object = _write_object(h._write_object)
    h._get = _get
    h._object_path = _object_path(h._object_path)
    for verb in ("do_PUT", "do_POST", "do_DELETE"):
        setattr(h, verb, _writes(getattr(h, verb)))


def main(argv: list[str] | None = None) -> None:
    """localbucket's command line (DATA_ROOT, --host, --port), plus ``--port-file``."""
    import argparse
    from http.server import ThreadingHTTPServer

    parser = argparse.ArgumentParser(prog="python -m modelog.local.s3server", description=__doc__.split("\n")[0])
    parser.add_argument("data_root", metavar="DATA_ROOT", type=Path, help="directory that holds the buckets")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=9000, help="port to listen on; 0: any free one (default: 9000)")
    parser.add_argument("--port-file", type=Path, help="write the bound port here once listening")
    parser.add_argument("--gap-timeout", type=float, default=gaps.timeout, metavar="SECONDS",
                        help="how long a partition's later batches stay hidden behind an allocated offset whose "
                             f"batch was never written (default: {gaps.timeout:g})")
    args = parser.parse_args(argv)
    gaps.timeout = args.gap_timeout
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s [%(levelname)s]: %(message)s",
                        datefmt="%Y-%m-%d %H:%M:%S")
    patch()
    data_root = args.data_root.resolve()
    data_root.mkdir(parents=True, exist_ok=True)
    localbucket.S3Handler.data_root = data_root
    server = ThreadingHTTPServer((args.host, args.port), localbucket.S3Handler)
    if args.port_file is not None:
        tmp = args.port_file.with_name(args.port_file.name + ".tmp")
        tmp.write_text(str(server.server_address[1]))
        os.replace(tmp, args.port_file)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()

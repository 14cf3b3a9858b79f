"""The embedded broker's on-disk S3 server: ``localbucket`` with TCP_NODELAY and prefix-scoped listings.

* localbucket (http.server underneath) writes a response's headers and body in separate sends. With
  Nagle's algorithm on, the body waits for the client's delayed ACK (~40 ms on Linux), and tansu makes
  several sequential S3 requests per Kafka fetch, so every fetch stalled ~200 ms and the projector
  caught up at ~15k points/s. Turning Nagle off is the standard fix (``StreamRequestHandler`` has a
  switch for it); see docs/decisions/0004-embedded-broker-durability.md.
* localbucket answers ListObjectsV2 by walking and sorting every key of the bucket, whatever the
  prefix. tansu lists a partition's ``records/`` prefix on fetches, and the bucket holds one object per
  produced batch, so each listing cost grew with the whole log: with 10^4 runs the S3 server saturated
  a core and ingest slowed quadratically (bench/growth.py). Keys under a prefix all lie in the
  directory the prefix names, so ``_list_entries`` walks only that directory (same answer).

    python -m modelog._s3server DATA_ROOT --host 127.0.0.1 --port PORT
"""

from __future__ import annotations

import os
from pathlib import Path

import localbucket


def _keys_under(bucket_dir: Path, prefix: str) -> list[tuple[str, Path]]:
    """(key, path) of every object whose key starts with ``prefix``, sorted as S3 does (UTF-8 bytes)."""
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
    return out


def _list_entries(self, bucket_dir: Path, prefix: str, delimiter: str, marker: str, marker_is_prefix: bool,
                  max_keys: int) -> tuple[list[tuple[str, Path]], list[str], bool, str]:
    """localbucket's ``S3Handler._list_entries`` (one page of keys and common prefixes after the
    marker), reading only the directory the prefix names."""
    contents: list[tuple[str, Path]] = []
    common_prefixes: list[str] = []
    last_entry = ""
    truncated = False
    for key, path in _keys_under(bucket_dir, prefix):
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


def main() -> None:
    localbucket.S3Handler.disable_nagle_algorithm = True
    localbucket.S3Handler._list_entries = _list_entries
    localbucket.main()


if __name__ == "__main__":
    main()

"""The embedded S3 server's prefix-scoped listing gives localbucket's answer, page by page."""

from __future__ import annotations

import itertools

import localbucket

from modelog._s3server import _list_entries

KEYS = ["a.txt", "b/1", "b/2", "b/c/3", "b/c/4", "b/cc", "bb/5", "é/6", "records/00000000000000000000.batch",
        "records/00000000000000000004.batch", "records/00000000000000000010.batch", "z"]


def test_listings_equal_localbuckets_for_every_prefix_delimiter_marker_and_page(tmp_path):
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
    assert _list_entries(None, tmp_path, "records/", "", "", False, 1000)[0][0][0] == "records/00000000000000000000.batch"

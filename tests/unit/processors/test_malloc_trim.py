"""The projector hands freed heap pages back to the system once a second (processors/app.malloc_trim)."""

from __future__ import annotations

import ctypes
import platform

import pytest

from modelog.processors.app import malloc_trim


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_trimming_returns_the_pages_of_freed_chunks_that_free_kept():
    trim = malloc_trim()
    assert trim is not None
    libc = ctypes.CDLL(None)
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    chunks = [libc.malloc(64 * 1024) for _ in range(3200)]  # ~200 MiB below the mmap threshold: the heap
    for p in chunks:
        ctypes.memset(p, 1, 64 * 1024)  # resident
    for p in chunks[:-1]:  # the last one stays: the heap's top cannot shrink, so free() keeps the rest
        libc.free(p)
    before = _rss_mib()
    trim(0)
    after = _rss_mib()
    libc.free(chunks[-1])
    assert before - after > 100, (before, after)

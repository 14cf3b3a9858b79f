"""Waiting for a condition instead of sleeping: ``wait_until(predicate, timeout, what)``."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float, what: str | Callable[[], str],
               interval: float = 0.05) -> T:
    """Call ``predicate`` until it returns something truthy and return that; raise TimeoutError naming
    ``what`` (a text, or a callable giving one at the time of the timeout, e.g. with the last rows seen)
    and the predicate's last value if ``timeout`` seconds pass first. The predicate is called at least
    once after the deadline has passed, so a slow machine does not lose the last look."""
    deadline = time.monotonic() + timeout
    while True:
        expired = time.monotonic() >= deadline
        value = predicate()
        if value:
            return value
        if expired:
            text = what() if callable(what) else what
            raise TimeoutError(f"timed out after {timeout:g}s waiting until {text}; last value: {value!r}")
        time.sleep(interval)

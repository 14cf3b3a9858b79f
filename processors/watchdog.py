"""One thread that calls a function when a deadline passes: the SQL endpoint's statement timeout.

A ``threading.Timer`` per statement starts (and waits for) a thread each time, about a millisecond, which
was a good part of a bare query's round trip; here arming and disarming a deadline is a heap push and a set
update under one lock.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

__all__ = ["Watchdog", "WATCHDOG"]


class Watchdog:
    """Deadlines served by one daemon thread, started on first use."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Callable[[], object]]] = []
        self._live: set[int] = set()
        self._tokens = itertools.count()
        self._thread: threading.Thread | None = None

    def arm(self, seconds: float, fn: Callable[[], object]) -> int:
        """Call ``fn`` in ``seconds`` unless ``disarm``-ed first; returns the token for ``disarm``."""
        with self._cond:
            token = next(self._tokens)
            heapq.heappush(self._heap, (self._clock() + seconds, token, fn))
            self._live.add(token)
            if len(self._heap) > 2 * len(self._live) + 1024:  # disarmed entries wait for their deadline: sweep
                self._heap = [e for e in self._heap if e[1] in self._live]
                heapq.heapify(self._heap)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="modelog-watchdog", daemon=True)
                self._thread.start()
            if self._heap[0][1] == token:  # the new deadline is the nearest: wake the thread to wait less
                self._cond.notify()
            return token

    def disarm(self, token: int) -> bool:
        """True if the deadline had not passed yet (``fn`` will not be called)."""
        with self._cond:
            if token in self._live:
                self._live.discard(token)
                return True
            return False

    def pending(self) -> int:
        with self._cond:
            return len(self._live)

    def _due(self) -> list[Callable[[], object]]:
        """Wait until a live deadline passes; pop and return every passed one (caller calls them unlocked)."""
        with self._cond:
            while True:
                now = self._clock()
                due = []
                while self._heap and self._heap[0][0] <= now:
                    _, token, fn = heapq.heappop(self._heap)
                    if token in self._live:
                        self._live.discard(token)
                        due.append(fn)
                if due:
                    return due
                self._cond.wait(self._heap[0][0] - now if self._heap else None)

    def _run(self) -> None:
        while True:
            for fn in self._due():
                try:
                    fn()
                except Exception as exc:  # noqa: BLE001 -- one failed callback must not end the thread
                    log.warning("watchdog: a deadline's callback failed (%s: %s)", type(exc).__name__, exc)


WATCHDOG = Watchdog()

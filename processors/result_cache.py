"""Answers of the SQL endpoint kept while the views do not change (decision 0028).

A statement's answer is a function of the committed views, the reader's scope, the statement and its
parameters, unless the statement asks for something else that moves: the clock (``now()``,
``current_timestamp``), chance (``random()``, ``USING SAMPLE``), the session or the engine's own state
(``current_setting``, ``duckdb_memory()``). A dashboard, the web UI or a notebook re-asks the same statements
between two of the projector's commits; planning a three-way join costs DuckDB several milliseconds on every
request (docs/benchmarks.md), so the serialized answer is kept, keyed by the store's *generation* (moved on
after every commit) and dropped as soon as the generation moves.

:func:`cacheable` is the pure rule; :func:`unstable_names` reads the names it refuses off a connection;
:class:`ResultCache` holds the answers (LRU, bounded in bytes).
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Hashable

__all__ = ["ResultCache", "cacheable", "unstable_names", "UNSTABLE_WORDS", "DETERMINISTIC_TABLE_FUNCTIONS"]

# keywords that read the clock or draw at random without looking like a call, and prefixes of the names of
# functions reading the session's or the engine's state
UNSTABLE_WORDS = frozenset({"current_timestamp", "current_time", "current_date", "localtime", "localtimestamp",
                            "current_user", "current_role", "current_schema", "current_catalog", "session_user",
                            "sample", "tablesample"})
_UNSTABLE_PREFIXES = ("current_", "duckdb_", "pragma_", "pg_", "get_current")
_FIRST_WORDS = frozenset({"select", "with", "from", "values"})
_WORD = re.compile(r"[a-z_][a-z0-9_$]*")
_CALL = re.compile(r"([a-z_][a-z0-9_$]*)\s*\(")
_LEADING = re.compile(r"(?:\s|--[^\n]*\n?|/\*.*?\*/|\()*", re.S)


def cacheable(query: str, functions: frozenset[str] = frozenset(), relations: frozenset[str] = frozenset()) -> bool:
    """True when ``query`` is a query statement (SELECT, WITH, FROM, VALUES) that asks for nothing that moves
    without a commit: it calls none of ``functions`` and no function whose name starts with ``current_``,
    ``duckdb_``, ``pragma_``, ``pg_`` or ``get_current``; it names none of ``relations`` (views that do); it
    uses none of :data:`UNSTABLE_WORDS`. Identifiers are matched also inside literals and comments, quotes
    ignored: a false "no" only costs a re-run."""
    text = query.lower()
    first = _WORD.match(text, _LEADING.match(text).end())
    if first is None or first.group() not in _FIRST_WORDS:
        return False  # EXPLAIN (ANALYZE: timings), SHOW, DESCRIBE, PRAGMA: answered afresh
    text = text.replace('"', "")
    for name in set(_CALL.findall(text)):
        if name in functions or name.startswith(_UNSTABLE_PREFIXES):
            return False
    words = set(_WORD.findall(text))
    return not (words & UNSTABLE_WORDS or words & relations)


# table functions whose rows follow from their arguments alone (any other reads state: files, the catalog)
DETERMINISTIC_TABLE_FUNCTIONS = frozenset({"range", "generate_series", "unnest", "generate_subscripts", "repeat",
                                           "repeat_row", "json_each", "json_tree", "query", "query_table"})


# functions DuckDB marks consistent within one query only because an overload depends on the session's time
# zone (TIMESTAMPTZ arithmetic): the views' zone is fixed (UTC, SET GLOBAL by the store; the sandbox refuses
# SET), so their answers move only with the data
CALENDAR = frozenset({"+", "-", "date_part", "datepart", "date_trunc", "datetrunc", "date_diff", "datediff",
                      "date_sub", "datesub", "strftime", "time_bucket", "range", "generate_series", "year", "month",
                      "day", "hour", "minute", "second", "millisecond", "microsecond", "week", "weekday",
                      "weekofyear", "yearweek", "dayname", "monthname", "dayofmonth", "dayofweek", "dayofyear",
                      "quarter", "decade", "century", "millennium", "era", "isodow", "isoyear", "julian", "last_day",
                      "make_timestamptz", "timezone", "timezone_hour", "timezone_minute"})


def unstable_names(con) -> tuple[frozenset[str], frozenset[str]]:
    """(functions, relations) a cacheable statement must not call or name, read off ``con``: every function
    DuckDB does not hold consistent across queries (volatile; consistent within one query only, e.g. the
    clock), every pragma and table function but those of :data:`DETERMINISTIC_TABLE_FUNCTIONS`, and every
    macro or view whose definition uses one of those, transitively (``ago(i)`` is ``current_timestamp - i``;
    a view over ``now()`` moves with the clock although its name does not say so)."""
    functions: set[str] = set()
    relations: set[str] = set()
    macros: list[tuple[str, str]] = []
    for name, kind, stability, body in con.execute(
            "SELECT function_name, function_type, stability, macro_definition FROM duckdb_functions()").fetchall():
        name = name.lower()
        if kind in ("macro", "table_macro"):
            macros.append((name, "SELECT " + (body or "").lower()))
        elif kind == "pragma" or (kind == "table" and name not in DETERMINISTIC_TABLE_FUNCTIONS):
            functions.add(name)
        elif kind != "table" and stability != "CONSISTENT" and not (stability == "CONSISTENT_WITHIN_QUERY"
                                                                   and name in CALENDAR):
            functions.add(name)
    views = [(name.lower(), "SELECT " + (sql or "").lower().partition(" as ")[2]) for name, sql in con.execute(
        "SELECT view_name, sql FROM duckdb_views() WHERE NOT internal").fetchall()]
    changed = True
    while changed:  # a view over a view over now(): until nothing is added
        changed = False
        for kind, entries in ((functions, macros), (relations, views)):
            for name, sql in entries:
                if name not in kind and not cacheable(sql, frozenset(functions), frozenset(relations)):
                    kind.add(name)
                    changed = True
    return frozenset(functions), frozenset(relations)


class ResultCache:
    """Serialized answers by (generation, key), at most ``max_bytes`` in all, least recently used dropped
    first; one answer larger than a quarter of it is not kept. Every answer of an older generation is dropped
    when a newer one is seen: only the latest committed views are ever answered from here.

    ``get(g, k)`` answers only what ``put(g, k, ...)`` stored under the same generation; a caller must read
    the generation *before* it runs the statement, so that what it stores is at least as new as the
    generation says (a commit in between makes the answer newer, never older)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.generation = -1
        self.size = 0
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[Hashable, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def _move_to(self, generation: int) -> bool:
        """Drop everything older than ``generation``; False when ``generation`` itself is already older."""
        if generation < self.generation:
            return False
        if generation > self.generation:
            self._entries.clear()
            self.size = 0
            self.generation = generation
        return True

    def advance(self, generation: int) -> None:
        """The views changed: drop every answer older than ``generation`` now (not at the next request: an
        erasure's plaintext does not stay in memory)."""
        with self._lock:
            self._move_to(generation)

    def get(self, generation: int, key: Hashable) -> bytes | None:
        with self._lock:
            hit = self._entries.get(key) if self._move_to(generation) else None
            if hit is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return hit

    def put(self, generation: int, key: Hashable, value: bytes) -> None:
        if len(value) * 4 > self.max_bytes:
            return
        with self._lock:
            if not self._move_to(generation):
                return  # the views moved on while the statement ran: its answer is not the latest
            old = self._entries.pop(key, None)
            if old is not None:
                self.size -= len(old)
            self._entries[key] = value
            self.size += len(value)
            while self.size > self.max_bytes:
                _, dropped = self._entries.popitem(last=False)
                self.size -= len(dropped)

    def __len__(self) -> int:
        return len(self._entries)

"""What a user's SQL may reach: the views and nothing else on the machine.

``modelog sql``, ``modelog.sql``, the processor's ``/sql`` endpoint and the HTTP API's ``/api/v1/sql``
all run user SQL through :func:`check_query`. One read-only statement is allowed (SELECT, WITH,
DESCRIBE, SHOW, SUMMARIZE, EXPLAIN of those, and the ``show_tables``/``table_info`` pragmas), and
DuckDB's own parse tree (``json_serialize_sql``) is walked so that it reads only tables and views by
name and only the table functions listed in :data:`TABLE_FUNCTIONS`. Refused, each with a clear
error: ``read_csv``/``read_parquet``/``read_text``/``glob`` and every other file-reading function,
a file path in FROM (``FROM '/etc/passwd'``, DuckDB's replacement scan), ``query()`` (SQL in a
string), COPY, ATTACH, INSTALL/LOAD, SET and every other statement that is not a read.

Why a parse-tree allowlist rather than ``SET enable_external_access = false``: that setting is
global to a DuckDB instance, and the processor's readers share their instance with the writer,
which must write the views file and publish to the lake.
"""

from __future__ import annotations

import json
import re

import duckdb

from modelog.wire.errors import QueryError

STATEMENTS = {"SELECT", "EXPLAIN", "PRAGMA"}
PRAGMAS = {"show_tables", "show_tables_expanded", "table_info", "show"}
TABLE_FUNCTIONS = frozenset({
    # modelog's own table macros over the views
    "lineage_upstream", "lineage_downstream",
    # generators and catalog introspection: no file, no network, no SQL-in-a-string
    "range", "generate_series", "unnest", "duckdb_views", "duckdb_tables", "duckdb_columns", "duckdb_schemas",
    "duckdb_types", "duckdb_functions", "duckdb_constraints", "duckdb_indexes", "duckdb_keywords",
    "duckdb_databases", "pragma_table_info", "pragma_show_tables", "summary", "show", "show_tables",
    "show_databases", "describe",
})
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PRAGMA = re.compile(r"^\s*PRAGMA\s+([A-Za-z_]+)", re.IGNORECASE)
_EXPLAIN = re.compile(r"^\s*EXPLAIN(\s+ANALY[SZ]E)?\s+", re.IGNORECASE)


_ACCEPTED: dict[str, None] = {}  # texts already checked and accepted (the check reads the text alone)
MAX_ACCEPTED = 1024


MAX_QUERY_BYTES = 256 * 1024  # of SQL text: larger is a mistake or an attack on the parser, never a query


def check_size(query: str | bytes) -> None:
    """Raise QueryError if the statement's text is longer than ``MAX_QUERY_BYTES``."""
    n = len(query.encode() if isinstance(query, str) else query)
    if n > MAX_QUERY_BYTES:
        raise QueryError(f"query: must be at most {MAX_QUERY_BYTES} bytes of SQL (got {n})")


def check_query(con: duckdb.DuckDBPyConnection, query: str, scoped: bool = False) -> None:
    """Raise QueryError unless ``query`` is one read-only statement that reads only views and tables.

    ``scoped``: the reader sees the views through its scope's shadows (processors/scope.py), so a name
    qualified by a catalog or schema (``main.runs``, ``views.main.log_metrics``), which would reach past
    them to the unfiltered tables, is refused too.

    The verdict depends on the text alone (its parse tree, not the catalog), so accepted texts are
    remembered: the server's statements recur with other bound parameters, and parsing one costs ~2 ms."""
    key = ("scoped:" if scoped else "") + query
    if key in _ACCEPTED:
        return
    check_size(query)
    _check(con, query, scoped)
    if len(_ACCEPTED) >= MAX_ACCEPTED:
        _ACCEPTED.clear()
    _ACCEPTED[key] = None


def _check(con: duckdb.DuckDBPyConnection, query: str, scoped: bool = False) -> None:
    try:
        statements = con.extract_statements(query)
    except duckdb.Error as exc:
        raise QueryError(str(exc)) from exc
    if len(statements) != 1:
        raise QueryError(f"expected exactly one SQL statement, got {len(statements)}")
    kind = statements[0].type.name
    if kind not in STATEMENTS:
        raise QueryError(f"only read-only queries are allowed here (SELECT, WITH, EXPLAIN, DESCRIBE, SHOW); got {kind}")
    if kind == "PRAGMA":
        m = _PRAGMA.match(query)
        name = m.group(1).lower() if m else "?"
        if name not in PRAGMAS:
            raise QueryError(f"PRAGMA {name}: not allowed here (allowed: {', '.join(sorted(PRAGMAS))})")
        return
    if kind == "EXPLAIN":
        inner = _EXPLAIN.sub("", query, count=1)
        if inner == query:
            raise QueryError("EXPLAIN: could not read the statement it explains")
        return _check(con, inner, scoped)
    _check_tree(con, query, scoped)


def _check_tree(con: duckdb.DuckDBPyConnection, query: str, scoped: bool = False) -> None:
    try:
        tree = json.loads(con.execute("SELECT json_serialize_sql(?)", [query]).fetchall()[0][0])
    except (duckdb.Error, ValueError, TypeError) as exc:
        raise QueryError(f"could not check the query: {exc}") from exc
    if tree.get("error"):
        raise QueryError(f"this form of query is not allowed here ({tree.get('error_message', 'unsupported')})")
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            kind = node.get("type")
            if kind == "TABLE_FUNCTION":
                fn = node.get("function") or {}
                name = str(fn.get("function_name") or "")
                if name.lower() not in TABLE_FUNCTIONS:
                    raise QueryError(f"table function {name}(): not allowed here; queries read the views "
                                     "(files, URLs and SQL strings are out of reach)")
            elif kind == "BASE_TABLE":
                name = str(node.get("table_name") or "")
                if not _NAME.match(name):
                    raise QueryError(f"FROM {name!r}: not a view or table name; queries read the views, "
                                     "not files")
                catalog = str(node.get("catalog_name") or "")
                if catalog and not _NAME.match(catalog):
                    raise QueryError(f"catalog {catalog!r}: not allowed here")
                schema = str(node.get("schema_name") or "")
                if scoped and (catalog or schema):
                    raise QueryError(f"FROM {'.'.join(p for p in (catalog, schema, name) if p)}: qualified names are "
                                     "not allowed for a scoped reader; name the view alone (FROM "
                                     f"{name})")
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)

"""The run filter language of ``GET /api/v1/runs``: parse, compile to parameterised DuckDB SQL, page by keyset.

    runs_query(experiment, filter, order_by, limit, page_token) -> (sql, params)   the whole query
    compile_filter(text) -> (sql, params)          a boolean expression over a ``runs`` row aliased ``r``
    compile_order(text)  -> (sql, params, keys)    an ORDER BY list over ``runs r``; keys drive paging
    next_page_token(row, order_by)                 the token of the page after a row of runs_query
    encode_page_token(values, order_by) / decode_page_token(token, order_by)
    parse_filter(text) -> Node                     the syntax tree (for tools and tests)

The language (docs/api-filter.md has the grammar)::

    metrics.auc > 0.8 AND (params.model IN ('gbt', 'rf') OR tags.team = 'risk') AND NOT status = 'FAILED'
    params."lr.decay" <= 1e-3 OR metrics.`val-loss` < 0.2 OR name LIKE 'base%' OR tags.owner IS NULL

Nothing the user typed is ever pasted into SQL text: keys and values are bound parameters (``?``); the
text is assembled only from the fixed fragments in this module. A missing param, metric or tag is SQL
NULL, so a comparison with it is unknown and the run is not selected -- by ``NOT (...)`` either
(three-valued logic, like SQL); ``IS NULL`` finds runs without the key. A NaN latest metric counts as
missing. Pure: no DuckDB import; the caller executes the SQL against the views.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Mapping, Sequence

from modelog.wire.errors import ValidationError

MAX_FILTER_CHARS = 4_000
MAX_DEPTH = 50
MAX_COMPARISONS = 200
MAX_SORT_KEYS = 10
MAX_LIMIT = 1_000
MAX_TOKEN_CHARS = 65_536
DEFAULT_ORDER = "start_time DESC, run_id"

#: the runs view's columns, in order: what ``runs_query`` selects before the sort columns
RUN_COLUMNS = ("run_id", "experiment", "name", "status", "start_time", "end_time", "duration_s", "actor", "error",
               "python_version", "platform", "hostname", "cpu_count", "memory_bytes", "gpus", "git_commit",
               "git_branch", "git_dirty", "command", "package_count")
#: the prefix of the sort-value columns ``runs_query`` appends (``_sort_0``, ``_sort_1`` ...)
SORT_PREFIX = "_sort_"


class FilterError(ValidationError):
    """A filter, order_by, page_token or limit broke a rule. ``position`` is the character offset (0-based)
    of the problem in the text, or None when the problem is not at one place."""

    def __init__(self, field: str, value: Any, problem: str, position: int | None = None,
                 rule: str | None = None) -> None:
        where = "" if position is None else f" at position {position}"
        message = f"{field}: {problem}{where}" + (f"; {rule}" if rule else "")
        super().__init__(field, value, message)
        self.rule = rule or problem
        self.position = position
        self.problem = problem
        self.args = (message,)


# -- the syntax tree ----------------------------------------------------------------------------

# field kinds: param (text, compared as a number against a number), metric (number), tag (text),
# text / number / time (run attributes)
ATTRIBUTES = {"run_id": "text", "experiment": "text", "name": "text", "status": "text", "actor": "text",
              "start_time": "time", "end_time": "time", "duration_s": "number"}
_PREFIXES = {"params": "param", "param": "param", "metrics": "metric", "metric": "metric",
             "tags": "tag", "tag": "tag", "attributes": "attribute", "attribute": "attribute", "attr": "attribute"}


@dataclass(frozen=True)
class Field:
    kind: str  # param | metric | tag | text | number | time
    key: str   # the param/metric/tag key, or the attribute's name
    position: int

    def __str__(self) -> str:
        return {"param": "params.", "metric": "metrics.", "tag": "tags."}.get(self.kind, "") + self.key


@dataclass(frozen=True)
class Compare:
    field: Field
    op: str  # = != < <= > >=
    value: str | float
    position: int


@dataclass(frozen=True)
class In:
    field: Field
    values: tuple[str | float, ...]
    negated: bool
    position: int


@dataclass(frozen=True)
class Like:
    field: Field
    pattern: str
    negated: bool
    insensitive: bool
    position: int


@dataclass(frozen=True)
class IsNull:
    field: Field
    negated: bool


@dataclass(frozen=True)
class Not:
    operand: "Node"


@dataclass(frozen=True)
class And:
    operands: tuple["Node", ...]


@dataclass(frozen=True)
class Or:
    operands: tuple["Node", ...]


Node = Compare | In | Like | IsNull | Not | And | Or


# -- tokens -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Token:
    kind: str  # field word string number op ( ) , end
    value: Any
    position: int
    text: str  # as written, for messages


_KEYWORDS = {"AND", "OR", "NOT", "IN", "LIKE", "ILIKE", "IS", "NULL", "ASC", "DESC"}
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BARE_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.]*")
_NUMBER = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_GOOD_PATTERN = re.compile(r"(?:[^\\]|\\[%_\\])*", re.S)  # every \ of a LIKE pattern escapes % _ or \
_OPS = ("<=", ">=", "<>", "!=", "==", "=", "<", ">")
_QUOTES = {"'": "string", '"': "string or quoted key", "`": "quoted key"}


def _shown(ch: str) -> str:
    return repr(ch) if ch.isprintable() and ch not in "'\\" else ascii(ch)


def _quoted(text: str, i: int, field: str) -> tuple[str, int]:
    """The quoted text starting at text[i] (a quote character); a doubled quote stands for one."""
    q = text[i]
    out = []
    j = i + 1
    while True:
        k = text.find(q, j)
        if k < 0:
            raise FilterError(field, text, f"unterminated {_QUOTES[q]} starting with {q}", i,
                              f"close it with {q} (write {q}{q} for a {q} inside)")
        out.append(text[j:k])
        if text.startswith(q + q, k):
            out.append(q)
            j = k + 2
            continue
        return "".join(out), k + 1


def tokenize(text: str, field: str = "filter") -> list[Token]:
    """Split ``text`` into tokens; ``params.x``, ``metrics."a b"`` and attribute names are one field token."""
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in " \t\r\n":
            i += 1
            continue
        start = i
        if ch in "(),":
            tokens.append(Token(ch, ch, i, ch))
            i += 1
        elif ch in "<>=!":
            op = next((o for o in _OPS if text.startswith(o, i)), None)
            if op is None:
                raise FilterError(field, text, f"unexpected {_shown(ch)}", i, "operators are = != <> < <= > >=")
            tokens.append(Token("op", {"<>": "!=", "==": "="}.get(op, op), i, op))
            i += len(op)
        elif ch in "'\"":
            value, i = _quoted(text, i, field)
            tokens.append(Token("string", value, start, text[start:i]))
        elif ch == "`":
            raise FilterError(field, text, "unexpected `", i, "backticks quote a key after params., metrics. or tags.")
        elif (m := _NUMBER.match(text, i)) and (ch != "-" or len(m.group()) > 1):
            if (after := m.end()) < n and (text[after].isalnum() or text[after] in "_."):
                raise FilterError(field, text, f"malformed number {text[i:after + 1]!r}", i,
                                  "numbers look like 3, -0.5, 1e-3")
            value = float(m.group())
            if not math.isfinite(value):
                raise FilterError(field, text, f"number {m.group()} out of range", i, "numbers must be finite")
            tokens.append(Token("number", value, i, m.group()))
            i = m.end()
        elif m := _WORD.match(text, i):
            word = m.group()
            i = m.end()
            if i < n and text[i] == ".":
                prefix = _PREFIXES.get(word.lower())
                if prefix is None:
                    raise FilterError(field, text, f"unknown prefix {word!r}", start,
                                      "keys are params.<key>, metrics.<key> or tags.<key>")
                i += 1
                if i < n and text[i] in "`\"'":
                    key, i = _quoted(text, i, field)
                    if not key:
                        raise FilterError(field, text, "empty key", start, "a quoted key needs at least one character")
                elif km := _BARE_KEY.match(text, i):
                    key, i = km.group(), km.end()
                else:
                    raise FilterError(field, text, f"expected a key after {word}.", i,
                                      "quote keys with other characters: params.\"lr.decay\" or metrics.`val-loss`")
                if prefix == "attribute":
                    if key not in ATTRIBUTES:
                        raise FilterError(field, text, f"unknown attribute {key!r}", start,
                                          "attributes are " + ", ".join(ATTRIBUTES))
                    tokens.append(Token("field", Field(ATTRIBUTES[key], key, start), start, text[start:i]))
                else:
                    tokens.append(Token("field", Field(prefix, key, start), start, text[start:i]))
            elif word.upper() in _KEYWORDS:
                tokens.append(Token("word", word.upper(), start, word))
            elif word in ATTRIBUTES:
                tokens.append(Token("field", Field(ATTRIBUTES[word], word, start), start, word))
            else:
                raise FilterError(field, text, f"unknown name {word!r}", start,
                                  "expected params.<key>, metrics.<key>, tags.<key> or one of " + ", ".join(ATTRIBUTES))
        else:
            raise FilterError(field, text, f"unexpected character {_shown(ch)}", i,
                              "outside quotes a filter holds names, numbers, operators, parentheses and commas")
    tokens.append(Token("end", None, n, "end of filter"))
    return tokens


# -- the parser ---------------------------------------------------------------------------------

class _Parser:
    """Recursive descent: or_expr := and_expr {OR and_expr}; and_expr := not_expr {AND not_expr};
    not_expr := NOT not_expr | primary; primary := '(' or_expr ')' | predicate."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0
        self.depth = 0
        self.comparisons = 0

    def fail(self, token: Token, expected: str) -> FilterError:
        what = "end of filter" if token.kind == "end" else repr(token.text)
        return FilterError("filter", self.text, f"unexpected {what}", token.position, f"expected {expected}")

    def peek(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        t = self.tokens[self.i]
        self.i += 1
        return t

    def word(self, *words: str) -> bool:
        t = self.peek()
        if t.kind == "word" and t.value in words:
            self.i += 1
            return True
        return False

    def nest(self, token: Token) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise FilterError("filter", self.text, "nested too deeply", token.position,
                              f"at most {MAX_DEPTH} levels of parentheses and NOT")

    def parse(self) -> Node:
        node = self.or_expr()
        t = self.peek()
        if t.kind == ")":
            raise FilterError("filter", self.text, "unexpected ')'", t.position, "it closes no '('")
        if t.kind != "end":
            raise self.fail(t, "AND, OR or the end of the filter")
        return node

    def or_expr(self) -> Node:
        items = [self.and_expr()]
        while self.word("OR"):
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def and_expr(self) -> Node:
        items = [self.not_expr()]
        while self.word("AND"):
            items.append(self.not_expr())
        return items[0] if len(items) == 1 else And(tuple(items))

    def not_expr(self) -> Node:
        t = self.peek()
        if self.word("NOT"):
            self.nest(t)
            node = Not(self.not_expr())
            self.depth -= 1
            return node
        return self.primary()

    def primary(self) -> Node:
        t = self.take()
        if t.kind == "(":
            self.nest(t)
            node = self.or_expr()
            close = self.take()
            if close.kind != ")":
                raise self.fail(close, f"')' to close the '(' at position {t.position}")
            self.depth -= 1
            return node
        if t.kind != "field":
            raise self.fail(t, "a condition such as metrics.auc > 0.8, or '(' or NOT")
        self.comparisons += 1
        if self.comparisons > MAX_COMPARISONS:
            raise FilterError("filter", self.text, "too many conditions", t.position,
                              f"at most {MAX_COMPARISONS} comparisons")
        return self.predicate(t.value)

    def literal(self) -> str | float:
        t = self.take()
        if t.kind not in ("string", "number"):
            raise self.fail(t, "a value: a quoted string or a number")
        return t.value

    def predicate(self, field: Field) -> Node:
        t = self.take()
        if t.kind == "op":
            return check(Compare(field, t.value, self.literal(), t.position), self.text)
        if t.kind == "word" and t.value == "IS":
            negated = self.word("NOT")
            if not self.word("NULL"):
                raise self.fail(self.peek(), "NULL after IS" + (" NOT" if negated else ""))
            return IsNull(field, negated)
        negated = False
        if t.kind == "word" and t.value == "NOT":
            negated, t = True, self.take()
        if t.kind == "word" and t.value in ("LIKE", "ILIKE"):
            p = self.peek()
            pattern = self.literal()
            if not isinstance(pattern, str):
                raise self.fail(p, f"a quoted pattern after {t.value}, such as 'base%'")
            return check(Like(field, pattern, negated, t.value == "ILIKE", t.position), self.text)
        if t.kind == "word" and t.value == "IN":
            open_ = self.take()
            if open_.kind != "(":
                raise self.fail(open_, "'(' after IN")
            values = [self.literal()]
            while (sep := self.take()).kind == ",":
                values.append(self.literal())
            if sep.kind != ")":
                raise self.fail(sep, "',' or ')' in the IN list")
            self.comparisons += len(values) - 1
            if self.comparisons > MAX_COMPARISONS:
                raise FilterError("filter", self.text, "too many conditions", open_.position,
                                  f"at most {MAX_COMPARISONS} comparisons (each IN value counts)")
            return check(In(field, tuple(values), negated, t.position), self.text)
        raise self.fail(t, f"an operator after {field}: = != < <= > >= LIKE ILIKE IN IS"
                        if not negated else "LIKE, ILIKE or IN after NOT")


def check(node: Compare | In | Like, text: str) -> Compare | In | Like:
    """Type rules: metrics and durations compare with numbers, tags and text attributes with strings,
    times with ISO 8601 strings; params with either (numbers numerically, strings as text)."""
    f = node.field
    values = [node.value] if isinstance(node, Compare) else list(node.values) if isinstance(node, In) else []
    if isinstance(node, Like):
        if f.kind in ("metric", "number", "time"):
            raise FilterError("filter", text, f"LIKE on {f}", node.position, f"{f} is not text; LIKE needs text")
        if not _GOOD_PATTERN.fullmatch(node.pattern):
            raise FilterError("filter", text, "LIKE pattern with a lone \\", node.position,
                              "in a pattern \\ escapes %, _ or \\ (write \\\\ for a backslash)")
        return node
    numbers = [isinstance(v, float) for v in values]
    if f.kind in ("metric", "number") and not all(numbers):
        raise FilterError("filter", text, f"{f} compared with a string", node.position,
                          f"{f} is a number; compare it with a number such as 0.8")
    if f.kind in ("tag", "text") and any(numbers):
        raise FilterError("filter", text, f"{f} compared with a number", node.position,
                          f"{f} is text; quote the value, e.g. '5'")
    if f.kind == "param" and 0 < sum(numbers) < len(numbers):
        raise FilterError("filter", text, f"IN list for {f} mixes numbers and strings", node.position,
                          "use all numbers (compared numerically) or all strings (compared as text)")
    if f.kind == "time":
        for v in values:
            if not isinstance(v, str):
                raise FilterError("filter", text, f"{f} compared with a number", node.position,
                                  f"{f} compares with an ISO 8601 time such as '2026-01-31T12:00:00Z'")
            _timestamp(v, text, node.position)
    return node


def _timestamp(value: str, text: str, position: int) -> str:
    """An ISO 8601 time as naive UTC text DuckDB casts to TIMESTAMP (offsets are converted to UTC)."""
    try:
        t = datetime.fromisoformat(value)
        if t.tzinfo is not None:
            t = t.astimezone(timezone.utc).replace(tzinfo=None)
    except (ValueError, OverflowError):
        raise FilterError("filter", text, f"{value!r} is not an ISO 8601 time", position,
                          "write times like '2026-01-31', '2026-01-31T12:00:00' or '2026-01-31T12:00:00+02:00' "
                          "(UTC when no offset; years 1..9999)") from None
    return t.isoformat(sep=" ")


def parse_filter(text: str) -> Node | None:
    """The syntax tree of a filter; None for an empty (or all-blank) filter. Raises FilterError."""
    if not isinstance(text, str):
        raise FilterError("filter", text, "not text", None, "a filter is a string")
    if len(text) > MAX_FILTER_CHARS:
        raise FilterError("filter", text, f"{len(text)} characters", None,
                          f"a filter has at most {MAX_FILTER_CHARS} characters")
    if not text.strip():
        return None
    return _Parser(text).parse()


# -- the compiler -------------------------------------------------------------------------------
# Every SQL fragment is one of these constants; user input only ever reaches ``params``.

_SUB = {
    "param": "(SELECT p.value FROM params p WHERE p.run_id = r.run_id AND p.key = ?)",
    "param_number": "(SELECT nullif(TRY_CAST(p.value AS DOUBLE), CAST('NaN' AS DOUBLE)) "
                    "FROM params p WHERE p.run_id = r.run_id AND p.key = ?)",
    "metric": "(SELECT nullif(m.value, CAST('NaN' AS DOUBLE)) FROM latest_metrics m "
              "WHERE m.run_id = r.run_id AND m.key = ?)",
    "tag": "(SELECT t.value FROM tags t WHERE t.run_id = r.run_id AND t.key = ?)",
}
# the same values as joins of the runs (what ``runs_query`` uses: one LEFT JOIN per distinct field, not a
# correlated subquery per mention -- DuckDB plans and runs it faster; (run_id, key) is unique in each view)
_JOIN = {
    "param": "(SELECT run_id, value AS v FROM params WHERE key = ?)",
    "param_number": "(SELECT run_id, nullif(TRY_CAST(value AS DOUBLE), CAST('NaN' AS DOUBLE)) AS v "
                    "FROM params WHERE key = ?)",
    "metric": "(SELECT run_id, nullif(value, CAST('NaN' AS DOUBLE)) AS v FROM latest_metrics WHERE key = ?)",
    "tag": "(SELECT run_id, value AS v FROM tags WHERE key = ?)",
}
_SUB_NAME = {sql: name for name, sql in _SUB.items()}
_COLUMNS = {name: f"r.{name}" for name in ATTRIBUTES}


class _Joins:
    """The per-run values a query reads (a param, metric or tag by key), each one aliased LEFT JOIN."""

    def __init__(self) -> None:
        self.aliases: dict[tuple[str, str], str] = {}

    def column(self, sub: str, key: str) -> str:
        alias = self.aliases.get((sub, key))
        if alias is None:
            alias = self.aliases[(sub, key)] = f"j{len(self.aliases)}"
        return f"{alias}.v"

    def sql(self) -> str:
        return "".join(f" LEFT JOIN {_JOIN[sub]} {alias} ON {alias}.run_id = r.run_id"
                       for (sub, _), alias in self.aliases.items())

    def params(self) -> list[str]:
        return [key for _, key in self.aliases]
_PLACEHOLDER = {"text": "CAST(? AS VARCHAR)", "number": "CAST(? AS DOUBLE)", "time": "CAST(? AS TIMESTAMP)"}
_SQL_OPS = {"=": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


def _operand(field: Field, numeric: bool, joins: _Joins | None = None) -> tuple[str, list[Any], str]:
    """(SQL, params, value type) of a field; params compare numerically when ``numeric``. With ``joins``,
    a param, metric or tag is a column of a join registered there (no params here)."""
    if field.kind == "param":
        sub, vtype = ("param_number", "number") if numeric else ("param", "text")
    elif field.kind in ("metric", "tag"):
        sub, vtype = field.kind, "number" if field.kind == "metric" else "text"
    else:
        return _COLUMNS[field.key], [], field.kind
    if joins is not None:
        return joins.column(sub, field.key), [], vtype
    return _SUB[sub], [field.key], vtype


def _bind(value: str | float, vtype: str) -> Any:
    return _timestamp(value, "", 0) if vtype == "time" else value


def _compile(node: Node, params: list[Any], joins: _Joins | None = None) -> str:
    if isinstance(node, (And, Or)):
        joiner = " AND " if isinstance(node, And) else " OR "
        return "(" + joiner.join(_compile(n, params, joins) for n in node.operands) + ")"
    if isinstance(node, Not):
        return "(NOT " + _compile(node.operand, params, joins) + ")"
    if isinstance(node, IsNull):
        sql, p, _ = _operand(node.field, False, joins)
        params.extend(p)
        return "(" + sql + (" IS NOT NULL)" if node.negated else " IS NULL)")
    if isinstance(node, Compare):
        sql, p, vtype = _operand(node.field, isinstance(node.value, float), joins)
        params.extend(p)
        params.append(_bind(node.value, vtype))
        return "(" + sql + " " + _SQL_OPS[node.op] + " " + _PLACEHOLDER[vtype] + ")"
    if isinstance(node, Like):
        sql, p, _ = _operand(node.field, False, joins)
        params.extend(p)
        params.append(node.pattern)
        op = ("NOT " if node.negated else "") + ("ILIKE" if node.insensitive else "LIKE")
        return "(" + sql + " " + op + " CAST(? AS VARCHAR) ESCAPE '\\')"
    if isinstance(node, In):
        sql, p, vtype = _operand(node.field, isinstance(node.values[0], float), joins)
        params.extend(p)
        params.extend(_bind(v, vtype) for v in node.values)
        marks = ", ".join(_PLACEHOLDER[vtype] for _ in node.values)
        return "(" + sql + (" NOT IN (" if node.negated else " IN (") + marks + "))"
    raise TypeError(f"not a filter node: {node!r}")  # pragma: no cover


def compile_filter(text: str | None, joins: _Joins | None = None) -> tuple[str, list[Any]]:
    """A filter as a DuckDB boolean expression over a ``runs`` row aliased ``r``, with ``?`` placeholders
    and their values. An empty or None filter is ``TRUE``. Raises FilterError. With ``joins`` (runs_query),
    params, metrics and tags are columns of joins registered there instead of subqueries."""
    node = None if text is None else parse_filter(text)
    if node is None:
        return "TRUE", []
    params: list[Any] = []
    return _compile(node, params, joins), params


# -- order_by -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class SortKey:
    """One sort column: ``sql`` (over ``runs r``) with ``params``; ``vtype`` text | number | time."""
    label: str
    sql: str
    params: tuple[Any, ...]
    vtype: str
    descending: bool


def _sort_keys(order_by: str | None) -> list[SortKey]:
    if order_by is not None and not isinstance(order_by, str):
        raise FilterError("order_by", order_by, "not text", None, "order_by is a string")
    text = DEFAULT_ORDER if order_by is None or not order_by.strip() else order_by
    if len(text) > MAX_FILTER_CHARS:
        raise FilterError("order_by", text, f"{len(text)} characters", None,
                          f"order_by has at most {MAX_FILTER_CHARS} characters")
    tokens = tokenize(text, "order_by")
    keys: list[SortKey] = []
    i = fields = 0

    def fail(t: Token, expected: str) -> FilterError:
        what = "end of order_by" if t.kind == "end" else repr(t.text)
        return FilterError("order_by", text, f"unexpected {what}", t.position, f"expected {expected}")

    while True:
        t = tokens[i]
        if t.kind != "field":
            raise fail(t, "a sort key: params.<key>, metrics.<key>, tags.<key> or one of " + ", ".join(ATTRIBUTES))
        f: Field = t.value
        i += 1
        fields += 1
        if fields > MAX_SORT_KEYS:
            raise FilterError("order_by", text, "too many sort keys", t.position, f"at most {MAX_SORT_KEYS}")
        descending = False
        if tokens[i].kind == "word" and tokens[i].value in ("ASC", "DESC"):
            descending = tokens[i].value == "DESC"
            i += 1
        label = f"{f} {'DESC' if descending else 'ASC'}"
        if f.kind == "param":  # numbers numerically first, then other text as text
            keys.append(SortKey(label, _SUB["param_number"], (f.key,), "number", descending))
            keys.append(SortKey(label, _SUB["param"], (f.key,), "text", descending))
        elif f.kind in ("metric", "tag"):
            keys.append(SortKey(label, _SUB[f.kind], (f.key,), "number" if f.kind == "metric" else "text",
                                descending))
        else:
            keys.append(SortKey(label, _COLUMNS[f.key], (), f.kind, descending))
        t = tokens[i]
        i += 1
        if t.kind == "end":
            break
        if t.kind != ",":
            raise fail(t, "ASC, DESC, ',' or the end of order_by")
    if not any(k.sql == "r.run_id" for k in keys):  # the tie-breaker: run ids are unique
        keys.append(SortKey("run_id ASC", "r.run_id", (), "text", False))
    return keys


def _direction(key: SortKey) -> str:
    return " DESC NULLS LAST" if key.descending else " ASC NULLS LAST"


def compile_order(order_by: str | None) -> tuple[str, list[Any], list[SortKey]]:
    """An order_by list such as ``"metrics.auc DESC, start_time"`` as an ORDER BY fragment over ``runs r``
    (without the words ORDER BY), its params, and the sort keys. NULLs (missing keys) sort last either way;
    ``run_id`` is appended as the tie-breaker; a param sorts numerically, then non-numbers as text (two keys).
    None or blank means ``start_time DESC, run_id``. Raises FilterError."""
    keys = _sort_keys(order_by)
    params = [p for k in keys for p in k.params]
    return ", ".join(k.sql + _direction(k) for k in keys), params, keys


def _signature(keys: list[SortKey]) -> str:
    return ",".join(k.label + ":" + k.vtype + "|" + "|".join(map(str, k.params)) for k in keys)


# -- page tokens --------------------------------------------------------------------------------

def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if value is None or isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return value
    raise FilterError("page_token", value, f"cannot encode a {type(value).__name__}", None,
                      "sort values are text, numbers, times or None")


def encode_page_token(values: Sequence[Any], order_by: str | None = None) -> str:
    """An opaque page token (base64url JSON) naming the row after which the next page starts: its sort
    values, one per sort key (the last is its run_id, the tie-breaker) -- what ``next_page_token`` reads
    from a row of ``runs_query``. ``order_by`` (the query's) is recorded, so the token is refused with
    another order. Times become ISO text."""
    body = {"v": 1, "o": _signature(_sort_keys(order_by)), "k": [_plain(v) for v in values]}
    raw = json.dumps(body, separators=(",", ":"), ensure_ascii=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def next_page_token(row: Mapping[str, Any], order_by: str | None = None) -> str:
    """The token of the page after ``row`` (the last row of a full page of ``runs_query``, as a mapping of
    column name to value)."""
    n = len(_sort_keys(order_by))
    return encode_page_token([row[f"{SORT_PREFIX}{i}"] for i in range(n)], order_by)


def decode_page_token(token: str, order_by: str | None = None) -> list[Any]:
    """The sort values inside a page token, checked against ``order_by``'s sort keys (count and types).
    Raises FilterError on garbage, tampering or a token made for another order."""
    def bad(problem: str) -> FilterError:
        return FilterError("page_token", token, problem, None, "pass back the next_page_token of the previous page "
                           "unchanged, with the same filter and order_by")

    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
        raise bad("not a page token")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        body = json.loads(raw.decode("utf-8"))
    except (ValueError, binascii.Error, UnicodeDecodeError, RecursionError):
        raise bad("not a page token") from None
    if not isinstance(body, dict) or body.get("v") != 1 or not isinstance(body.get("k"), list):
        raise bad("not a page token")
    keys = _sort_keys(order_by)
    if body.get("o") != _signature(keys):
        raise bad("the token was made for another order_by")
    values = body["k"]
    if len(values) != len(keys):
        raise bad("wrong number of sort values")
    out = []
    for key, v in zip(keys, values):
        if v is None and key.sql != "r.run_id":
            out.append(None)
            continue
        if key.vtype == "number" and not isinstance(v, bool) and isinstance(v, (int, float)):
            try:
                v = float(v)
            except OverflowError:
                raise bad("a sort value is out of range") from None
            ok = not math.isnan(v)
        elif key.vtype == "time":
            ok = isinstance(v, str) and _is_naive_time(v)
        else:
            ok = key.vtype == "text" and isinstance(v, str)
        if not ok:
            raise bad("a sort value has the wrong type")
        out.append(v)
    return out


def _is_naive_time(value: str) -> bool:
    try:
        return datetime.fromisoformat(value).tzinfo is None
    except ValueError:
        return False


def _after(keys: list[SortKey], values: list[Any], params: list[Any]) -> str:
    """NULL-safe keyset condition: the row sorts strictly after ``values`` under ``keys`` (NULLS LAST),
    over the sort columns ``q._sort_<i>`` of the inner query. Row r is after v iff for some i, r equals v
    on keys 0..i-1 (NULL equals NULL) and r is after v on key i; with NULLS LAST nothing is after a NULL,
    and a NULL is after every value."""
    terms = []
    for i, key in enumerate(keys):
        v = values[i]
        if v is None:
            continue
        parts = []
        for j in range(i):
            col = f"q.{SORT_PREFIX}{j}"
            if values[j] is None:
                parts.append(col + " IS NULL")
            else:
                parts.append(col + " = " + _PLACEHOLDER[keys[j].vtype])
                params.append(values[j])
        col = f"q.{SORT_PREFIX}{i}"
        parts.append("(" + col + (" < " if key.descending else " > ") + _PLACEHOLDER[key.vtype]
                     + " OR " + col + " IS NULL)")
        params.append(v)
        terms.append("(" + " AND ".join(parts) + ")")
    return "(" + " OR ".join(terms) + ")" if terms else "FALSE"


def runs_query(experiment: str | None, filter: str | None, order_by: str | None, limit: int,
               page_token: str | None) -> tuple[str, list[Any]]:
    """One page of runs: the runs view's columns (RUN_COLUMNS), then one ``_sort_<i>`` column per sort key,
    of the runs in ``experiment`` (exact name; None: all) that ``filter`` selects, ordered by ``order_by``
    (default ``start_time DESC, run_id``; run_id breaks ties), at most ``limit`` (1..1000) rows, starting
    after the row ``page_token`` names. When a page is full, ``next_page_token(last_row, order_by)`` is the
    next page's token (the page after may be empty). Raises FilterError."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise FilterError("limit", limit, f"{limit!r} is out of range", None, f"limit is an integer 1..{MAX_LIMIT}")
    if experiment is not None and not isinstance(experiment, str):
        raise FilterError("experiment", experiment, "not text", None, "experiment is a name")
    joins = _Joins()
    keys = _sort_keys(order_by)
    sort_columns = [joins.column(_SUB_NAME[k.sql], k.params[0]) if k.sql in _SUB_NAME else k.sql for k in keys]
    params: list[Any] = [p for k in keys if k.sql not in _SUB_NAME for p in k.params]
    where, filter_params = compile_filter(filter, joins)
    sql = ("SELECT * FROM (SELECT " + ", ".join(f"r.{c}" for c in RUN_COLUMNS) + ", "
           + ", ".join(f"{col} AS {SORT_PREFIX}{i}" for i, col in enumerate(sort_columns))
           + " FROM runs r" + joins.sql() + " WHERE ")
    params.extend(joins.params())
    if experiment is not None:
        sql += "r.experiment = CAST(? AS VARCHAR) AND "
        params.append(experiment)
    sql += where + ") q"
    params.extend(filter_params)
    if page_token is not None:
        sql += " WHERE " + _after(keys, decode_page_token(page_token, order_by), params)
    sql += (" ORDER BY " + ", ".join(f"q.{SORT_PREFIX}{i}" + _direction(k) for i, k in enumerate(keys))
            + " LIMIT CAST(? AS BIGINT)")
    params.append(limit)
    return sql, params

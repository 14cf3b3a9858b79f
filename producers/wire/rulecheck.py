"""Rule checks for decoded events: the ``"modelog.rule"`` attributes of a schema, applied fast.

Avro decoding already guarantees the structure and the types of a record, so a
processor only needs the rules. They are compiled once per event type into a
plan of (path, rule) pairs; each rule runs once per *distinct* value at its path
(a batch of 5,000 metric points has a handful of distinct keys), and only the
error path looks for the first offending index to name it.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from typing import Any

from modelog.wire import rules as _rules
from modelog.wire.errors import ValidationError
from modelog.wire.schemas import current_schemas

Path = tuple[str, ...]  # field names, "*" = every item of an array


def _plan_for(schema: Any, prefix: Path, out: list[tuple[Path, str]]) -> None:
    if isinstance(schema, list):  # union: rules of its record branches
        for branch in schema:
            _plan_for(branch, prefix, out)
        return
    if not isinstance(schema, dict):
        return
    if schema.get("type") == "record":
        for f in schema["fields"]:
            path = prefix + (f["name"],)
            if "modelog.rule" in f:
                out.append((path, f["modelog.rule"]))
            _plan_for(f["type"], path, out)
    elif schema.get("type") == "array":
        _plan_for(schema["items"], prefix + ("*",), out)


@cache
def plan(event_type: str) -> tuple[tuple[Path, str], ...]:
    """(path, rule) of every rule of the event's schema; path () is a rule of the whole record."""
    schema = current_schemas()[event_type].expanded
    out: list[tuple[Path, str]] = [((), schema["modelog.rule"])] if "modelog.rule" in schema else []
    _plan_for(schema, (), out)
    return tuple(out)


def _values(node: Any, path: Path) -> Iterator[Any]:
    if not path:
        yield node
        return
    head, rest = path[0], path[1:]
    if node is None:
        return
    if head == "*":
        for item in node:
            yield from _values(item, rest)
    else:
        yield from _values(node[head], rest)


def _locate(node: Any, path: Path, bad: Any, where: str = "") -> str:
    """The concrete path (with indexes) of the first occurrence of ``bad``."""
    if not path:
        return where
    head, rest = path[0], path[1:]
    if head == "*":
        for i, item in enumerate(node):
            if any(v is bad or v == bad for v in _values(item, rest)):
                return _locate(item, rest, bad, f"{where}.{i}")
        return f"{where}.*"
    return _locate(node[head], rest, bad, f"{where}.{head}" if where else head)


def _distinct(record: dict[str, Any], path: Path) -> Any:
    if path.count("*") == 1 and path[-2] == "*":  # the common shape: a field of every array item
        node = record
        for step in path[:-2]:
            node = node[step]
            if node is None:  # an optional array (a union with null) that is null: nothing to check
                return set()
        leaf = path[-1]
        try:
            return {item[leaf] for item in node}
        except TypeError:  # unhashable values (maps): check each
            return [item[leaf] for item in node]
    values = list(_values(record, path))
    try:
        return set(values)
    except TypeError:
        return values


def check(event_type: str, record: dict[str, Any]) -> None:
    """Apply every rule of ``event_type`` to a decoded record; raise ValidationError naming field and rule."""
    for path, rule in plan(event_type):
        fn = _rules.RULES[rule]
        values = _distinct(record, path) if "*" in path else _values(record, path)
        for v in values:
            try:
                fn(v)
            except ValueError as exc:
                part = getattr(exc, "field", None)  # a rule of a whole record names the part that broke it
                if part is not None:
                    where = ".".join(p for p in (_locate(record, path, v), part) if p)
                    raise ValidationError(f"{event_type}.{where}", _part(v, part), str(exc)) from None
                raise ValidationError(f"{event_type}.{_locate(record, path, v)}", v, str(exc)) from None


def _part(node: Any, field: str) -> Any:
    for name in field.split("."):
        if not isinstance(node, dict):
            return node
        node = node.get(name)
    return node

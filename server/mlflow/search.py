"""MLflow's search grammar onto modelog's filter language (``modelog.server.filters``), which compiles it to
parameterised SQL: nothing here builds SQL.

MLflow's filter strings (``metrics.acc > 0.9 and params.lr = '0.01' and attributes.status = 'FINISHED'``)
are re-tokenised here and written out in modelog's language with every key back-quoted and every string
single-quoted (quotes doubled), so modelog's parser sees exactly the keys and values the client sent:

==================================  =========================================================
MLflow                              modelog
==================================  =========================================================
``metrics.k``, ``metric.k``         ``metrics.`k``` (the latest value, numbers)
``params.k``, ``parameters.k``      ``params.`k``` (a string compares as text, as in MLflow)
``tags.k``, ``tag.k``               ``tags.`k```
``attributes.run_id`` / ``run_name`` / ``status`` / ``user_id``  ``run_id`` / ``name`` / ``status`` / ``actor``
``attributes.start_time`` / ``end_time`` (ms)   the same, compared with the ms as an ISO 8601 time
``attributes.created`` (order_by)   ``start_time``
==================================  =========================================================

Other attributes (``artifact_uri``, ``lifecycle_stage``), ``datasets.*`` and unknown prefixes are an
``INVALID_PARAMETER_VALUE`` naming them. The experiment ids become ``experiment IN (...)``.
"""

from __future__ import annotations

import base64
import fnmatch
import re
from typing import Any

from modelog.server.mlflow.common import invalid, iso_from_ms

_ENTITY = {"metric": "metrics", "metrics": "metrics", "param": "params", "params": "params",
           "parameter": "params", "parameters": "params", "tag": "tags", "tags": "tags",
           "attribute": "attr", "attributes": "attr", "attr": "attr", "run": "attr"}
_ATTRS = {"run_id": "run_id", "run_name": "name", "status": "status", "user_id": "actor",
          "start_time": "start_time", "end_time": "end_time", "created": "start_time", "Created": "start_time"}
_TIMES = ("start_time", "end_time")
_TOKEN = re.compile(r"""
    \s*(?:
      (?P<field>[A-Za-z_]+\.(?:`(?:[^`]|``)*`|"(?:[^"]|"")*"|[A-Za-z0-9_.\-]+))
    | (?P<string>'(?:[^']|'')*'|"(?:[^"]|"")*")
    | (?P<number>-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
    | (?P<op><=|>=|!=|<>|==|=|<|>)
    | (?P<punct>[(),])
    | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
    )""", re.X)


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] in "`\"'" and text[-1] == text[0]:
        return text[1:-1].replace(text[0] * 2, text[0])
    return text


def _field(text: str) -> tuple[str, str]:
    """(modelog field text, kind) of an MLflow ``entity.key``; kind is metrics|params|tags|time|attr."""
    entity, _, key = text.partition(".")
    kind = _ENTITY.get(entity.lower())
    if kind is None:
        raise invalid(f"Invalid entity type '{entity}'. Valid values are metrics, params, tags, attributes")
    key = _unquote(key)
    if kind == "attr":
        attr = _ATTRS.get(key)
        if attr is None:
            raise invalid(f"Invalid attribute key '{key}' specified: modelog's gateway searches run_id, run_name, "
                          "status, user_id, start_time, end_time")
        return attr, "time" if attr in _TIMES else "attr"
    return f"{kind}.`" + key.replace("`", "``") + "`", kind


def _string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def translate(text: str) -> str:
    """An MLflow run filter string in modelog's filter language."""
    out: list[str] = []
    pos, last_kind = 0, None
    text = text or ""
    while pos < len(text):
        if not text[pos:].strip():
            break
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise invalid(f"Invalid filter '{text}': cannot parse at position {pos}")
        pos = m.end()
        kind = m.lastgroup
        tok = m.group(kind)
        if kind == "field":
            field, last_kind = _field(tok)
            out.append(field)
        elif kind == "string":
            value = _unquote(tok)
            out.append(_string(iso_from_ms(value, "filter") if last_kind == "time" and _is_number(value)
                               else value))
        elif kind == "number":
            out.append(_string(iso_from_ms(tok, "filter")) if last_kind == "time" else tok)
        elif kind == "word" and tok.lower() == "and":
            out.append("AND")
            last_kind = None
        elif kind == "word" and tok.upper() in ("IN", "NOT", "LIKE", "ILIKE", "IS", "NULL"):
            out.append(tok.upper())
        elif kind == "word":
            raise invalid(f"Invalid filter '{text}': unexpected '{tok}' (MLflow filters join conditions with AND; "
                          "keys are prefixed: metrics., params., tags., attributes.)")
        else:
            out.append({"==": "=", "<>": "!="}.get(tok, tok))
    return " ".join(out)


def _is_number(value: str) -> bool:
    try:
        float(value)
        return True
    except ValueError:
        return False


def runs_filter(text: str, experiments: list[str]) -> str:
    names = ", ".join(_string(n) for n in experiments)
    where = translate(text)
    return f"experiment IN ({names})" + (f" AND ({where})" if where else "")


def runs_order(order_by: list[str]) -> str | None:
    """MLflow's order_by list (``["metrics.acc DESC", "attributes.start_time"]``) in modelog's language."""
    if isinstance(order_by, str):
        order_by = [order_by]
    keys = []
    for item in order_by or []:
        m = re.fullmatch(r"\s*(.+?)(?:\s+(ASC|DESC|asc|desc))?\s*", item or "")
        if m is None or not m.group(1):
            raise invalid(f"Invalid order_by clause '{item}'")
        name = m.group(1)
        field = _field(name if "." in name else "attributes." + name)[0]
        keys.append(field + (" " + m.group(2).upper() if m.group(2) else ""))
    return ", ".join(keys) or None


# -- experiments (a handful of rows: filtered and ordered here) ----------------------------------------------

_EXP_COND = re.compile(r"\s*(?:attributes?\.)?(name|creation_time|last_update_time)\s*"
                       r"(=|!=|<=|>=|<|>|LIKE|ILIKE)\s*('(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|-?\d+)\s*", re.I)


def filter_experiments(experiments: list[dict[str, Any]], text: str | None) -> list[dict[str, Any]]:
    if not text or not text.strip():
        return experiments
    conds = []
    for part in re.split(r"\s+and\s+", text.strip(), flags=re.I):
        m = _EXP_COND.fullmatch(part)
        if m is None:
            raise invalid(f"Invalid experiment filter '{part}': modelog's gateway filters experiments by "
                          "name (= != LIKE ILIKE), creation_time and last_update_time (numbers)")
        conds.append((m.group(1).lower(), m.group(2).upper(), _unquote(m.group(3))))

    def keep(e: dict[str, Any]) -> bool:
        for key, op, value in conds:
            have = e.get(key)
            if key != "name":
                if have is None:
                    return False
                have, value_ = float(have), float(value)
            else:
                value_ = value
            if op in ("LIKE", "ILIKE"):
                pattern = value_.replace("%", "*").replace("_", "?")
                ok = (fnmatch.fnmatchcase(have.lower(), pattern.lower()) if op == "ILIKE"
                      else fnmatch.fnmatchcase(have, pattern))
            else:
                ok = {"=": have == value_, "!=": have != value_, "<": have < value_, "<=": have <= value_,
                      ">": have > value_, ">=": have >= value_}[op]
            if not ok:
                return False
        return True

    return [e for e in experiments if keep(e)]


def order_experiments(experiments: list[dict[str, Any]], order_by: list[str] | None) -> list[dict[str, Any]]:
    out = sorted(experiments, key=lambda e: e["name"])
    out.sort(key=lambda e: -(e.get("creation_time") or 0))  # MLflow's default: newest first
    for item in reversed(order_by or []):
        m = re.fullmatch(r"\s*(?:attributes?\.)?(name|experiment_id|creation_time|last_update_time)"
                         r"(?:\s+(ASC|DESC))?\s*", item or "", re.I)
        if m is None:
            raise invalid(f"Invalid order_by clause '{item}'")
        key = m.group(1).lower()
        out.sort(key=lambda e: (e.get(key) is None, e.get(key) or 0) if key != "name" else (False, e["name"]),
                 reverse=(m.group(2) or "ASC").upper() == "DESC")
    return out


def offset(token: str | None) -> int:
    if not token:
        return 0
    try:
        return max(0, int(base64.urlsafe_b64decode(token.encode()).decode()))
    except ValueError:
        raise invalid(f"Invalid page token '{token}'") from None


def offset_token(n: int) -> str:
    return base64.urlsafe_b64encode(str(n).encode()).decode()


def page(items: list[Any], max_results: Any, token: str | None) -> tuple[list[Any], str | None]:
    start = offset(token)
    size = int(max_results or 1000)
    if not 1 <= size <= 50_000:
        raise invalid(f"max_results: must be 1..50000 (got {size})")
    chunk = items[start:start + size]
    return chunk, offset_token(start + size) if start + size < len(items) else None

"""Rendering query results for the terminal: table, csv, json."""

from __future__ import annotations

import json
import math
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv


def _cell(v: Any) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, float):
        if math.isnan(v):
            return "NaN"
        return f"{v:.6g}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_cell(x) for x in v) + "]"
    return str(v)


def table(result: pa.Table, max_width: int = 60) -> str:
    names = result.column_names
    rows = [[_cell(v)[:max_width] for v in row.values()] for row in result.to_pylist()]
    widths = [max([len(n)] + [len(r[i]) for r in rows]) for i, n in enumerate(names)]
    numeric = [pa.types.is_integer(f.type) or pa.types.is_floating(f.type) for f in result.schema]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric)).rstrip()

    out = [line(names), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in rows]
    out.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(out)


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return str(v) if not math.isnan(v) else "NaN"
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return v


def to_json(result: pa.Table) -> str:
    return json.dumps([{k: _jsonable(v) for k, v in row.items()} for row in result.to_pylist()], indent=2)


def to_csv(result: pa.Table) -> str:
    sink = pa.BufferOutputStream()
    simple = pa.table({f.name: (result[f.name] if not (pa.types.is_list(f.type) or pa.types.is_map(f.type))
                                else pa.array([json.dumps(_jsonable(v)) for v in result[f.name].to_pylist()]))
                       for f in result.schema})
    pacsv.write_csv(simple, sink)
    return sink.getvalue().to_pybytes().decode()

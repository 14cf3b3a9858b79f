"""Columnar prediction batches: a ``PredictionsLogged`` column as a buffer instead of one Avro item per value.

A column of a ``PredictionsLogged`` event (decision 0025) has one of two forms:

* lists (the first form): ``numbers`` (double or null per request) or ``strings`` (text or null);
* buffers: a column of numbers as ``values`` (float64 little-endian, one per request) with ``valid``
  (a bitmap, least significant bit first, 1 = present; null = all present), or a column of text as
  ``codes`` (int32 little-endian, one per request, -1 = missing) into ``dictionary`` (each text once).

So the SDK encodes a batch and the projector and the drift processor read it with numpy, without a
Python object per value. ``lists`` turns either form into the first one (for JSON consumers). Pure:
numpy only.

The requests of a batch (decision 0030) also have two forms: ``request_ids`` and ``timestamps`` as Avro
arrays (the first form), or compact: ``request_id_prefix`` with ``request_id_counters`` (int64
little-endian; request i's id is the prefix followed by counter i in decimal -- the ids the SDK generates)
and ``timestamp_values`` (int64 little-endian microseconds). :func:`expand` turns a record into the first
form; the codec does it on every decode, so readers only ever see lists.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

VALUE = np.dtype("<f8")
CODE = np.dtype("<i4")
WHOLE = np.dtype("<i8")  # request id counters and timestamps (microseconds)


class ColumnsError(ValueError):
    """A column that breaks a rule; ``field`` names the part (``values``, ``codes`` ...)."""

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(rule)
        self.field = field


class NumberColumn(NamedTuple):
    values: np.ndarray  # float64, NaN where missing
    valid: np.ndarray | None  # bool per request; None: every value present


class TextColumn(NamedTuple):
    codes: np.ndarray  # int32, -1 = missing
    dictionary: list[str]


def numbers(name: str, role: str, values: np.ndarray, valid: np.ndarray | None = None) -> dict[str, Any]:
    """A column record of numbers (``valid``: bool per value, None or all True = every value present)."""
    bitmap = None if valid is None or valid.all() else np.packbits(valid, bitorder="little").tobytes()
    return {"name": name, "role": role, "numbers": [], "strings": [],
            "values": np.ascontiguousarray(values, VALUE).tobytes(), "valid": bitmap, "codes": None, "dictionary": [],
            "sealed": None}


def texts(name: str, role: str, codes: np.ndarray, dictionary: list[str]) -> dict[str, Any]:
    """A column record of text: ``codes`` index ``dictionary`` (-1 = missing)."""
    return {"name": name, "role": role, "numbers": [], "strings": [], "values": None, "valid": None,
            "codes": np.ascontiguousarray(codes, CODE).tobytes(), "dictionary": list(dictionary), "sealed": None}


def compact_requests(prefix: str | None, counters: Any, timestamps: Any) -> dict[str, Any]:
    """The request fields of a batch in the compact form (decision 0030): ``counters`` (ints) give the ids
    ``prefix + str(counter)``; None keeps ``request_ids`` for the caller to fill. ``timestamps``: microseconds."""
    fields: dict[str, Any] = {"timestamps": [], "timestamp_values": np.asarray(timestamps, WHOLE).tobytes()}
    if counters is not None:
        fields.update(request_ids=[], request_id_prefix=prefix, request_id_counters=np.asarray(counters, WHOLE).tobytes())
    return fields


def _wholes(record: dict[str, Any], field: str, rows: int | None) -> np.ndarray:
    data = record[field]
    if len(data) % WHOLE.itemsize or (rows is not None and len(data) != rows * WHOLE.itemsize):
        want = "8 bytes per request" + ("" if rows is None else f" ({rows} requests)")
        raise ColumnsError(field, f"must hold {want}, got {len(data)} bytes")
    return np.frombuffer(data, WHOLE)


def request_ids(record: dict[str, Any]) -> list[str]:
    """The request ids of a batch, whichever form holds them."""
    if record.get("request_id_counters") is None:
        return record["request_ids"]
    if record.get("request_ids"):
        raise ColumnsError("request_ids", "must be empty when request_id_counters holds the ids")
    prefix = record.get("request_id_prefix")
    if prefix is None:
        raise ColumnsError("request_id_prefix", "must be set when request_id_counters holds the ids")
    return list(map(prefix.__add__, map(str, _wholes(record, "request_id_counters", None).tolist())))


def expand(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` (a PredictionsLogged, changed in place and returned) with its request ids and timestamps in
    the first form; raises ColumnsError naming the field of a compact form that breaks a rule."""
    if record.get("request_id_counters") is not None:
        record["request_ids"] = request_ids(record)
    if record.get("timestamp_values") is not None:
        if record.get("timestamps"):
            raise ColumnsError("timestamps", "must be empty when timestamp_values holds the timestamps")
        record["timestamps"] = _wholes(record, "timestamp_values", len(record["request_ids"])).tolist()
    record["request_id_prefix"] = record["request_id_counters"] = record["timestamp_values"] = None
    return record


def is_buffer(column: dict[str, Any]) -> bool:
    """Whether ``column`` holds its values in buffers (decision 0025) rather than lists."""
    return bool(column.get("values") or column.get("codes"))


def decode(column: dict[str, Any], rows: int) -> NumberColumn | TextColumn:
    """The arrays of a buffer column of a batch of ``rows`` requests (views of its bytes, no copy).
    Raises ColumnsError for buffers of the wrong size; ``check`` also checks codes against the dictionary."""
    values, codes = column.get("values") or b"", column.get("codes") or b""
    if values and codes:
        raise ColumnsError("codes", "must be empty when values holds the column")
    if values:
        if len(values) != rows * VALUE.itemsize:
            raise ColumnsError("values", f"must hold 8 bytes per request ({rows} requests), got {len(values)} bytes")
        if column.get("dictionary"):
            raise ColumnsError("dictionary", "must be empty when values holds the column")
        bitmap = column.get("valid") or b""
        valid = None
        if bitmap:
            if len(bitmap) != (rows + 7) // 8:
                raise ColumnsError("valid", f"must hold one bit per request ({(rows + 7) // 8} bytes), "
                                            f"got {len(bitmap)} bytes")
            valid = np.unpackbits(np.frombuffer(bitmap, np.uint8), count=rows, bitorder="little").astype(bool)
        return NumberColumn(np.frombuffer(values, VALUE), valid)
    if len(codes) != rows * CODE.itemsize:
        raise ColumnsError("codes", f"must hold 4 bytes per request ({rows} requests), got {len(codes)} bytes")
    if column.get("valid"):
        raise ColumnsError("valid", "must be empty when codes holds the column (-1 marks a missing text)")
    return TextColumn(np.frombuffer(codes, CODE), list(column.get("dictionary") or []))


def check(record: dict[str, Any]) -> None:
    """Every rule of a batch's columns: a column has one form (lists or buffers), lists and buffers hold one
    value per request, codes index the dictionary (or are -1), a dictionary names each text once."""
    if record.get("request_id_counters") is not None or record.get("timestamp_values") is not None:
        record = expand(dict(record))
    rows = len(record["request_ids"])
    if len(record["timestamps"]) != rows:
        raise ColumnsError("timestamps", f"must hold one timestamp per request ({rows}), got {len(record['timestamps'])}")
    for i, col in enumerate(record["columns"]):
        where = f"columns.{i}"
        if not is_buffer(col):
            for part in ("numbers", "strings"):
                got = len(col.get(part) or ())
                if got not in (0, rows):
                    raise ColumnsError(f"{where}.{part}", f"must hold one value per request ({rows}), got {got}")
            continue
        if col.get("numbers") or col.get("strings"):
            raise ColumnsError(f"{where}.numbers", "must be empty when the column's buffers hold its values")
        try:
            arrays = decode(col, rows)
        except ColumnsError as exc:
            raise ColumnsError(f"{where}.{exc.field}", str(exc)) from None
        if isinstance(arrays, TextColumn):
            d = arrays.dictionary
            if len(set(d)) != len(d):
                raise ColumnsError(f"{where}.dictionary", "must name each text once")
            if rows and (int(arrays.codes.min()) < -1 or int(arrays.codes.max()) >= len(d)):
                raise ColumnsError(f"{where}.codes", f"must be an index into dictionary (0..{len(d) - 1}) or -1")


def lists(column: dict[str, Any], rows: int) -> tuple[list, list]:
    """(numbers, strings) of a column in the first form, whichever form it has (None = missing)."""
    if not is_buffer(column):
        return list(column.get("numbers") or []), list(column.get("strings") or [])
    arrays = decode(column, rows)
    if isinstance(arrays, NumberColumn):
        out = arrays.values.tolist()
        if arrays.valid is not None:
            out = [v if ok else None for v, ok in zip(out, arrays.valid.tolist())]
        return out, []
    d = arrays.dictionary
    return [], [None if c < 0 else d[c] for c in arrays.codes.tolist()]


def to_lists(record: dict[str, Any]) -> dict[str, Any]:
    """A ``PredictionsLogged`` record with its requests and every column in the first form (for JSON consumers)."""
    record = expand(dict(record))
    rows = len(record["request_ids"])
    columns = []
    for col in record["columns"]:
        nums, strs = lists(col, rows)
        columns.append({"name": col["name"], "role": col.get("role", "FEATURE"), "numbers": nums, "strings": strs,
                        **({"sealed": col["sealed"]} if col.get("sealed") else {})})
    return {**record, "columns": columns}

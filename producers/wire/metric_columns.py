"""Columnar metric batches: a ``MetricsLogged`` batch as parallel arrays instead of one record per point.

The ``columns`` field of a ``MetricsLogged`` event (decision 0021) holds the batch as a dictionary of metric
names and four little-endian buffers of fixed-width numbers, one item per point::

    keys        [name, ...]          each name once
    key_index   int32   per point    index into keys
    values      float64 per point    IEEE-754; NaN and +/-inf allowed
    steps       int64   per point
    timestamps  int64   per point    microseconds since the epoch, UTC

so the SDK encodes a batch and the projector decodes it with numpy (``tobytes`` / ``frombuffer``), without
a Python object per point. Pure: numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

KEY_INDEX = np.dtype("<i4")
VALUE = np.dtype("<f8")
STEP = np.dtype("<i8")
TIMESTAMP = np.dtype("<i8")
DTYPES = {"key_index": KEY_INDEX, "values": VALUE, "steps": STEP, "timestamps": TIMESTAMP}


class MetricArrays(NamedTuple):
    """A batch's points as arrays: point i is (keys[key_index[i]], values[i], steps[i], timestamps[i])."""

    keys: list[str]
    key_index: np.ndarray
    values: np.ndarray
    steps: np.ndarray
    timestamps: np.ndarray

    @property
    def points(self) -> int:
        return len(self.values)


class ColumnsError(ValueError):
    """A ``columns`` record that breaks a rule; ``field`` names the part (``key_index``, ``values`` ...)."""

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(rule)
        self.field = field


def encode(keys: Sequence[str], key_index: np.ndarray, values: np.ndarray, steps: np.ndarray,
           timestamps: np.ndarray) -> dict[str, Any]:
    """The ``columns`` record of a batch (arrays of any numeric dtype; converted to the wire's)."""
    return {"keys": list(keys), "key_index": np.ascontiguousarray(key_index, KEY_INDEX).tobytes(),
            "values": np.ascontiguousarray(values, VALUE).tobytes(),
            "steps": np.ascontiguousarray(steps, STEP).tobytes(),
            "timestamps": np.ascontiguousarray(timestamps, TIMESTAMP).tobytes()}


def decode(columns: dict[str, Any]) -> MetricArrays:
    """The arrays of a ``columns`` record (read-only views of its bytes, no copy). Raises ColumnsError
    for buffers of the wrong size; does not check ``key_index`` against ``keys`` (``check`` does)."""
    n = None
    arrays = {}
    for name, dtype in DTYPES.items():
        buf = columns[name]
        if not isinstance(buf, (bytes, bytearray, memoryview)):
            raise ColumnsError(name, f"must be bytes: {dtype.itemsize}-byte little-endian numbers, one per point")
        if len(buf) % dtype.itemsize:
            raise ColumnsError(name, f"must hold {dtype.itemsize} bytes per point (got {len(buf)} bytes)")
        a = np.frombuffer(buf, dtype)
        if n is None:
            n = len(a)
        elif len(a) != n:
            raise ColumnsError(name, f"must hold one number per point: {len(a)}, but key_index has {n}")
        arrays[name] = a
    return MetricArrays(list(columns["keys"]), **arrays)


def check(columns: dict[str, Any], name_rule) -> MetricArrays:
    """Every rule of a ``columns`` record: buffers of one item per point, at least one point, every key
    a valid name (``name_rule``) and used once in ``keys``, every ``key_index`` within ``keys``."""
    arrays = decode(columns)
    if not arrays.points:
        raise ColumnsError("key_index", "must hold at least one point")
    keys = arrays.keys
    for k in keys:
        try:
            name_rule(k)
        except ValueError as exc:
            raise ColumnsError("keys", f"{k!r}: {exc}") from None
    if len(set(keys)) != len(keys):
        raise ColumnsError("keys", "must name each metric once")
    idx = arrays.key_index
    lo, hi = int(idx.min()), int(idx.max())
    if lo < 0 or hi >= len(keys):
        raise ColumnsError("key_index",
                           f"must be an index into keys (0..{len(keys) - 1}); found {lo if lo < 0 else hi}")
    return arrays


def points(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The points of a ``MetricsLogged`` record as records, whichever form it has (for JSON consumers)."""
    columns = record.get("columns")
    if columns is None:
        return list(record.get("points") or [])
    a = decode(columns)
    keys = a.keys
    return [{"key": keys[k], "value": v, "step": s, "timestamp": t}
            for k, v, s, t in zip(a.key_index.tolist(), a.values.tolist(), a.steps.tolist(), a.timestamps.tolist())]


def from_points(pts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The ``columns`` record of points given as records (keys in order of first appearance)."""
    index: dict[str, int] = {}
    key_index = [index.setdefault(p["key"], len(index)) for p in pts]
    return encode(list(index), np.array(key_index, KEY_INDEX), np.array([p["value"] for p in pts], VALUE),
                  np.array([p["step"] for p in pts], STEP), np.array([p["timestamp"] for p in pts], TIMESTAMP))

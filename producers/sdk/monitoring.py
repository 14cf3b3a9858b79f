"""Production monitoring from a serving process: reference profiles, predictions, labels, configuration.

``Monitor.log`` never waits on the network: it appends to a bounded in-memory buffer that a
background thread turns into column-wise ``PredictionsLogged`` batch events. When the buffer is
full the new prediction is dropped and counted (``on_full="drop"``, the default: serving must not
slow down) -- or the call waits for room (``on_full="block"``). Drops are never silent: every batch
event carries the number dropped since the previous one (view ``prediction_rates``), and
``monitor.stats()`` reports them.

    monitor = modelog.Monitor(model="credit-risk", deployment="prod-eu")
    rid = monitor.log({"income": 52_000, "city": "Lyon"}, prediction="approve", score=0.83)
    ...
    monitor.log_labels(rid, "approve")
"""

from __future__ import annotations

import itertools
import math
import numbers
import threading
import time
from time import time_ns as _time_ns
from collections import deque
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from modelog.wire import prediction_columns as _pc
from modelog.wire import rules as _rules
from modelog.wire.errors import DeliveryError, ValidationError
from modelog.wire.envelope import now_micros
from modelog.wire.ids import uuid7

if TYPE_CHECKING:
    import pandas as pd

    from modelog.sdk.client import Client

BATCH_ROWS = 1000
MAX_BUFFER = 100_000
# values per request in the Monitor's buffer: request id, timestamp (us), features, prediction, score, subject
_FIELDS = 6


def _check_name(field: str, value: Any) -> str:
    try:
        return _rules.name(value)
    except ValueError as exc:
        raise ValidationError(field, value, str(exc)) from None


def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))


def _column(values: list) -> tuple[list, list]:
    """(numbers, strings) for one column: numbers if every present value is a number, else text."""
    if all(v is None or _is_number(v) for v in values):
        return [None if v is None else float(v) for v in values], []
    from modelog.drift.profile import value_text

    return [], [None if v is None or (isinstance(v, float) and math.isnan(v)) else value_text(v) for v in values]


_NONE = type(None)
# exact types whose values numpy converts to float64 as float(v) does (None -> NaN, then marked missing);
# anything else (bool, Decimal, text, mixes) goes through _column, value by value
_NUMBER_TYPES = frozenset({float, int, _NONE, np.float64, np.float32, np.float16, np.int64, np.int32, np.int16,
                           np.int8, np.uint64, np.uint32, np.uint16, np.uint8})
_TEXT_TYPES = frozenset({str, _NONE})


def _encode_column(name: str, role: str, values: list | tuple) -> dict[str, Any]:
    """One column in the buffer form (decision 0025): float64 values (+ a validity bitmap when some are
    missing) if every present value is a number, else int32 codes into a dictionary of texts. Numbers and
    texts exactly as :func:`_column` gives them, without a Python object per value on the common paths.

    A column of numbers goes through Arrow: one pass in C that both checks the values' types and converts
    them (half the time of a type check plus numpy's conversion). Text (the dictionary below is quicker than
    Arrow's for a batch), and what Arrow reads as anything but numbers (bools, decimals, mixes it refuses),
    go value by value."""
    if values and type(values[0]) is str:
        return _encode_values(name, role, values)
    import pyarrow as _pa  # imported on first use: `import modelog` does not load Arrow

    try:
        arr = _pa.array(values)
    except (_pa.ArrowException, OverflowError, TypeError, ValueError):
        return _encode_values(name, role, values)
    kind = arr.type
    if not (_pa.types.is_floating(kind) or _pa.types.is_integer(kind) or _pa.types.is_null(kind)):
        return _encode_values(name, role, values)
    if arr.null_count and values.count(None) != arr.null_count:  # a null Arrow did not get from None
        return _encode_values(name, role, values)
    if _pa.types.is_null(kind):
        return _pc.numbers(name, role, np.full(len(arr), math.nan), np.zeros(len(arr), bool))
    nums = arr.to_numpy(zero_copy_only=False).astype(_pc.VALUE, copy=False)
    valid = arr.is_valid().to_numpy(zero_copy_only=False) if arr.null_count else None
    return _pc.numbers(name, role, nums, valid)


def _encode_values(name: str, role: str, values: list | tuple) -> dict[str, Any]:
    """:func:`_encode_column` value by value."""
    types = set(map(type, values))
    if types <= _NUMBER_TYPES:
        if _NONE in types:
            valid = np.fromiter((v is not None for v in values), bool, len(values))
            return _pc.numbers(name, role, np.array(values, dtype=_pc.VALUE), valid)
        return _pc.numbers(name, role, np.array(values, dtype=_pc.VALUE))
    if types <= _TEXT_TYPES:
        texts = values
    else:
        nums, texts = _column(list(values))
        if not texts:  # numbers of other types (Fraction ...), or every value missing
            valid = np.fromiter((v is not None for v in nums), bool, len(nums))
            return _pc.numbers(name, role, np.array([math.nan if v is None else v for v in nums], _pc.VALUE), valid)
    distinct = dict.fromkeys(texts)  # first-seen order
    distinct.pop(None, None)  # type: ignore[call-overload]
    index: dict[Any, int] = {v: i for i, v in enumerate(distinct)}
    index[None] = -1
    codes = np.fromiter(map(index.__getitem__, texts), _pc.CODE, len(texts))
    return _pc.texts(name, role, codes, list(distinct))


def _feature_columns(features: list[Mapping[str, Any]]) -> list[tuple[str, list]]:
    """(name, values) per feature, names in first-seen order, None where a request lacks the feature.

    Column by column, without a tuple per request: a tuple per row (``zip(*rows)``) is a container the
    cyclic garbage collector tracks, and a serving process at 100,000 predictions/s that makes 100,000 of
    them a second pays for it in collections (measured: docs/benchmarks.md, "Monitor.log")."""
    first = features[0]
    k = len(first)
    if k and all(len(f) == k for f in features):  # the common case: every request has the same names
        try:
            return [(name, [f[name] for f in features]) for name in first]
        except KeyError:
            pass
    seen: dict[str, None] = {}
    for f in features:
        seen.update(dict.fromkeys(f))
    return [(name, [f.get(name) for f in features]) for name in seen]


def prediction_columns(items: list[tuple], *, buffers: bool = True) -> list[dict[str, Any]]:
    """The ``columns`` of a PredictionsLogged event for ``items`` (request_id, timestamp_us, features,
    prediction, score): one FEATURE column per feature name (in first-seen order), then PREDICTION and
    SCORE columns if any item has one. Numbers where every present value is a number, else text.

    ``buffers`` (default): each column as little-endian buffers (decision 0025); False: as lists (the
    first form, which every reader accepts)."""
    if not items:
        return []
    if not buffers:
        return _list_columns(items)
    return _buffer_columns([it[2] for it in items], [it[3] for it in items], [it[4] for it in items])


def _buffer_columns(features: list[Mapping[str, Any]], preds: list, scores: list) -> list[dict[str, Any]]:
    """:func:`prediction_columns` (buffer form) of the requests' features, predictions and scores."""
    columns = [_encode_column(str(name), "FEATURE", values) for name, values in _feature_columns(features)]
    if any(p is not None for p in preds):
        columns.append(_encode_column("prediction", "PREDICTION", preds))
    if any(v is not None for v in scores):
        if set(map(type, scores)) <= _NUMBER_TYPES:
            columns.append(_encode_column("score", "SCORE", scores))
        else:  # as before: a score column of numbers only (none, if some score is not a number)
            numbers, _ = _column(scores)
            columns.append({"name": "score", "role": "SCORE", "numbers": numbers, "strings": []})
    return columns


def _list_columns(items: list[tuple]) -> list[dict[str, Any]]:
    names: dict[str, None] = {}
    for it in items:
        names.update(dict.fromkeys(it[2]))
    columns = []
    for name in names:
        numbers, strings = _column([it[2].get(name) for it in items])
        columns.append({"name": str(name), "role": "FEATURE", "numbers": numbers, "strings": strings})
    if any(it[3] is not None for it in items):
        numbers, strings = _column([it[3] for it in items])
        columns.append({"name": "prediction", "role": "PREDICTION", "numbers": numbers, "strings": strings})
    if any(it[4] is not None for it in items):
        numbers, _ = _column([it[4] for it in items])
        columns.append({"name": "score", "role": "SCORE", "numbers": numbers, "strings": []})
    return columns


def predictions_payload(model: str, deployment: str, version: int | None, items: list[tuple],
                        dropped: int = 0, *, buffers: bool = True) -> dict[str, Any]:
    """The payload of one PredictionsLogged batch event (what :class:`Monitor` publishes per batch)."""
    return {"model": model, "deployment": deployment, "version": version,
            "request_ids": [str(it[0]) for it in items], "timestamps": [it[1] for it in items],
            "columns": prediction_columns(items, buffers=buffers), "dropped": dropped}


def _as_list(values: Iterable[Any] | None, n: int) -> list | np.ndarray | None:
    """``values`` as something sliceable with a length (a numpy array stays one)."""
    if values is None:
        return None
    if isinstance(values, np.ndarray):
        return values
    to_numpy = getattr(values, "to_numpy", None)  # a pandas Series
    return to_numpy() if to_numpy is not None else list(values)


class _Source:
    """One column of a frame (or the predictions or scores), converted once per :meth:`Monitor.log_frame`
    call and cut into batches by :meth:`column`, which gives exactly what :func:`_encode_column` makes of
    the same values one by one (a row's None, pandas' NA and a text column's NaN are missing; a float NaN
    of a float column is a NaN value)."""

    def __init__(self, name: str, role: str, values: Any) -> None:
        self.name, self.role, self.source = name, role, values
        self.values: np.ndarray | list | None = None  # float64 (numbers) or the values (one by one)
        self.valid: np.ndarray | None = None
        self.codes: np.ndarray | None = None  # int32 into self.dictionary (texts)
        self.dictionary: list[str] = []
        dtype = getattr(values, "dtype", None)
        if dtype is not None and not isinstance(dtype, np.dtype) and dtype.kind in "fiu":  # Int64, Float64
            missing = np.asarray(values.isna(), bool)
            self.values = values.to_numpy(dtype=_pc.VALUE, na_value=np.nan)
            self.valid = ~missing if missing.any() else None
            return
        if isinstance(dtype, np.dtype) and dtype.kind in "fiu":
            self.values = np.asarray(values).astype(_pc.VALUE, copy=False)
            return
        if dtype is not None and not (isinstance(dtype, np.dtype) and dtype.kind != "O") and self._texts(values):
            return
        self.values = values.tolist() if hasattr(values, "tolist") else list(values)

    def _texts(self, values: Any) -> bool:
        """Dictionary-encode a column of text (pandas' str, object or categorical of text) with Arrow."""
        import pyarrow as pa

        try:
            arr = pa.array(values, from_pandas=True)
        except (pa.ArrowException, TypeError, ValueError):  # mixed types: value by value
            return False
        if isinstance(arr.type, pa.DictionaryType):
            if not pa.types.is_string(arr.type.value_type) and not pa.types.is_large_string(arr.type.value_type):
                return False
        elif pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
            arr = arr.dictionary_encode()
        else:
            return False
        self.codes = arr.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(_pc.CODE, copy=False)
        self.dictionary = arr.dictionary.to_pylist()
        return True

    def column(self, start: int, end: int) -> dict[str, Any] | None:
        """The column of rows ``start:end``; None for a prediction or score column with none in them."""
        if self.codes is not None:
            sub = self.codes[start:end]
            present = sub[sub >= 0]
            if not len(present):  # nothing but missing values: as one by one (a column of numbers)
                if self.role != "FEATURE":
                    return None
                return _encode_column(self.name, self.role, _tolist(self.source, start, end))
            seen, first = np.unique(present, return_index=True)
            order = seen[np.argsort(first)]  # the batch's texts in first-seen order, as _encode_column has them
            remap = np.full(len(self.dictionary) + 1, -1, _pc.CODE)  # [-1] stays -1
            remap[order] = np.arange(len(order), dtype=_pc.CODE)
            return _pc.texts(self.name, self.role, remap[sub], [self.dictionary[i] for i in order])
        if isinstance(self.values, np.ndarray):
            return _pc.numbers(self.name, self.role, self.values[start:end],
                               None if self.valid is None else self.valid[start:end])
        values = self.values[start:end]
        if self.role != "FEATURE" and all(v is None for v in values):
            return None
        return _encode_column(self.name, self.role, values)


def _frame_sources(features: pd.DataFrame, predictions: Any, scores: Any) -> list[_Source]:
    """The columns of a PredictionsLogged event for the rows of ``features`` (see :func:`frame_columns`)."""
    sources = [_Source(str(name), "FEATURE", features.iloc[:, j]) for j, name in enumerate(features.columns)]
    if predictions is not None:
        sources.append(_Source("prediction", "PREDICTION", predictions))
    if scores is not None:
        score = _Source("score", "SCORE", scores)
        sources.append(score if isinstance(score.values, np.ndarray) else _Scores(_tolist(scores, 0, len(scores))))
    return sources


class _Scores:
    """A score column with something other than numbers in it: each batch as prediction_columns makes it."""

    def __init__(self, values: list) -> None:
        self._values = values

    def column(self, start: int, end: int) -> dict[str, Any] | None:
        values = self._values[start:end]
        if all(v is None for v in values):
            return None
        if set(map(type, values)) <= _NUMBER_TYPES:
            return _encode_column("score", "SCORE", values)
        numbers, _ = _column(values)  # a score column of numbers only (none, if some are not)
        return {"name": "score", "role": "SCORE", "numbers": numbers, "strings": []}


def _tolist(values: Any, start: int, end: int) -> list:
    """Rows ``start:end`` of a Series, an array or a list, as Python objects (what a row's dict holds)."""
    part = values.iloc[start:end] if hasattr(values, "iloc") else values[start:end]
    return part.tolist() if hasattr(part, "tolist") else list(part)


def frame_columns(features: pd.DataFrame, predictions: Any = None, scores: Any = None) -> list[dict[str, Any]]:
    """The ``columns`` of a PredictionsLogged event for the rows of ``features`` -- the same columns as
    :func:`prediction_columns` gives for those rows as dicts, without a Python object per row."""
    columns = (s.column(0, len(features)) for s in _frame_sources(features, predictions, scores))
    return [c for c in columns if c is not None]


class Monitor:
    """Logs a deployment's predictions (and later labels) for drift and performance monitoring."""

    def __init__(self, model: str, deployment: str, *, version: int | None = None, client: Client | None = None,
                 max_buffer: int = MAX_BUFFER, batch_rows: int = BATCH_ROWS, linger_ms: int | None = None,
                 on_full: str = "drop", sensitive_features: Iterable[str] = ()) -> None:
        """``sensitive_features``: feature columns sealed whatever the policy says (besides those the policy
        marks for ``model``: ``modelog policy set --sensitive-feature MODEL=COLUMN``); their values are sealed
        with each prediction's ``subject`` (decision 0018)."""
        from modelog.sdk.fluent import default_client

        self.model = _check_name("model", model)
        self.deployment = _check_name("deployment", deployment)
        if on_full not in ("drop", "block"):
            raise ValidationError("on_full", on_full, "must be 'drop' or 'block'")
        if max_buffer < 1 or batch_rows < 1:
            raise ValidationError("max_buffer", max_buffer, "max_buffer and batch_rows must be >= 1")
        self.version = version
        self._client = client or default_client()
        self._max = max_buffer
        self._batch = batch_rows
        self._block = on_full == "block"
        linger = self._client.settings.linger_ms if linger_ms is None else linger_ms
        self._linger = max(linger, 1) / 1000
        # the buffer: batches of requests, each one flat list of _FIELDS values per request (no tuple per
        # request: see _feature_columns), full ones in _full, the one being filled in _tail
        self._full: deque[list] = deque()
        self._tail: list = []
        self._tail_max = batch_rows * _FIELDS
        self._buffered = 0
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._closed = False
        self._logged = self._sent = self._dropped = self._dropped_unreported = 0
        self._withheld = self._inflight = 0
        self._error: BaseException | None = None
        # sealed feature columns (decision 0018): the call's, plus the policy's for this model, read here (not
        # on the serving path) and again by the background thread before each batch
        self._explicit = frozenset(str(c) for c in sensitive_features)
        policy = self._client.sealer.sensitive_features(self.model)
        self._marked: frozenset[str] | None = None if policy is None else self._explicit | policy
        # keyed by model, like its reference and configuration: one partition holds a model's whole
        # monitoring history in order, so a processor always sees the reference before later predictions
        self._key = f"monitor:{self.model}"
        # request ids: a UUIDv7 per Monitor plus a counter -- unique, time-ordered, and ~20x cheaper
        # than a UUID per prediction on the serving path
        self._rid_prefix = uuid7() + "-"
        self._rid_counter = itertools.count()
        self._thread = threading.Thread(target=self._loop, name=f"modelog-monitor-{deployment}", daemon=True)
        self._thread.start()

    # -- the serving path --------------------------------------------------------------

    def log(self, features: Mapping[str, Any], prediction: Any = None, *, request_id: str | None = None,
            timestamp: float | None = None, score: float | None = None, subject: str | None = None) -> str:
        """Record one prediction; returns its request id (generated if not given). Never blocks with on_full='drop'.

        ``subject``: the opaque id of the person the features are about; the values of sensitive feature
        columns are sealed with that subject's data key (a sensitive column without one raises ValidationError).
        """
        if request_id:
            rid = key = str(request_id)
        else:  # buffered as its counter: a batch of generated ids is published as counters (decision 0030)
            key = next(self._rid_counter)
            rid = f"{self._rid_prefix}{key}"
        ts = _time_ns() // 1000 if timestamp is None else int(timestamp * 1_000_000)
        if subject is None:
            self._refuse_sensitive(features, "subject=<the data subject's id>")
        else:
            from modelog.wire.keystore import check_subject

            check_subject(subject)
        with self._lock:
            if self._closed:
                raise ValidationError("monitor", self.deployment, "is closed")
            while self._buffered >= self._max:
                if not self._block:
                    self._dropped += 1
                    self._dropped_unreported += 1
                    return rid
                self._wake.set()
                self._room.wait(0.1)
            tail = self._tail
            tail += (key, ts, features, prediction, score, subject)  # _FIELDS values
            self._buffered += 1
            self._logged += 1
            if len(tail) >= self._tail_max:
                self._full.append(tail)
                self._tail = []
                # set once per batch, not on every call (Event.set takes a lock and notifies: ~7 % of a
                # flat-out loop's time); the flusher also sets it again while rows remain
                self._wake.set()
        return rid

    def _refuse_sensitive(self, names: Iterable[str], remedy: str) -> None:
        """ValidationError when a feature among ``names`` is sensitive and nothing says whose data it is."""
        marked = self._explicit if self._marked is None else self._marked
        if marked and not marked.isdisjoint(names):
            from modelog.sdk.privacy import HIDDEN

            name = sorted(marked.intersection(names))[0]
            raise ValidationError(f"features[{name!r}]", HIDDEN, "is sensitive (policy sensitive_fields, or "
                                                                 f"sensitive_features=): pass {remedy} to seal it")

    def log_frame(self, features: pd.DataFrame, predictions: Iterable[Any] | None = None, *,
                  request_ids: Iterable[str] | None = None, scores: Iterable[float] | None = None,
                  subjects: Iterable[str | None] | None = None) -> list[str]:
        """Record many predictions at once (one row of ``features`` each); returns the request ids.
        ``subjects``: one per row (see :meth:`log`).

        Batch scoring's path: the frame's columns are encoded as they are (a numeric column is one numpy
        buffer, no dict per row) in the calling thread, and published in events of ``batch_rows`` rows
        directly -- not through the buffer, so nothing is dropped and ``on_full`` does not apply. With
        ``subjects`` (sealing per row) the rows go through :meth:`log` one by one."""
        n = len(features)
        preds = _as_list(predictions, n)
        ids = None if request_ids is None else [str(i) for i in request_ids]
        sc = _as_list(scores, n)
        subs = None if subjects is None else list(subjects)
        for name, given in (("predictions", preds), ("request_ids", ids), ("scores", sc), ("subjects", subs)):
            if given is not None and len(given) != n:
                raise ValidationError(name, len(given), f"must have one entry per row ({n})")
        if subs is not None and any(s is not None for s in subs):
            rows = features.to_dict(orient="records")
            none = [None] * n
            return [self.log(r, p, request_id=i, score=s, subject=u)
                    for r, p, i, s, u in zip(rows, preds or none, ids or none, sc or none, subs)]
        self._refuse_sensitive([str(c) for c in features.columns], "subjects= (one data subject's id per row)")
        with self._lock:
            if self._closed:
                raise ValidationError("monitor", self.deployment, "is closed")
        counters = None
        if ids is None:  # published as counters (decision 0030)
            counters = np.fromiter(itertools.islice(self._rid_counter, n), _pc.WHOLE, n)
            ids = [f"{self._rid_prefix}{c}" for c in counters.tolist()]
        sources = _frame_sources(features, preds, sc)
        for start in range(0, n, self._batch):
            end = min(n, start + self._batch)
            columns = [c for c in (source.column(start, end) for source in sources) if c is not None]
            payload = {"model": self.model, "deployment": self.deployment, "version": self.version,
                       "request_ids": [] if counters is not None else ids[start:end], "columns": columns,
                       "dropped": 0, **_pc.compact_requests(self._rid_prefix, None if counters is None else
                                                            counters[start:end], np.full(end - start, now_micros()))}
            self._seal(payload, [None] * (end - start))  # a column the policy marked since: withheld
            self._client.emitter.emit([self._client.events.make("PredictionsLogged", "monitor", self._key,
                                                                **payload)])
            with self._lock:
                self._logged += end - start
                self._sent += end - start
        return ids

    def log_labels(self, request_ids: str | Iterable[str], labels: Any) -> None:
        """Record the ground truth for earlier predictions (one label per request id)."""
        if isinstance(request_ids, str):
            request_ids, labels = [request_ids], [labels]
        ids, labs = list(request_ids), list(labels)
        if len(ids) != len(labs):
            raise ValidationError("labels", len(labs), f"must have one label per request id ({len(ids)})")
        numbers, strings = _column(labs)
        self._client.publish("LabelsLogged", "monitor", self._key, model=self.model, deployment=self.deployment,
                             request_ids=[str(i) for i in ids], numbers=numbers, strings=strings)

    # -- background batching ----------------------------------------------------------

    def _loop(self) -> None:
        while True:
            self._wake.wait(self._linger)
            self._wake.clear()
            try:
                more = self._drain()
            except BaseException as exc:  # reported on flush/close
                self._error = exc
                more = False
            with self._lock:
                if self._closed and not self._buffered:
                    return
            if more:
                self._wake.set()

    def _drain(self) -> bool:
        with self._lock:
            if self._full:
                batch = self._full.popleft()
            else:
                batch, self._tail = self._tail, []
            n = len(batch) // _FIELDS
            self._buffered -= n
            dropped, self._dropped_unreported = self._dropped_unreported, 0
            more = self._buffered > 0
            self._inflight = n or bool(dropped)  # flush waits for them (sealing takes a moment)
            self._room.notify_all()
        try:
            return self._publish(batch, dropped, more)
        finally:
            with self._lock:
                self._inflight = 0

    def _publish(self, batch: list, dropped: int, more: bool) -> bool:
        """Publish one batch (a flat list, ``_FIELDS`` values per request, as :meth:`log` appends them)."""
        if not batch and not dropped:
            return False
        payload = {"model": self.model, "deployment": self.deployment, "version": self.version,
                   "request_ids": [], "timestamps": [], "columns": [], "dropped": dropped}
        if batch:
            keys = batch[0::_FIELDS]
            generated = set(map(type, keys)) == {int}  # every id the Monitor's: counters (decision 0030)
            payload.update(_pc.compact_requests(self._rid_prefix, keys if generated else None, batch[1::_FIELDS]))
            if not generated:
                prefix = self._rid_prefix
                payload["request_ids"] = [k if type(k) is str else f"{prefix}{k}" for k in keys]
            payload["columns"] = _buffer_columns(batch[2::_FIELDS], batch[3::_FIELDS], batch[4::_FIELDS])
            self._seal(payload, batch[5::_FIELDS])
        event = self._client.events.make("PredictionsLogged", "monitor", self._key, **payload)
        self._client.emitter.emit([event])
        with self._lock:
            self._sent += len(batch) // _FIELDS
        return more

    def _seal(self, payload: dict, subjects: list[str | None]) -> None:
        """Seal the sensitive feature columns of one batch (background thread). The policy is read again (kept
        30 s by the client); when it cannot be read and a prediction names a subject, every feature column
        of the batch is sealed: what is sensitive is unknown, so nothing is published in clear."""
        policy = self._client.sealer.sensitive_features(self.model)
        if policy is not None:
            self._marked = self._explicit | policy
        marked = self._marked
        if marked is None:
            marked = ({c["name"] for c in payload["columns"] if c["role"] == "FEATURE"}
                      if any(s is not None for s in subjects) else self._explicit)
        if not marked:
            return
        payload["columns"], withheld = self._client.sealer.seal_features(
            self.model, payload["columns"], _pc.request_ids(payload), subjects, marked)
        if withheld:
            with self._lock:
                self._withheld += withheld

    def flush(self, timeout: float | None = None) -> None:
        """Publish everything buffered and wait for the broker; raises DeliveryError on failure."""
        limit = timeout or self._client.settings.flush_timeout
        deadline = time.monotonic() + limit
        while True:
            with self._lock:
                left = self._buffered
                empty = not left and not self._dropped_unreported and not self._inflight
            if empty or time.monotonic() > deadline:
                break
            self._wake.set()
            time.sleep(0.005)
        if self._error is not None:
            err, self._error = self._error, None
            raise err
        self._client.flush(timeout)
        if left:  # never silent: predictions accepted but not yet published when the time ran out
            raise DeliveryError(f"{left} prediction(s) of {self.deployment} still buffered after {limit:g}s "
                                "(the publisher did not keep up; they are sent in the background until close)",
                                [("PredictionsLogged", "timeout")])

    def close(self, timeout: float | None = None) -> None:
        try:
            self.flush(timeout)
        finally:
            with self._lock:
                self._closed = True
            self._wake.set()
            self._thread.join(timeout=5)

    def stats(self) -> dict[str, int]:
        """Counts so far: logged (accepted), sent (in batch events), dropped (buffer full), buffered, withheld
        (sensitive feature values published as missing: their prediction had no subject)."""
        with self._lock:
            return {"logged": self._logged, "sent": self._sent, "dropped": self._dropped, "buffered": self._buffered,
                    "withheld": self._withheld}

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def log_reference(model: str, version: int | None, data: pd.DataFrame, *, prediction: str | None = None,
                  label: str | None = None, kinds: Mapping[str, str] | None = None, sample_size: int | None = None,
                  client: Client | None = None) -> int:
    """Publish the reference profile of ``data`` (the training data) for ``model`` ``version``.

    ``prediction`` and ``label`` name those columns; ``kinds`` overrides inferred kinds
    ("num", "int", "cat"). Returns the number of columns profiled.
    """
    from modelog.sdk.fluent import default_client
    from modelog.drift.profile import SAMPLE_SIZE, profile_frame

    _check_name("model", model)
    if version is not None:
        try:
            _rules.version(version)
        except ValueError as exc:
            raise ValidationError("version", version, str(exc)) from None
    size = SAMPLE_SIZE if sample_size is None else sample_size
    columns = profile_frame(data, kinds=kinds, prediction=prediction, label=label, sample_size=size)
    c = client or default_client()
    c.publish("ReferenceProfileLogged", "monitor", f"monitor:{model}", model=model, version=version,
              rows=len(data), columns=columns, sample_size=size)
    return len(columns)


def configure_monitor(model: str, *, window_rows: int | None = None, window_seconds: int | None = None,
                      methods: Mapping[str, str] | None = None, thresholds: Mapping[str, float] | None = None,
                      drift_share: float = 0.5, raise_after: int = 1, resolve_after: int = 2,
                      client: Client | None = None) -> None:
    """Set how the drift processor watches ``model``: windows, per-column methods/thresholds, hysteresis."""
    from modelog.sdk.fluent import default_client
    from modelog.drift import METHODS

    _check_name("model", model)
    for field, value in (("window_rows", window_rows), ("window_seconds", window_seconds)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ValidationError(field, value, "must be a positive integer")
    for col, m in (methods or {}).items():
        if m not in METHODS:
            raise ValidationError(f"methods[{col!r}]", m, f"must be one of {', '.join(METHODS)}")
    if not 0 < drift_share <= 1:
        raise ValidationError("drift_share", drift_share, "must be in (0, 1]")
    for field, value in (("raise_after", raise_after), ("resolve_after", resolve_after)):
        if not isinstance(value, int) or value < 1:
            raise ValidationError(field, value, "must be an integer >= 1")
    c = client or default_client()
    c.publish("MonitorConfigured", "monitor", f"monitor:{model}", model=model, window_rows=window_rows,
              window_seconds=window_seconds, methods=dict(methods or {}),
              thresholds={k: float(v) for k, v in (thresholds or {}).items()}, drift_share=float(drift_share),
              raise_after=raise_after, resolve_after=resolve_after)

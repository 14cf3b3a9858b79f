"""The monitoring event family: reference profiles, production predictions and labels, monitor
configuration, drift metrics and alerts. Base tables (Arrow schemas) and event -> rows. Pure.

Predictions arrive column-wise (one event per batch); here they become one row per request with
the features as two maps (numbers, text), so SQL can join labels by request id.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from modelog.wire import prediction_columns as _pc

from .rows import Rows, add

TS = pa.timestamp("us")
_MAPD = pa.map_(pa.string(), pa.float64())
_MAPS = pa.map_(pa.string(), pa.string())
_MAPL = pa.map_(pa.string(), pa.int64())

TABLES: dict[str, pa.Schema] = {
    "log_reference_columns": pa.schema([
        ("event_id", pa.string()), ("model", pa.string()), ("version", pa.int64()), ("rows", pa.int64()),
        ("column_name", pa.string()), ("kind", pa.string()), ("role", pa.string()), ("count", pa.int64()),
        ("missing", pa.int64()), ("unique", pa.int64()), ("mean", pa.float64()), ("std", pa.float64()),
        ("edges", pa.list_(pa.float64())), ("bin_counts", pa.list_(pa.int64())), ("sample_count", pa.int64()),
        ("categories", _MAPL), ("logged_at", TS), ("actor", pa.string()),
    ]),
    "log_predictions": pa.schema([
        ("event_id", pa.string()), ("model", pa.string()), ("deployment", pa.string()), ("version", pa.int64()),
        ("request_id", pa.string()), ("timestamp", TS), ("features", _MAPD), ("feature_text", _MAPS),
        ("prediction", pa.float64()), ("prediction_text", pa.string()), ("score", pa.float64()),
    ]),
    "log_prediction_batches": pa.schema([
        ("event_id", pa.string()), ("model", pa.string()), ("deployment", pa.string()), ("rows", pa.int64()),
        ("dropped", pa.int64()), ("logged_at", TS), ("source_host", pa.string()),
    ]),
    "log_labels": pa.schema([
        ("event_id", pa.string()), ("model", pa.string()), ("deployment", pa.string()), ("request_id", pa.string()),
        ("label", pa.float64()), ("label_text", pa.string()), ("logged_at", TS),
    ]),
    "log_monitor_config": pa.schema([
        ("event_id", pa.string()), ("model", pa.string()), ("window_rows", pa.int64()), ("window_seconds", pa.int64()),
        ("methods", _MAPS), ("thresholds", _MAPD), ("drift_share", pa.float64()), ("raise_after", pa.int32()),
        ("resolve_after", pa.int32()), ("set_at", TS), ("set_by", pa.string()),
    ]),
    "log_drift_windows": pa.schema([
        ("event_id", pa.string()), ("model", pa.string()), ("deployment", pa.string()), ("version", pa.int64()),
        ("window", pa.int64()), ("window_start", TS), ("window_end", TS), ("rows", pa.int64()),
        ("dropped", pa.int64()), ("drift_share", pa.float64()), ("dataset_drift", pa.bool_()), ("measured_at", TS),
    ]),
    "log_drift_columns": pa.schema([
        ("event_id", pa.string()), ("model", pa.string()), ("deployment", pa.string()), ("window", pa.int64()),
        ("column_name", pa.string()), ("kind", pa.string()), ("role", pa.string()), ("method", pa.string()),
        ("score", pa.float64()), ("threshold", pa.float64()), ("drift", pa.bool_()), ("n_ref", pa.int64()),
        ("n_cur", pa.int64()), ("missing_ref", pa.float64()), ("missing_cur", pa.float64()),
        ("ks_stat", pa.float64()), ("ks_p", pa.float64()), ("psi", pa.float64()), ("js", pa.float64()),
        ("wasserstein_norm", pa.float64()), ("chi2_p", pa.float64()), ("unseen", pa.int64()), ("measured_at", TS),
    ]),
    "log_alerts": pa.schema([
        ("event_id", pa.string()), ("alert_id", pa.string()), ("model", pa.string()), ("deployment", pa.string()),
        ("rule", pa.string()), ("state", pa.string()), ("severity", pa.string()), ("window", pa.int64()),
        ("value", pa.float64()), ("threshold", pa.float64()), ("message", pa.string()), ("changed_at", TS),
    ]),
}
PRIMARY_KEYS: dict[str, tuple[str, ...]] = {}
VIEWS: tuple[str, ...] = ("reference_profiles", "predictions", "labels", "prediction_rates", "drift_windows",
                          "drift_metrics", "alerts", "alert_incidents", "monitor_configs", "performance")
VIEWS_SQL = "views_monitoring.sql"


def _reference(r: dict, out: Rows) -> None:
    env = r["envelope"]
    for c in r["columns"]:
        add(out, "log_reference_columns", event_id=env["event_id"], model=r["model"], version=r.get("version"),
            rows=r["rows"], column_name=c["name"], kind=c["kind"], role=c["role"], count=c["count"],
            missing=c["missing"], unique=c["unique"], mean=c.get("mean"), std=c.get("std"),
            edges=list(c.get("edges", [])), bin_counts=list(c.get("bin_counts", [])),
            sample_count=len(c.get("sample", [])), categories=list(c.get("categories", {}).items()),
            logged_at=env["occurred_at"], actor=env["actor"]["principal"])


def _predictions(r: dict, out: Rows) -> None:
    if any(_pc.is_buffer(c) for c in r["columns"]):
        _prediction_buffers(r, out)
        return
    env = r["envelope"]
    ids = r["request_ids"]
    n = len(ids)
    numbers: list[list] = [[] for _ in range(n)]
    texts: list[list] = [[] for _ in range(n)]
    prediction: list = [None] * n
    prediction_text: list = [None] * n
    score: list = [None] * n
    for col in r["columns"]:
        name, role, nums, strs = col["name"], col.get("role", "FEATURE"), col.get("numbers", []), col.get("strings", [])
        if role == "PREDICTION":
            if nums:
                prediction = list(nums)
            if strs:
                prediction_text = list(strs)
        elif role == "SCORE":
            score = list(nums)
        else:
            for i, v in enumerate(nums):
                numbers[i].append((name, v))
            for i, v in enumerate(strs):
                texts[i].append((name, v))
    cols = out["log_predictions"]
    cols["event_id"].extend([env["event_id"]] * n)
    cols["model"].extend([r["model"]] * n)
    cols["deployment"].extend([r["deployment"]] * n)
    cols["version"].extend([r.get("version")] * n)
    cols["request_id"].extend(ids)
    cols["timestamp"].extend(r["timestamps"])
    cols["features"].extend(numbers)
    cols["feature_text"].extend(texts)
    cols["prediction"].extend(prediction)
    cols["prediction_text"].extend(prediction_text)
    cols["score"].extend(score)
    add(out, "log_prediction_batches", event_id=env["event_id"], model=r["model"], deployment=r["deployment"],
        rows=n, dropped=r.get("dropped", 0), logged_at=env["occurred_at"], source_host=env["source"]["host"])


def _column_array(col: dict, n: int, text: bool) -> pa.Array | None:
    """A column's values as an Arrow array of n items (float64, or string if ``text``); None if it has none."""
    if _pc.is_buffer(col):
        a = _pc.decode(col, n)
        if isinstance(a, _pc.NumberColumn):
            if text:
                return None
            valid = pa.py_buffer(col["valid"]) if col.get("valid") else None  # Arrow's validity layout
            return pa.Array.from_buffers(pa.float64(), n, [valid, pa.py_buffer(a.values)])
        if not text:
            return None
        return pa.array(a.dictionary, pa.string()).take(pa.array(a.codes, mask=a.codes < 0))
    values = col.get("strings" if text else "numbers") or []
    return pa.array(values, pa.string() if text else pa.float64()) if values else None


def _feature_map(names: list[str], arrays: list[pa.Array], n: int, typ: pa.DataType) -> pa.Array:
    """One map per row holding every column's value of that row, in column order (nulls kept)."""
    k = len(arrays)
    offsets = pa.array(np.arange(n + 1, dtype=np.int32) * k)
    if not k:
        return pa.MapArray.from_arrays(offsets, pa.array([], pa.string()), pa.array([], typ.item_type), type=typ)
    # column-major concatenation, read row by row
    order = (np.arange(n)[:, None] + np.arange(k)[None, :] * n).ravel()
    items = pa.concat_arrays(arrays).take(pa.array(order))
    keys = pa.array(names, pa.string()).take(pa.array(np.tile(np.arange(k), n)))
    return pa.MapArray.from_arrays(offsets, keys, items, type=typ)


def _prediction_buffers(r: dict, out: Rows) -> None:
    """A batch with buffer columns (decision 0025): Arrow arrays over the event's buffers, the same rows as
    the list form gives (every numeric feature in ``features``, every text feature in ``feature_text``)."""
    env = r["envelope"]
    ids = r["request_ids"]
    n = len(ids)
    num_names, nums, text_names, texts = [], [], [], []
    prediction = prediction_text = score = None
    for col in r["columns"]:
        name, role = col["name"], col.get("role", "FEATURE")
        number, text = _column_array(col, n, False), _column_array(col, n, True)
        if role == "PREDICTION":
            prediction = number if number is not None else prediction
            prediction_text = text if text is not None else prediction_text
        elif role == "SCORE":
            score = number
        else:
            if number is not None:
                num_names.append(name)
                nums.append(number)
            if text is not None:
                text_names.append(name)
                texts.append(text)

    def same(value, typ):
        return pa.repeat(pa.scalar(value, typ), n)

    out["log_predictions"].add_batch(
        event_id=same(env["event_id"], pa.string()), model=same(r["model"], pa.string()),
        deployment=same(r["deployment"], pa.string()), version=same(r.get("version"), pa.int64()),
        request_id=pa.array(ids, pa.string()), timestamp=pa.array(r["timestamps"], pa.int64()).view(TS),
        features=_feature_map(num_names, nums, n, _MAPD), feature_text=_feature_map(text_names, texts, n, _MAPS),
        prediction=prediction, prediction_text=prediction_text, score=score)
    add(out, "log_prediction_batches", event_id=env["event_id"], model=r["model"], deployment=r["deployment"],
        rows=n, dropped=r.get("dropped", 0), logged_at=env["occurred_at"], source_host=env["source"]["host"])


def _labels(r: dict, out: Rows) -> None:
    env = r["envelope"]
    ids = r["request_ids"]
    n = len(ids)
    nums = r.get("numbers") or [None] * n
    strs = r.get("strings") or [None] * n
    cols = out["log_labels"]
    cols["event_id"].extend([env["event_id"]] * n)
    cols["model"].extend([r["model"]] * n)
    cols["deployment"].extend([r["deployment"]] * n)
    cols["request_id"].extend(ids)
    cols["label"].extend(nums)
    cols["label_text"].extend(strs)
    cols["logged_at"].extend([env["occurred_at"]] * n)


def _config(r: dict, out: Rows) -> None:
    env = r["envelope"]
    add(out, "log_monitor_config", event_id=env["event_id"], model=r["model"], window_rows=r.get("window_rows"),
        window_seconds=r.get("window_seconds"), methods=list(r.get("methods", {}).items()),
        thresholds=list(r.get("thresholds", {}).items()), drift_share=r.get("drift_share", 0.5),
        raise_after=r.get("raise_after", 1), resolve_after=r.get("resolve_after", 2), set_at=env["occurred_at"],
        set_by=env["actor"]["principal"])


def _drift(r: dict, out: Rows) -> None:
    env = r["envelope"]
    at = env["occurred_at"]
    add(out, "log_drift_windows", event_id=env["event_id"], model=r["model"], deployment=r["deployment"],
        version=r.get("version"), window=r["window"], window_start=r["window_start"], window_end=r["window_end"],
        rows=r["rows"], dropped=r.get("dropped", 0), drift_share=r["drift_share"],
        dataset_drift=r["dataset_drift"], measured_at=at)
    for c in r["columns"]:
        add(out, "log_drift_columns", event_id=env["event_id"], model=r["model"], deployment=r["deployment"],
            window=r["window"], column_name=c["column"], kind=c["kind"], role=c["role"], method=c["method"],
            score=c.get("score"), threshold=c["threshold"], drift=c["drift"], n_ref=c["n_ref"], n_cur=c["n_cur"],
            missing_ref=c.get("missing_ref"), missing_cur=c.get("missing_cur"), ks_stat=c.get("ks_stat"),
            ks_p=c.get("ks_p"), psi=c.get("psi"), js=c.get("js"), wasserstein_norm=c.get("wasserstein_norm"),
            chi2_p=c.get("chi2_p"), unseen=c.get("unseen", 0), measured_at=at)


def _alert(r: dict, out: Rows) -> None:
    env = r["envelope"]
    add(out, "log_alerts", event_id=env["event_id"], alert_id=r["alert_id"], model=r["model"],
        deployment=r["deployment"], rule=r["rule"], state=r["state"], severity=r.get("severity", "warning"),
        window=r["window"], value=r.get("value"), threshold=r.get("threshold"), message=r["message"],
        changed_at=env["occurred_at"])


PROJECTIONS = {
    "ReferenceProfileLogged": _reference,
    "PredictionsLogged": _predictions,
    "LabelsLogged": _labels,
    "MonitorConfigured": _config,
    "DriftMeasured": _drift,
    "AlertChanged": _alert,
}

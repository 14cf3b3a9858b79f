"""MLflow tracking onto modelog: experiments, runs, params, metrics, tags, searches, metric histories.

Writes reuse the REST API's own routes (``modelog.server.api.writes``): the same validation, the same
events, the token's principal as the actor. Then they wait (bounded) until the views hold them, so the
client reads its writes as it does from MLflow's stores.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from modelog.server.api import writes
from modelog.server.auth import Principal, requires
from modelog.server.filters import runs_query, next_page_token, SORT_PREFIX
from modelog.server.mlflow import search
from modelog.server.mlflow.common import (DEFAULT_EXPERIMENT, MlflowError, MlflowJSON, client, experiment_id,
                                          experiment_name, invalid, json_body, missing, ms, param, projected,
                                          refused, views)

router = APIRouter(default_response_class=MlflowJSON, include_in_schema=False)

ENDED = ("FINISHED", "FAILED", "KILLED")
NOTE = "mlflow.note.content"
MAX_RESULTS = 1000


# -- experiments ---------------------------------------------------------------------------------------------

def _experiment(row: dict[str, Any]) -> dict[str, Any]:
    eid = experiment_id(row["experiment"])
    out = {"experiment_id": eid, "name": row["experiment"], "artifact_location": f"mlflow-artifacts:/{eid}",
           "lifecycle_stage": "active", "creation_time": ms(row.get("created_at")),
           "last_update_time": ms(row.get("last_run_at") or row.get("created_at")), "tags": []}
    if row.get("description"):
        out["tags"] = [{"key": NOTE, "value": row["description"]}]
    return out


def _experiment_row(request: Request, name: str) -> dict[str, Any] | None:
    return views(request).one("SELECT experiment, description, created_at, run_count, last_run_at FROM experiments "
                              "WHERE experiment = ?", [name])


@router.post("/experiments/create")
def create_experiment(request: Request, principal: Principal = requires("write", basic=True),
                      data: dict = Depends(json_body)):
    name = param(request, data, "name")
    if data.get("artifact_location"):
        raise refused("artifact_location", "every artifact is stored in modelog's artifact store "
                      "(content-addressed) and served through /api/2.0/mlflow-artifacts")
    description = None
    for tag in data.get("tags") or []:
        if tag.get("key") != NOTE:
            raise refused("experiment tags", "modelog experiments have a name and a description "
                          f"({NOTE}) only; tag runs instead")
        description = tag.get("value")
    if _experiment_row(request, name) is not None:
        raise MlflowError("RESOURCE_ALREADY_EXISTS", f"Experiment '{name}' already exists.", 400)
    client(request, principal).create_experiment(name, description)
    projected(request, principal)
    return {"experiment_id": experiment_id(name)}


@router.get("/experiments/get")
def get_experiment(request: Request, principal: Principal = requires("read", basic=True)):
    name = experiment_name(request, param(request, {}, "experiment_id"))
    row = _experiment_row(request, name)
    if row is None:
        raise missing(f"No Experiment with id={param(request, {}, 'experiment_id')} exists")
    return {"experiment": _experiment(row)}


@router.get("/experiments/get-by-name")
def get_experiment_by_name(request: Request, principal: Principal = requires("read", basic=True)):
    name = param(request, {}, "experiment_name")
    row = _experiment_row(request, name)
    if row is None:
        raise missing(f"Could not find experiment with name '{name}'")
    return {"experiment": _experiment(row)}


@router.api_route("/experiments/search", methods=["GET", "POST"])
def search_experiments(request: Request, principal: Principal = requires("read", basic=True),
                       data: dict = Depends(json_body)):
    view_type = str(param(request, data, "view_type", False) or "ACTIVE_ONLY")
    rows = [] if view_type in ("DELETED_ONLY", "2") else views(request).rows(
        "SELECT experiment, description, created_at, run_count, last_run_at FROM experiments")
    experiments = [_experiment(r) for r in rows]
    experiments = search.filter_experiments(experiments, param(request, data, "filter", False))
    order_by = data.get("order_by") if "order_by" in data else request.query_params.getlist("order_by")
    experiments = search.order_experiments(experiments, order_by)
    page, token = search.page(experiments, param(request, data, "max_results", False),
                              param(request, data, "page_token", False))
    out: dict[str, Any] = {"experiments": page}
    if token:
        out["next_page_token"] = token
    return out


@router.post("/experiments/delete")
@router.post("/experiments/restore")
@router.post("/experiments/update")
@router.post("/experiments/set-experiment-tag")
@router.post("/experiments/delete-experiment-tag")
def experiment_changes(request: Request, principal: Principal = requires("write", basic=True)):
    raise refused(request.url.path.rsplit("/", 1)[-1].replace("-", " ") + " of an experiment",
                  "modelog experiments are immutable names in an append-only log (no delete, rename or tags)")


# -- runs ----------------------------------------------------------------------------------------------------

def _run_row(request: Request, run_id: Any) -> dict[str, Any]:
    if not isinstance(run_id, str) or not run_id:
        raise invalid("Missing value for required parameter 'run_id'")
    row = views(request).one("SELECT run_id, experiment, name, status, start_time, end_time, actor FROM runs "
                             "WHERE run_id = ?", [run_id])
    if row is None:
        raise missing(f"Run '{run_id}' not found")
    return row


def _info(row: dict[str, Any]) -> dict[str, Any]:
    eid = experiment_id(row["experiment"])
    info = {"run_id": row["run_id"], "run_uuid": row["run_id"], "run_name": row["name"], "experiment_id": eid,
            "user_id": row.get("actor") or "", "status": row["status"], "start_time": ms(row["start_time"]),
            "artifact_uri": f"mlflow-artifacts:/{eid}/{row['run_id']}/artifacts", "lifecycle_stage": "active"}
    if row.get("end_time") is not None:
        info["end_time"] = ms(row["end_time"])
    return info


DATA_SQL = ("SELECT 'params' AS kind, run_id, key, value AS text, NULL::DOUBLE AS num, NULL::BIGINT AS step, "
            "NULL::TIMESTAMP AS ts FROM params WHERE list_contains(?, run_id) "
            "UNION ALL SELECT 'metrics', run_id, key, NULL, value, step, timestamp FROM latest_metrics "
            "WHERE list_contains(?, run_id) "
            "UNION ALL SELECT 'tags', run_id, key, value, NULL, NULL, NULL FROM tags WHERE list_contains(?, run_id)")


def _runs(request: Request, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """MLflow Run objects (info and data: params, latest metrics, tags) of view rows, in one query."""
    if not rows:
        return []
    ids = [r["run_id"] for r in rows]
    data: dict[str, dict[str, list]] = {i: {"params": [], "metrics": [], "tags": []} for i in ids}
    for d in views(request).rows(DATA_SQL, [ids, ids, ids]):
        if d["kind"] == "metrics":
            data[d["run_id"]]["metrics"].append({"key": d["key"], "value": d["num"], "timestamp": ms(d["ts"]),
                                                  "step": d["step"]})
        else:
            data[d["run_id"]][d["kind"]].append({"key": d["key"], "value": d["text"]})
    for r in rows:
        tags = data[r["run_id"]]["tags"]
        if not any(t["key"] == "mlflow.runName" for t in tags):
            tags.append({"key": "mlflow.runName", "value": r["name"]})
    return [{"info": _info(r), "data": data[r["run_id"]], "inputs": {}} for r in rows]


@router.post("/runs/create")
def create_run(request: Request, principal: Principal = requires("write", basic=True),
               data: dict = Depends(json_body)):
    exp_id = data.get("experiment_id") or "0"
    name = experiment_name(request, exp_id) if str(exp_id) != "0" else DEFAULT_EXPERIMENT
    tags = {t["key"]: t.get("value", "") for t in data.get("tags") or [] if isinstance(t, dict) and "key" in t}
    run_name = data.get("run_name") or tags.get("mlflow.runName") or None
    start = data.get("start_time")
    started = writes.start_run(request, writes.RunStart(experiment=name, name=run_name, tags=tags,
                                                        start_time=int(start) * 1000 if start else None), principal)
    projected(request, principal)
    return {"run": _runs(request, [_run_row(request, started["run_id"])])[0]}


@router.get("/runs/get")
def get_run(request: Request, principal: Principal = requires("read", basic=True)):
    run_id = param(request, {}, "run_id", False) or param(request, {}, "run_uuid")
    return {"run": _runs(request, [_run_row(request, run_id)])[0]}


@router.post("/runs/update")
def update_run(request: Request, principal: Principal = requires("write", basic=True),
               data: dict = Depends(json_body)):
    row = _run_row(request, data.get("run_id") or data.get("run_uuid"))
    if data.get("run_name") and data["run_name"] != row["name"]:
        raise refused("renaming a run", "a modelog run's name is part of its RunStarted event; set a tag instead")
    status = data.get("status")
    if status in ENDED and row["status"] == "RUNNING":
        writes.end_run(request, row["run_id"], writes.RunEnd(status=status), principal)
        projected(request, principal)
        row = _run_row(request, row["run_id"])
    elif status in ENDED and row["status"] != status:
        raise MlflowError("INVALID_STATE", f"run {row['run_id']} has already ended ({row['status']})", 400)
    elif status not in (None, "RUNNING", "SCHEDULED", *ENDED):
        raise invalid(f"status: {status!r} is not a run status")
    return {"run_info": _info(row)}


@router.post("/runs/delete")
@router.post("/runs/restore")
@router.post("/runs/delete-tag")
def run_changes(request: Request, principal: Principal = requires("write", basic=True)):
    raise refused(request.url.path.rsplit("/", 1)[-1].replace("-", " ") + " of a run",
                  "the log is append-only: runs and their tags are never deleted")


def _value(raw: Any, field: str) -> float:
    if isinstance(raw, bool):
        raise invalid(f"{field}: {raw!r} is not a number")
    if isinstance(raw, (int, float)):
        return float(raw)
    try:
        return float(raw)  # protobuf JSON writes non-finite numbers as "NaN", "Infinity", "-Infinity"
    except (TypeError, ValueError):
        raise invalid(f"{field}: {raw!r} is not a number") from None


def _point(m: dict[str, Any], i: int) -> writes.Point:
    if not isinstance(m, dict) or not m.get("key"):
        raise invalid(f"metrics[{i}]: a metric needs a key")
    ts = m.get("timestamp")
    return writes.Point(key=m["key"], value=_value(m.get("value"), f"metrics[{i}].value"),
                        step=int(m.get("step") or 0), timestamp=int(ts) * 1000 if ts not in (None, "") else None)


def _log(request: Request, principal: Principal, run_id: Any, metrics: list, params: list, tags: list) -> None:
    row = _run_row(request, run_id)
    batch = writes.LogBatch(metrics=[_point(m, i) for i, m in enumerate(metrics)],
                            params={p["key"]: p.get("value", "") for p in params},
                            tags={t["key"]: t.get("value", "") for t in tags})
    if batch.metrics or batch.params or batch.tags:
        writes.log_batch(request, row["run_id"], batch, principal)
        projected(request, principal)


@router.post("/runs/log-metric")
def log_metric(request: Request, principal: Principal = requires("write", basic=True),
               data: dict = Depends(json_body)):
    for field in ("key", "value", "timestamp"):
        param(request, data, field)
    _log(request, principal, data.get("run_id") or data.get("run_uuid"), [data], [], [])
    return {}


@router.post("/runs/log-parameter")
def log_param(request: Request, principal: Principal = requires("write", basic=True),
              data: dict = Depends(json_body)):
    param(request, data, "key")
    _log(request, principal, data.get("run_id") or data.get("run_uuid"), [], [data], [])
    return {}


@router.post("/runs/set-tag")
def set_tag(request: Request, principal: Principal = requires("write", basic=True),
            data: dict = Depends(json_body)):
    param(request, data, "key")
    _log(request, principal, data.get("run_id") or data.get("run_uuid"), [], [], [data])
    return {}


@router.post("/runs/log-batch")
def log_batch(request: Request, principal: Principal = requires("write", basic=True),
              data: dict = Depends(json_body)):
    for field in ("metrics", "params", "tags"):
        if not isinstance(data.get(field) or [], list) or not all(
                isinstance(x, dict) and x.get("key") for x in data.get(field) or []):
            raise invalid(f"{field}: must be a list of objects with a key")
    _log(request, principal, data.get("run_id"), data.get("metrics") or [], data.get("params") or [],
         data.get("tags") or [])
    return {}


@router.post("/runs/search")
def search_runs(request: Request, principal: Principal = requires("read", basic=True),
                data: dict = Depends(json_body)):
    names = [experiment_name(request, e) for e in data.get("experiment_ids") or []]
    if not names:
        raise invalid("search_runs needs at least one experiment id")
    view_type = str(data.get("run_view_type") or "ACTIVE_ONLY")
    max_results = int(data.get("max_results") or MAX_RESULTS)
    if not 1 <= max_results <= 50_000:  # MLflow's own limit; pages of at most 1000 (the client follows the token)
        raise invalid(f"max_results: must be 1..50000 (got {max_results})")
    max_results = min(max_results, MAX_RESULTS)
    if view_type in ("DELETED_ONLY", "2"):
        return {"runs": []}
    where = search.runs_filter(data.get("filter") or "", names)
    order_by = search.runs_order(data.get("order_by") or [])
    sql, params = runs_query(None, where, order_by, max_results, data.get("page_token") or None)
    rows = views(request).rows(sql, params)
    token = next_page_token(rows[-1], order_by) if len(rows) == max_results else None
    for r in rows:
        for k in [k for k in r if k.startswith(SORT_PREFIX)]:
            del r[k]
    out: dict[str, Any] = {"runs": _runs(request, rows)}
    if token:
        out["next_page_token"] = token
    return out


@router.get("/metrics/get-history")
def get_metric_history(request: Request, principal: Principal = requires("read", basic=True)):
    row = _run_row(request, param(request, {}, "run_id", False) or param(request, {}, "run_uuid"))
    key = param(request, {}, "metric_key")
    max_results = int(request.query_params.get("max_results") or 25_000)
    offset = search.offset(request.query_params.get("page_token"))
    points = views(request).rows("SELECT key, value, timestamp, step FROM metrics WHERE run_id = ? AND key = ? "
                                 "ORDER BY step, timestamp LIMIT ? OFFSET ?",
                                 [row["run_id"], key, max_results + 1, offset])
    out: dict[str, Any] = {"metrics": [{**p, "timestamp": ms(p["timestamp"])} for p in points[:max_results]]}
    if len(points) > max_results:
        out["next_page_token"] = search.offset_token(offset + max_results)
    return out


@router.post("/runs/log-inputs")
def log_inputs(request: Request, principal: Principal = requires("write", basic=True)):
    raise refused("log_inputs (MLflow datasets)", "use modelog's run.log_dataset: dataset versions are "
                  "content-hashed lineage nodes there, MLflow's dataset digests cannot be mapped onto them")


@router.post("/runs/outputs")
def log_outputs(request: Request, principal: Principal = requires("write", basic=True),
                data: dict = Depends(json_body)):
    """MLflow 3 links a run to the logged models it produced; in modelog a logged model IS an artifact
    directory of its run (see logged_models), so the link is already there."""
    _run_row(request, data.get("run_id"))
    return {}


@router.get("/artifacts/list")
def list_artifacts(request: Request, principal: Principal = requires("read", basic=True)):
    from modelog.server.mlflow.artifacts import listing

    row = _run_row(request, param(request, {}, "run_id", False) or param(request, {}, "run_uuid"))
    path = (request.query_params.get("path") or "").strip("/")
    files = [{**f, "path": f"{path}/{f['path']}" if path else f["path"]} for f in listing(request, row["run_id"], path)]
    return {"root_uri": _info(row)["artifact_uri"], "files": files}


@router.post("/runs/log-model")
@router.get("/metrics/get-history-bulk-interval")
@router.post("/artifacts/presigned-upload-url")
@router.post("/artifacts/presigned-download-url")
def unmapped(request: Request, principal: Principal = requires("read", basic=True)):
    raise refused(request.url.path.split("/mlflow/", 1)[-1], "MLflow 3's client does not need it: models are "
                  "logged models, histories come from metrics/get-history, artifacts go through the proxy")

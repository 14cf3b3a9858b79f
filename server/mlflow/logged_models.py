"""MLflow 3's logged models onto modelog: a logged model is an artifact directory of its source run.

``log_model`` / autologging create a logged model, upload its files to its ``artifact_location`` and
finalize it. modelog has no separate model entity before registration, so:

* the model's id is ``m-<32 hex>``; its record (name, source run, status, model type, tags, params) is a
  run tag ``mlflow.loggedModel.<model_id>`` (a JSON value) on the source run -- an event like any other;
* its ``artifact_location`` is ``mlflow-artifacts:/<experiment_id>/<run_id>/artifacts/<name>``: the files
  land in the run's artifacts under the model's name (MLflow 2's layout: ``model/MLmodel``,
  ``model/model.pkl``), stored and checked like every artifact;
* registering ``models:/<model_id>`` registers that run and path (see registry).

A logged model without a source run has nowhere to live and is refused.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from fastapi import APIRouter, Depends, Request

from modelog.server.api import writes
from modelog.server.auth import Principal, requires
from modelog.server.mlflow.artifacts import listing
from modelog.server.mlflow.common import (MlflowJSON, experiment_id, invalid, json_body, missing, projected,
                                          refused, views)
from modelog.wire.envelope import now_micros
from modelog.wire.rules import MAX_TAG_VALUE

router = APIRouter(default_response_class=MlflowJSON, include_in_schema=False)

TAG_PREFIX = "mlflow.loggedModel."


def _record(request: Request, model_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the model's record, its run's row) or 404."""
    if not isinstance(model_id, str) or not model_id.startswith("m-"):
        raise missing(f"Logged model with ID '{model_id}' not found")
    row = views(request).one("SELECT t.run_id, t.value, r.experiment FROM tags t JOIN runs r USING (run_id) "
                             "WHERE t.key = ?", [TAG_PREFIX + model_id])
    if row is None:
        raise missing(f"Logged model with ID '{model_id}' not found")
    return json.loads(row["value"]), row


def location(experiment: str, run_id: str, name: str) -> str:
    return f"mlflow-artifacts:/{experiment_id(experiment)}/{run_id}/artifacts/{name}"


def model(model_id: str, rec: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
    info = {"model_id": model_id, "experiment_id": experiment_id(row["experiment"]), "name": rec["name"],
            "artifact_uri": location(row["experiment"], row["run_id"], rec["name"]),
            "creation_timestamp_ms": rec.get("created"), "last_updated_timestamp_ms": rec.get("updated"),
            "model_type": rec.get("model_type") or "", "source_run_id": row["run_id"],
            "status": rec.get("status", "LOGGED_MODEL_PENDING"),
            "tags": [{"key": k, "value": v} for k, v in (rec.get("tags") or {}).items()]}
    return {"info": info, "data": {"params": [{"key": k, "value": v} for k, v in (rec.get("params") or {}).items()],
                                   "metrics": []}}


def _save(request: Request, principal: Principal, run_id: str, model_id: str, rec: dict[str, Any]) -> None:
    rec = {**rec, "updated": now_micros() // 1000}
    text = json.dumps(rec, separators=(",", ":"))
    if len(text) > MAX_TAG_VALUE:  # the params are the run's too: keep the record within a tag's size
        rec["params"] = {}
        text = json.dumps(rec, separators=(",", ":"))
    writes.log_batch(request, run_id, writes.LogBatch(tags={TAG_PREFIX + model_id: text}), principal)
    projected(request, principal)


@router.post("/logged-models")
def create(request: Request, principal: Principal = requires("write", basic=True),
           data: dict = Depends(json_body)):
    run_id = data.get("source_run_id")
    if not run_id:
        raise refused("a logged model without a source run", "modelog keeps a model's files as artifacts of "
                      "the run that produced it; log the model inside a run")
    row = views(request).one("SELECT run_id, experiment FROM runs WHERE run_id = ?", [run_id])
    if row is None:
        raise missing(f"Run '{run_id}' not found")
    name = data.get("name") or "model"
    if "/" in name or name in (".", ".."):
        raise invalid(f"name: {name!r} must be one path segment")
    model_id = "m-" + uuid.uuid4().hex
    now = now_micros() // 1000
    rec = {"name": name, "status": "LOGGED_MODEL_PENDING", "model_type": data.get("model_type") or "",
           "created": now, "tags": {t["key"]: t.get("value", "") for t in data.get("tags") or []},
           "params": {p["key"]: p.get("value", "") for p in data.get("params") or []}}
    _save(request, principal, run_id, model_id, rec)
    rec, row = _record(request, model_id)
    return {"model": model(model_id, rec, row)}


@router.get("/logged-models/{model_id}")
def get(request: Request, model_id: str, principal: Principal = requires("read", basic=True)):
    rec, row = _record(request, model_id)
    return {"model": model(model_id, rec, row)}


@router.patch("/logged-models/{model_id}")
def finalize(request: Request, model_id: str, principal: Principal = requires("write", basic=True),
             data: dict = Depends(json_body)):
    rec, row = _record(request, model_id)
    status = data.get("status") or "LOGGED_MODEL_READY"
    if status not in ("LOGGED_MODEL_READY", "LOGGED_MODEL_UPLOAD_FAILED", "LOGGED_MODEL_PENDING"):
        raise invalid(f"status: {status!r} is not a logged model status")
    _save(request, principal, row["run_id"], model_id, {**rec, "status": status})
    rec, row = _record(request, model_id)
    return {"model": model(model_id, rec, row)}


@router.patch("/logged-models/{model_id}/tags")
def set_tags(request: Request, model_id: str, principal: Principal = requires("write", basic=True),
             data: dict = Depends(json_body)):
    rec, row = _record(request, model_id)
    tags = {**(rec.get("tags") or {}), **{t["key"]: t.get("value", "") for t in data.get("tags") or []}}
    _save(request, principal, row["run_id"], model_id, {**rec, "tags": tags})
    return {}


@router.delete("/logged-models/{model_id}/tags/{tag_key:path}")
def delete_tag(request: Request, model_id: str, tag_key: str,
                     principal: Principal = requires("write", basic=True)):
    rec, row = _record(request, model_id)
    tags = {k: v for k, v in (rec.get("tags") or {}).items() if k != tag_key}
    if tags != (rec.get("tags") or {}):
        _save(request, principal, row["run_id"], model_id, {**rec, "tags": tags})
    return {}


@router.post("/logged-models/{model_id}/params")
def log_params(request: Request, model_id: str, principal: Principal = requires("write", basic=True),
               data: dict = Depends(json_body)):
    rec, row = _record(request, model_id)
    params = {**(rec.get("params") or {}), **{p["key"]: p.get("value", "") for p in data.get("params") or []}}
    _save(request, principal, row["run_id"], model_id, {**rec, "params": params})
    return {}


@router.get("/logged-models/{model_id}/artifacts/directories")
def artifacts(request: Request, model_id: str, principal: Principal = requires("read", basic=True)):
    rec, row = _record(request, model_id)
    sub = request.query_params.get("artifact_directory_path") or ""
    return {"files": listing(request, row["run_id"], rec["name"] + ("/" + sub.strip("/") if sub.strip("/") else ""))}


@router.post("/logged-models/search")
def search(request: Request, principal: Principal = requires("read", basic=True),
           data: dict = Depends(json_body)):
    conds = []
    for part in re.split(r"\s+and\s+", (data.get("filter") or "").strip(), flags=re.I) if data.get("filter") else []:
        m = _COND.fullmatch(part)
        if m is None:
            raise refused(f"the logged model filter {part!r}", "modelog's gateway filters logged models by name, "
                          "model_id, source_run_id and status with = or !=")
        conds.append((m.group(1).lower(), m.group(2), m.group(3)[1:-1].replace(m.group(3)[0] * 2, m.group(3)[0])))
    ids = [str(e) for e in data.get("experiment_ids") or []]
    rows = views(request).rows("SELECT t.run_id, t.key, t.value, r.experiment FROM tags t JOIN runs r USING (run_id) "
                               "WHERE starts_with(t.key, ?) ORDER BY t.set_at DESC", [TAG_PREFIX])
    models = [model(r["key"][len(TAG_PREFIX):], json.loads(r["value"]), r) for r in rows
              if not ids or experiment_id(r["experiment"]) in ids]
    models = [m for m in models if all((str(m["info"].get(k)) == v) == (op == "=") for k, op, v in conds)]
    return {"models": models[: int(data.get("max_results") or 100)]}


_COND = re.compile(r"\s*(?:attributes\.)?(name|model_id|source_run_id|status)\s*(=|!=)\s*"
                   r"('(?:[^']|'')*'|\"(?:[^\"]|\"\")*\")\s*", re.I)


@router.delete("/logged-models/{model_id}")
def delete(request: Request, model_id: str, principal: Principal = requires("write", basic=True)):
    raise refused("deleting a logged model", "its files are artifacts of its run, kept by the append-only log")


def find(request: Request, model_id: str) -> tuple[str, str]:
    """(run_id, artifact path) of a logged model (for registering ``models:/<model_id>``)."""
    rec, row = _record(request, model_id)
    return row["run_id"], rec["name"]


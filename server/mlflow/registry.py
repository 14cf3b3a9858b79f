"""MLflow's model registry onto modelog's governed registry.

* ``create_model_version`` registers a version (``ModelVersionRegistered``; the processor numbers it);
  its ``source`` (``models:/<model_id>``, ``runs:/<run_id>/<path>``, ``mlflow-artifacts:/.../<run_id>/
  artifacts/<path>``) becomes the version's run and artifact, any other URI its ``uri``.
* aliases and stage transitions are **change requests** (``ChangeRequested``) that the processor decides
  under the policy, as ``modelog model alias`` / ``promote`` are. The gateway waits briefly for the
  decision: APPROVED answers as MLflow does; REJECTED is ``403 PERMISSION_DENIED`` with the rule that
  said no; still PENDING (an approval is required) is ``409 ABORTED`` naming the request to approve.
* a registered model exists in modelog once it has a version: ``create_registered_model`` of a new name
  records its description and tags (``ModelAnnotated``) and succeeds; of a model with versions it is
  ``RESOURCE_ALREADY_EXISTS`` (what ``mlflow.register_model`` expects).

Stages: MLflow ``None`` / ``Staging`` / ``Production`` / ``Archived`` are modelog's development / staging /
production / archived (modelog's ``deprecated`` shows as ``Archived``).
"""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi import APIRouter, Depends, Request

from modelog.server.api.registry import RegisterVersion, register_version
from modelog.server.auth import Principal, requires
from modelog.server.mlflow import logged_models
from modelog.server.mlflow.common import (MlflowError, MlflowJSON, client, invalid, json_body, missing, ms, param,
                                          projected, refused, views)
from modelog.server.mlflow.search import offset, offset_token
from modelog.wire import rules as _rules
from modelog.wire.errors import QueryError, ValidationError

router = APIRouter(default_response_class=MlflowJSON, include_in_schema=False)

DECISION_WAIT = 10.0
TO_MLFLOW = {"development": "None", "staging": "Staging", "production": "Production", "deprecated": "Archived",
             "archived": "Archived"}
FROM_MLFLOW = {"none": ("PROMOTE", "development"), "staging": ("PROMOTE", "staging"),
               "production": ("PROMOTE", "production"), "archived": ("ARCHIVE", None)}
VERSION_SQL = ("SELECT v.model, v.version, v.stage, v.aliases, v.run_id, v.artifact, v.uri, v.description, "
               "v.registered_at, v.registered_by, v.stage_since, r.experiment FROM model_versions v "
               "LEFT JOIN runs r USING (run_id)")


def _version(row: dict[str, Any], tags: dict[str, str] | None = None) -> dict[str, Any]:
    if row.get("run_id") and row.get("artifact"):
        source = logged_models.location(row["experiment"] or "default", row["run_id"], row["artifact"])
    else:
        source = row.get("uri") or ""
    out = {"name": row["model"], "version": str(row["version"]), "creation_timestamp": ms(row["registered_at"]),
           "last_updated_timestamp": ms(max(t for t in (row["registered_at"], row["stage_since"]) if t is not None)),
           "user_id": row.get("registered_by") or "", "current_stage": TO_MLFLOW.get(row["stage"], "None"),
           "description": row.get("description") or "", "source": source, "run_id": row.get("run_id") or "",
           "status": "READY", "tags": [{"key": k, "value": v} for k, v in (tags or {}).items()],
           "aliases": list(row.get("aliases") or [])}
    return out


def _tags(request: Request, model: str, version: int | None) -> dict[str, str]:
    rows = views(request).rows("SELECT key, value FROM model_annotations WHERE model = ? AND kind = 'tag' AND "
                               + ("version = ?" if version is not None else "version IS NULL"),
                               [model, version] if version is not None else [model])
    return {r["key"]: r["value"] for r in rows}


def _one_version(request: Request, name: str, version: Any) -> dict[str, Any]:
    try:
        number = int(version)
    except (TypeError, ValueError):
        raise invalid(f"version: {version!r} is not a version number") from None
    row = views(request).one(VERSION_SQL + " WHERE v.model = ? AND v.version = ?", [name, number])
    if row is None:
        raise missing(f"Model Version (name={name}, version={version}) not found")
    return row


def _registered(request: Request, name: str) -> dict[str, Any]:
    row = views(request).one("SELECT model, description, created_at, updated_at, aliases FROM models "
                             "WHERE model = ?", [name])
    if row is None:
        raise missing(f"Registered Model with name={name} not found")
    versions = views(request).rows(VERSION_SQL + " WHERE v.model = ? ORDER BY v.version", [name])
    latest: dict[str, dict[str, Any]] = {}
    for v in versions:
        latest[TO_MLFLOW.get(v["stage"], "None")] = _version(v)
    aliases = []
    for a in row.get("aliases") or []:
        alias, _, version = a.rpartition("=")
        aliases.append({"alias": alias, "version": version})
    return {"name": name, "creation_timestamp": ms(row["created_at"]), "last_updated_timestamp": ms(row["updated_at"]),
            "description": row.get("description") or "", "latest_versions": list(latest.values()),
            "tags": [{"key": k, "value": v} for k, v in _tags(request, name, None).items()], "aliases": aliases}


def _name(request: Request, data: dict[str, Any]) -> str:
    return str(param(request, data, "name"))


# -- registered models -------------------------------------------------------------------------------------

@router.post("/registered-models/create")
def create_registered_model(request: Request, principal: Principal = requires("registry", basic=True),
                            data: dict = Depends(json_body)):
    name = _name(request, data)
    if views(request).one("SELECT 1 AS x FROM registered_versions WHERE model = ? LIMIT 1", [name]) is not None:
        raise MlflowError("RESOURCE_ALREADY_EXISTS", f"Registered Model (name={name}) already exists.", 400)
    tags = {t["key"]: t.get("value", "") for t in data.get("tags") or []}
    description = data.get("description") or None
    if tags or description:
        client(request, principal).registry.annotate(name, description=description, tags=tags)
        projected(request, principal)
    else:
        try:
            _rules.name(name)
        except ValueError as exc:
            raise ValidationError("name", name, str(exc)) from None
    return {"registered_model": {"name": name, "description": description or "",
                                 "tags": [{"key": k, "value": v} for k, v in tags.items()]}}


@router.get("/registered-models/get")
def get_registered_model(request: Request, principal: Principal = requires("read", basic=True)):
    return {"registered_model": _registered(request, _name(request, {}))}


@router.get("/registered-models/search")
def search_registered_models(request: Request, principal: Principal = requires("read", basic=True)):
    text = request.query_params.get("filter") or ""
    names = [r["model"] for r in views(request).rows("SELECT model FROM models ORDER BY model")]
    for part in re.split(r"\s+and\s+", text.strip(), flags=re.I) if text.strip() else []:
        names = _filter_models(request, names, part)
    start = offset(request.query_params.get("page_token"))
    size = int(request.query_params.get("max_results") or 100)
    out: dict[str, Any] = {"registered_models": [_registered(request, n) for n in names[start:start + size]]}
    if start + size < len(names):
        out["next_page_token"] = offset_token(start + size)
    return out


_RM_COND = re.compile(r"\s*(name|tags?\.(?:`(?:[^`]|``)+`|[\w.]+))\s*(=|!=|LIKE|ILIKE)\s*'((?:[^']|'')*)'\s*", re.I)


def _filter_models(request: Request, names: list[str], condition: str) -> list[str]:
    """The names that meet one condition: ``name`` (= != LIKE ILIKE) or a model tag (= !=; a missing tag is
    unequal to every value, so the client's own ``tag.`mlflow.prompt.is_prompt` != 'true'`` keeps them all)."""
    m = _RM_COND.fullmatch(condition)
    if m is None:
        raise invalid(f"Invalid filter '{condition}': modelog's gateway filters registered models by name "
                      "(= != LIKE ILIKE) and tags (= !=)")
    field, op, value = m.group(1), m.group(2).upper(), m.group(3).replace("''", "'")
    if field.lower() == "name":
        have = {n: n for n in names}
    else:
        key = field.split(".", 1)[1].strip("`").replace("``", "`")
        if op not in ("=", "!="):
            raise invalid(f"Invalid filter '{condition}': tags compare with = or !=")
        have = {n: _tags(request, n, None).get(key) for n in names}
    rx = re.compile("^" + re.escape(value).replace("%", ".*").replace("_", ".") + "$", re.I if op == "ILIKE" else 0)
    keep = {"=": lambda v: v == value, "!=": lambda v: v != value,
            "LIKE": lambda v: v is not None and bool(rx.match(v))}
    keep["ILIKE"] = keep["LIKE"]
    return [n for n in names if keep[op](have[n])]


@router.post("/registered-models/get-latest-versions")
def get_latest_versions(request: Request, principal: Principal = requires("read", basic=True),
                        data: dict = Depends(json_body)):
    model = _registered(request, _name(request, data))
    stages = {s.lower() for s in data.get("stages") or []}
    return {"model_versions": [v for v in model["latest_versions"]
                               if not stages or v["current_stage"].lower() in stages]}


# -- versions ------------------------------------------------------------------------------------------------

def _source(request: Request, source: str, run_id: str | None, model_id: str | None) -> dict[str, Any]:
    """The version's run_id / artifact / uri from MLflow's source, run_id and model_id."""
    if model_id or source.startswith("models:/m-"):
        rid, path = logged_models.find(request, model_id or source[len("models:/"):].split("/")[0])
        return {"run_id": rid, "artifact": path}
    m = re.fullmatch(r"runs:/([^/]+)/(.+)", source) or re.fullmatch(
        r"mlflow-artifacts:/+[^/]+/([^/]+)/artifacts/(.+)", source)
    if m:
        return {"run_id": m.group(1), "artifact": m.group(2).strip("/")}
    return {"run_id": run_id or None, "uri": source or None}


@router.post("/model-versions/create")
def create_model_version(request: Request, principal: Principal = requires("registry", basic=True),
                         data: dict = Depends(json_body)):
    name = _name(request, data)
    where = _source(request, str(data.get("source") or ""), data.get("run_id"), data.get("model_id"))
    tags = {t["key"]: t.get("value", "") for t in data.get("tags") or []}
    resp = register_version(request, name, RegisterVersion(**where, description=data.get("description") or None,
                                                           tags=tags), principal)
    version = json.loads(resp.body)["version"]
    return {"model_version": _version(_one_version(request, name, version), tags)}


@router.get("/model-versions/get")
def get_model_version(request: Request, principal: Principal = requires("read", basic=True)):
    name = _name(request, {})
    version = param(request, {}, "version")
    row = _one_version(request, name, version)
    return {"model_version": _version(row, _tags(request, name, row["version"]))}


@router.get("/model-versions/get-download-uri")
def get_download_uri(request: Request, principal: Principal = requires("read", basic=True)):
    row = _one_version(request, _name(request, {}), param(request, {}, "version"))
    return {"artifact_uri": _version(row)["source"]}


_MV_COND = re.compile(r"\s*(name|run_id|version_number|source_path)\s*(=|!=|LIKE|ILIKE|IN)\s*"
                      r"('(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\d+|\((?:[^)]*)\))\s*", re.I)
_MV_COLUMN = {"name": "v.model", "run_id": "v.run_id", "version_number": "v.version", "source_path": "v.artifact"}


@router.get("/model-versions/search")
def search_model_versions(request: Request, principal: Principal = requires("read", basic=True)):
    text = request.query_params.get("filter") or ""
    where, params = [], []
    if text.strip():
        for part in re.split(r"\s+and\s+", text.strip(), flags=re.I):
            m = _MV_COND.fullmatch(part)
            if m is None:
                raise invalid(f"Invalid filter '{part}': modelog's gateway searches model versions by name, "
                              "run_id, version_number and source_path with = != LIKE ILIKE IN")
            column, op, value = _MV_COLUMN[m.group(1).lower()], m.group(2).upper(), m.group(3)
            if op == "IN":
                values = [v.strip().strip("'\"") for v in value.strip("()").split(",") if v.strip()]
                where.append(f"CAST({column} AS VARCHAR) IN ({', '.join('?' for _ in values)})")
                params.extend(values)
            else:
                where.append(f"CAST({column} AS VARCHAR) {'<>' if op == '!=' else op} ?")
                params.append(value.strip("'\"").replace("''", "'"))
    sql = VERSION_SQL + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY v.model, v.version DESC"
    rows = views(request).rows(sql, params)
    start = offset(request.query_params.get("page_token"))
    size = int(request.query_params.get("max_results") or 10_000)
    out: dict[str, Any] = {"model_versions": [_version(r) for r in rows[start:start + size]]}
    if start + size < len(rows):
        out["next_page_token"] = offset_token(start + size)
    return out


def _decided(request: Request, principal: Principal, name: str, action: str, **kw: Any) -> None:
    """Publish a change request and wait for the processor's decision; refused or pending is an error."""
    registry = client(request, principal).registry
    try:
        st = registry.request(name, action, wait=True, timeout=DECISION_WAIT, **kw)
    except QueryError as exc:
        raise MlflowError("TEMPORARILY_UNAVAILABLE", f"the decision was not projected in time: {exc}", 503) from None
    if st.status == "REJECTED":
        raise MlflowError("PERMISSION_DENIED", f"modelog's policy rejected the {action} request {st.request_id}: "
                          f"{st.reason}", 403)
    if st.status == "PENDING":
        raise MlflowError("ABORTED", f"PENDING: the {action} request {st.request_id} awaits approval under "
                          f"modelog's policy and takes effect once approved (modelog requests approve "
                          f"{st.request_id})", 409)
    projected(request, principal)


@router.post("/model-versions/transition-stage")
def transition_stage(request: Request, principal: Principal = requires("registry", basic=True),
                     data: dict = Depends(json_body)):
    name = _name(request, data)
    row = _one_version(request, name, param(request, data, "version"))
    stage = str(param(request, data, "stage"))
    if str(data.get("archive_existing_versions")).lower() == "true":
        raise refused("archive_existing_versions", "each archive is a change request the policy decides: "
                      "transition those versions to Archived one by one")
    if stage.lower() not in FROM_MLFLOW:
        raise invalid(f"stage: {stage!r} must be one of None, Staging, Production, Archived")
    action, to = FROM_MLFLOW[stage.lower()]
    _decided(request, principal, name, action, version=row["version"], stage=to)
    return {"model_version": _version(_one_version(request, name, row["version"]))}


@router.post("/registered-models/alias")
def set_alias(request: Request, principal: Principal = requires("registry", basic=True),
              data: dict = Depends(json_body)):
    name = _name(request, data)
    row = _one_version(request, name, param(request, data, "version"))
    _decided(request, principal, name, "SET_ALIAS", version=row["version"], alias=param(request, data, "alias"))
    return {}


@router.delete("/registered-models/alias")
def delete_alias(request: Request, principal: Principal = requires("registry", basic=True),
                 data: dict = Depends(json_body)):
    name = _name(request, data)
    _decided(request, principal, name, "REMOVE_ALIAS", alias=param(request, data, "alias"))
    return {}


@router.get("/registered-models/alias")
def get_by_alias(request: Request, principal: Principal = requires("read", basic=True)):
    name = _name(request, {})
    alias = param(request, {}, "alias")
    row = views(request).one(VERSION_SQL + " WHERE v.model = ? AND list_contains(v.aliases, ?)", [name, alias])
    if row is None:
        raise missing(f"Registered model alias {alias} not found.")
    return {"model_version": _version(row, _tags(request, name, row["version"]))}


@router.post("/registered-models/rename")
@router.patch("/registered-models/update")
@router.delete("/registered-models/delete")
@router.post("/registered-models/set-tag")
@router.delete("/registered-models/delete-tag")
@router.patch("/model-versions/update")
@router.delete("/model-versions/delete")
@router.post("/model-versions/set-tag")
@router.delete("/model-versions/delete-tag")
def unmapped(request: Request, principal: Principal = requires("registry", basic=True)):
    raise refused(request.url.path.split("/mlflow/", 1)[-1], "use modelog's registry verbs (modelog model "
                  "annotate | delete-version | delete): deletions are governed requests, renames do not exist")

"""What the MLflow gateway's routers share: errors in MLflow's shape, ids, times, JSON, prefixes.

MLflow ids onto modelog's:

* **runs**: a modelog run id (32 hex characters, like MLflow's) is the MLflow ``run_id`` unchanged.
* **experiments**: modelog experiments are names. An MLflow ``experiment_id`` is derived from the name
  (:func:`experiment_id`: the first 48 bits of its sha256, in decimal), so it is stable, needs no
  state, and is found back by hashing the names in the ``experiments`` view. modelog's ``default``
  experiment is MLflow's ``"0"`` (the experiment the client uses when none is set).
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import datetime, timezone
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from modelog.server.problems import Problem
from modelog.wire.errors import QueryError
from modelog.server.views import views_for

PREFIXES = ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow")
ARTIFACTS_PREFIX = "/api/2.0/mlflow-artifacts"
DEFAULT_EXPERIMENT = "default"
PROJECTION_WAIT = 15.0  # seconds a write waits for the views to hold it (read-your-writes, as MLflow's stores)

# HTTP status -> MLflow error code (mlflow/protos/databricks.proto), for errors the server raises as problems
CODES = {400: "INVALID_PARAMETER_VALUE", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
         404: "RESOURCE_DOES_NOT_EXIST", 405: "ENDPOINT_NOT_FOUND", 409: "INVALID_STATE",
         413: "INVALID_PARAMETER_VALUE",
         422: "INVALID_PARAMETER_VALUE", 501: "NOT_IMPLEMENTED", 502: "TEMPORARILY_UNAVAILABLE",
         503: "TEMPORARILY_UNAVAILABLE", 504: "TEMPORARILY_UNAVAILABLE"}


class MlflowError(Problem):
    """An error answered as MLflow answers it: ``{"error_code": ..., "message": ...}`` with its status."""

    def __init__(self, error_code: str, message: str, status: int = 400) -> None:
        super().__init__(status, error_code, message, "mlflow", error_code=error_code)


def invalid(message: str) -> MlflowError:
    return MlflowError("INVALID_PARAMETER_VALUE", message, 400)


def missing(message: str) -> MlflowError:
    return MlflowError("RESOURCE_DOES_NOT_EXIST", message, 404)


def refused(what: str, why: str) -> MlflowError:
    """What MLflow has and modelog cannot map (docs/mlflow.md lists each)."""
    return MlflowError("NOT_IMPLEMENTED", f"{what} is not supported by modelog's MLflow gateway: {why}", 501)


def is_gateway(path: str) -> bool:
    return path.startswith(PREFIXES) or path.startswith(ARTIFACTS_PREFIX)


def error_body(status: int, message: str, error_code: str | None = None) -> dict[str, str]:
    return {"error_code": error_code or CODES.get(status, "INTERNAL_ERROR" if status >= 500 else
                                                   "INVALID_PARAMETER_VALUE"), "message": message}


def _proto_json(value: Any) -> Any:
    """Non-finite floats as protobuf's JSON writes them ("NaN", "Infinity", "-Infinity"); times as ms."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: _proto_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_proto_json(v) for v in value]
    return value


class MlflowJSON(JSONResponse):
    def render(self, content: Any) -> bytes:
        return json.dumps(_proto_json(content), ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


# -- ids -----------------------------------------------------------------------------------------------------

def experiment_id(name: str) -> str:
    if name == DEFAULT_EXPERIMENT:
        return "0"
    return str(int.from_bytes(hashlib.sha256(name.encode()).digest()[:6], "big"))


def experiment_name(request: Request, exp_id: Any, field: str = "experiment_id") -> str:
    """The modelog experiment of an MLflow experiment id (404 if no experiment has it)."""
    exp_id = str(exp_id or "").strip()
    if not exp_id:
        raise invalid(f"Missing value for required parameter '{field}'")
    if exp_id == "0":
        return DEFAULT_EXPERIMENT
    for row in views(request).rows("SELECT experiment FROM experiments"):
        if experiment_id(row["experiment"]) == exp_id:
            return row["experiment"]
    raise missing(f"No Experiment with id={exp_id} exists")


# -- times ---------------------------------------------------------------------------------------------------

def ms(value: Any) -> int | None:
    """A view's time (naive UTC datetime) as MLflow's milliseconds since the epoch."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return int(value.timestamp() * 1000)
    return int(value)


def iso_from_ms(value: Any, field: str) -> str:
    try:
        return datetime.fromtimestamp(float(value) / 1000, timezone.utc).isoformat()
    except (TypeError, ValueError, OverflowError, OSError):
        raise invalid(f"{field}: {value!r} is not a time in milliseconds since the epoch") from None


# -- app state -------------------------------------------------------------------------------------------------

def views(request: Request):
    return views_for(request)  # scoped to the caller (decision 0022)


def client(request: Request, principal):
    return request.app.state.publisher.client(principal.name)


def projected(request: Request, principal) -> None:
    """Read-your-writes, as MLflow's stores give it: wait (bounded) until the views hold what was published.
    What was published is durable either way; a slow processor only delays when reads show it."""
    try:
        client(request, principal).wait_projected(PROJECTION_WAIT)
    except QueryError:
        pass


def body_of(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise invalid("the request body must be a JSON object")
    return data


async def json_body(request: Request) -> dict[str, Any]:
    """The JSON body of a POST / PATCH / DELETE as a dict ({} when empty or a GET): a route dependency, so that
    the route itself is a plain function FastAPI runs in its threadpool (publishing and waiting block)."""
    if request.method in ("GET", "HEAD"):
        return {}
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        return body_of(json.loads(raw))
    except ValueError:
        raise invalid("the request body must be JSON") from None


def param(request: Request, data: dict[str, Any], name: str, required: bool = True) -> Any:
    """A request parameter from the JSON body (POST/PATCH/DELETE) or the query string (GET)."""
    value = data.get(name)
    if value is None:
        value = request.query_params.get(name)
    if required and (value is None or value == ""):
        raise invalid(f"Missing value for required parameter '{name}'")
    return value

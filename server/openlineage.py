"""OpenLineage (spec 2-0-x) into modelog's lineage: RunEvent, DatasetEvent and JobEvent JSON.

Validation: the ``openlineage-python`` package does not ship the spec's ``OpenLineage.json``, so the
event is checked against pydantic models of the spec's structure and required fields (below): the
event kinds, ``eventTime`` (ISO 8601 date-time), ``producer`` and ``schemaURL`` (URIs; the schema URL
must name spec 2-0-x), ``eventType`` (START, RUNNING, COMPLETE, ABORT, FAIL, OTHER), ``run.runId`` (a
UUID), ``job`` and datasets' ``namespace`` and ``name``, and every facet's ``_producer`` and
``_schemaURL``. Other properties are allowed, as the spec allows them, and kept.

Mapping (docs/openlineage.md):

* a run ``runId`` (a UUID) is the node ``run:<the UUID's 32 hex digits>`` -- the form of modelog's
  own run ids, so an OpenLineage run is a run node of the graph;
* a dataset ``(namespace, name)`` is the modelog dataset ``<namespace>/<name>``; its version is
  ``sha256("modelog-openlineage-v1\\0" + v)`` where ``v`` is the version facet's ``datasetVersion``,
  else ``"latest"`` (:func:`dataset_version`): a content-free version, the same for every mention;
* a RunEvent publishes a ``DatasetVersionLogged`` per input and output, ``input --consumed--> run``
  and ``run --produced--> output`` (``LineageRecorded``); a JobEvent (no run) publishes
  ``input --derived--> output`` for every pair; a DatasetEvent its dataset version only;
* facets are kept as JSON text in the events' ``facets`` field: a dataset's own facets on its
  ``DatasetVersionLogged``, the job's, the run's and the input/output facets on each edge.
"""

from __future__ import annotations

import hashlib
import json
import re
import urllib.parse
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator
from pydantic import ValidationError as PydanticError

from modelog.sdk.datasets import lineage_event
from modelog.wire import rules as _rules
from modelog.wire.envelope import Event
from modelog.wire.errors import ValidationError
from modelog.wire.models import validate

MEDIA_TYPE = "application/x-openlineage-dataset"
VERSION_PREFIX = b"modelog-openlineage-v1\0"
LATEST = "latest"
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:\S*")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_SPEC = re.compile(r"/spec/2-0-\d+/OpenLineage\.json")
URI_RULE = "must be a URI with a scheme"


def _uri(value: str) -> str:
    if not _URI.fullmatch(value):
        raise ValueError(URI_RULE)
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=False)


class Facet(_Model):
    """Every facet (run, job, dataset, input, output) extends the spec's BaseFacet."""

    producer: StrictStr = Field(alias="_producer")
    schema_url: StrictStr = Field(alias="_schemaURL")

    @field_validator("producer", "schema_url")
    @classmethod
    def _uris(cls, value: str) -> str:
        return _uri(value)


Facets = dict[str, Facet]


class Run(_Model):
    runId: StrictStr  # noqa: N815  (the spec's names)
    facets: Facets | None = None

    @field_validator("runId")
    @classmethod
    def _uuid(cls, value: str) -> str:
        if not _UUID.fullmatch(value):
            raise ValueError("must be a UUID (8-4-4-4-12 hex digits)")
        return value


class Job(_Model):
    namespace: StrictStr
    name: StrictStr
    facets: Facets | None = None


class Dataset(_Model):
    namespace: StrictStr
    name: StrictStr
    facets: Facets | None = None


class InputDataset(Dataset):
    inputFacets: Facets | None = None  # noqa: N815


class OutputDataset(Dataset):
    outputFacets: Facets | None = None  # noqa: N815


class BaseEvent(_Model):
    eventTime: StrictStr  # noqa: N815
    producer: StrictStr
    schemaURL: StrictStr  # noqa: N815

    @field_validator("eventTime")
    @classmethod
    def _time(cls, value: str) -> str:
        try:
            datetime.fromisoformat(value.replace("z", "Z"))
        except ValueError:
            raise ValueError("must be an ISO 8601 date-time, e.g. 2026-11-30T06:00:00.000Z") from None
        if "t" not in value.lower():
            raise ValueError("must be an ISO 8601 date-time with a time, e.g. 2026-11-30T06:00:00.000Z")
        return value

    @field_validator("producer")
    @classmethod
    def _producer(cls, value: str) -> str:
        return _uri(value)

    @field_validator("schemaURL")
    @classmethod
    def _schema(cls, value: str) -> str:
        _uri(value)
        if not _SPEC.search(value):
            raise ValueError("must name the OpenLineage spec 2-0-x, e.g. "
                             "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent")
        return value


class RunEvent(BaseEvent):
    eventType: Literal["START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"] | None = None  # noqa: N815
    run: Run
    job: Job
    inputs: list[InputDataset] | None = None
    outputs: list[OutputDataset] | None = None


class JobEvent(BaseEvent):
    job: Job
    inputs: list[InputDataset] | None = None
    outputs: list[OutputDataset] | None = None


class DatasetEvent(BaseEvent):
    dataset: Dataset


KINDS = "a RunEvent (run and job), a DatasetEvent (dataset) or a JobEvent (job)"


def parse(data: Any) -> RunEvent | JobEvent | DatasetEvent:
    """The OpenLineage event in ``data`` (decoded JSON), validated; raises ValidationError naming the
    field (a path like ``inputs[0].facets.schema._producer``) and the rule."""
    if not isinstance(data, dict):
        raise ValidationError("body", data, f"must be an OpenLineage event object: {KINDS}")
    if "run" in data:
        model: type[BaseEvent] = RunEvent
    elif "dataset" in data:
        model = DatasetEvent
    elif "job" in data:
        model = JobEvent
    else:
        raise ValidationError("run", None, f"is required: the body must be {KINDS}")
    try:
        return model.model_validate(data)
    except PydanticError as exc:
        first = exc.errors()[0]
        field = _path(first["loc"])
        rule = first["msg"].removeprefix("Value error, ")
        if first["type"] == "missing":
            rule = f"is required ({model.__name__}, OpenLineage spec 2-0-x)"
        raise ValidationError(field, first.get("input"), rule) from None


def _path(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# -- mapping -------------------------------------------------------------------------

def dataset_version(version: str | None) -> str:
    """The modelog version (64 hex digits) of an OpenLineage dataset version (None: unversioned, "latest")."""
    return hashlib.sha256(VERSION_PREFIX + (LATEST if version is None else version).encode()).hexdigest()


def dataset_name(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


def dataset_node(namespace: str, name: str, version: str | None = None) -> str:
    """``dataset:<namespace>/<name>@<modelog version>`` of an OpenLineage dataset."""
    return f"dataset:{dataset_name(namespace, name)}@{dataset_version(version)}"


def run_node(run_id: str) -> str:
    """``run:<32 hex digits>`` of an OpenLineage runId (a UUID)."""
    return "run:" + run_id.replace("-", "").lower()


def _raw(facets: Facets | None) -> dict[str, Any]:
    return {k: v.model_dump(by_alias=True) for k, v in (facets or {}).items()}


def _json(value: dict[str, Any], field: str) -> str:
    text = json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)
    try:
        _rules.facets_json(text)
    except ValueError as exc:
        raise ValidationError(field, f"<{len(text)} characters>", str(exc)) from None
    return text


def _uri_of(namespace: str, name: str) -> str:
    safe = ":/@!$&'()*+,;=?#[]~%"
    if "://" in namespace:
        text = namespace.rstrip("/") + "/" + name.lstrip("/")
    else:
        text = "openlineage:" + namespace + "/" + name
    return urllib.parse.quote(text, safe=safe)


def _dataset_facet(ds: Dataset, key: str) -> dict[str, Any] | None:
    facet = (ds.facets or {}).get(key)
    return facet.model_dump(by_alias=True) if facet is not None else None


def _dataset_event(client: Any, ds: Dataset, where: str) -> tuple[str, Event]:
    name = dataset_name(ds.namespace, ds.name)
    try:
        _rules.name(name)
    except ValueError as exc:
        raise ValidationError(f"{where}.name", name, f"<namespace>/<name> {exc}") from None
    version_facet = _dataset_facet(ds, "version") or {}
    ol_version = version_facet.get("datasetVersion")
    if ol_version is not None and not isinstance(ol_version, str):
        raise ValidationError(f"{where}.facets.version.datasetVersion", ol_version, "must be a string")
    columns = []
    for i, f in enumerate((_dataset_facet(ds, "schema") or {}).get("fields") or []):
        if not isinstance(f, dict) or not isinstance(f.get("name"), str):
            raise ValidationError(f"{where}.facets.schema.fields[{i}].name", f, "is required: a string")
        columns.append({"name": f["name"], "type": str(f.get("type") or "")})
    stats = (getattr(ds, "outputFacets", None) or {}).get("outputStatistics")
    stats = stats.model_dump(by_alias=True) if stats is not None else {}
    row_count, size = stats.get("rowCount"), stats.get("size")
    doc = _dataset_facet(ds, "documentation") or {}
    facets = {"namespace": ds.namespace, "name": ds.name, "version": ol_version, "facets": _raw(ds.facets)}
    _refuse_sensitive(client, name, where)
    event = client.events.make(
        "DatasetVersionLogged", "dataset", f"dataset:{name}", dataset=name, version=dataset_version(ol_version),
        uri=_uri_of(ds.namespace, ds.name), columns=columns,
        row_count=row_count if isinstance(row_count, int) and not isinstance(row_count, bool) else None,
        size_bytes=size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else 0,
        media_type=MEDIA_TYPE, description=doc.get("description") if isinstance(doc.get("description"), str) else None,
        tags={}, derived_from=[], facets=_json(facets, f"{where}.facets"))
    try:
        validate("DatasetVersionLogged", event.record)
    except ValidationError as exc:
        raise ValidationError(f"{where} -> DatasetVersionLogged.{exc.field}", exc.value, exc.rule) from None
    return f"dataset:{name}@{dataset_version(ol_version)}", event


def _refuse_sensitive(client: Any, name: str, where: str) -> None:
    """A dataset the policy marks sensitive (``--sensitive-dataset``) is refused: an OpenLineage event names
    no data subject to seal its URI and facets for, and its name is the URI's text (decision 0018)."""
    policy = client.sealer.policy() if hasattr(client, "sealer") else None
    if policy and ("dataset", name) in policy:
        raise ValidationError(f"{where}.name", name, "is a dataset whose URIs are personal data (policy "
                                                     "sensitive_fields): OpenLineage events name no data subject to "
                                                     "seal them for; log it with the SDK in a run with a subject")


def _edge_facets(ev: RunEvent | JobEvent, ds: InputDataset | OutputDataset | None) -> dict[str, Any]:
    out: dict[str, Any] = {"eventType": getattr(ev, "eventType", None), "eventTime": ev.eventTime,
                           "producer": ev.producer,
                           "job": {"namespace": ev.job.namespace, "name": ev.job.name, "facets": _raw(ev.job.facets)}}
    if isinstance(ev, RunEvent):
        out["run"] = {"runId": ev.run.runId, "facets": _raw(ev.run.facets)}
    if isinstance(ds, InputDataset):
        out["inputFacets"] = _raw(ds.inputFacets)
    elif isinstance(ds, OutputDataset):
        out["outputFacets"] = _raw(ds.outputFacets)
    return out


def events_for(client: Any, ev: RunEvent | JobEvent | DatasetEvent) -> tuple[list[Event], dict[str, Any]]:
    """The modelog events an OpenLineage event becomes (built by ``client``, i.e. stamped with its
    principal), all validated; and a summary: the run node, dataset nodes and edges."""
    if isinstance(ev, DatasetEvent):
        node, event = _dataset_event(client, ev.dataset, "dataset")
        return [event], {"run": None, "datasets": [node], "edges": []}
    events: list[Event] = []
    inputs, outputs = [], []
    for i, ds in enumerate(ev.inputs or []):
        node, event = _dataset_event(client, ds, f"inputs[{i}]")
        inputs.append((node, ds))
        events.append(event)
    for i, ds in enumerate(ev.outputs or []):
        node, event = _dataset_event(client, ds, f"outputs[{i}]")
        outputs.append((node, ds))
        events.append(event)
    edges: list[tuple[str, str, str, dict[str, Any]]] = []
    run = run_node(ev.run.runId) if isinstance(ev, RunEvent) else None
    if run is not None:
        edges += [(node, "consumed", run, _edge_facets(ev, ds)) for node, ds in inputs]
        edges += [(run, "produced", node, _edge_facets(ev, ds)) for node, ds in outputs]
    else:
        edges += [(i_node, "derived", o_node, _edge_facets(ev, None))
                  for i_node, _ in inputs for o_node, _ in outputs if i_node != o_node]
    for src, relation, dst, facets in edges:
        events.append(lineage_event(client, src, relation, dst, facets=_json(facets, "job.facets")))
    for e in events:
        validate(e.event_type, e.record)  # all of them before any is published
    summary = {"run": run, "datasets": [n for n, _ in inputs + outputs],
               "edges": [{"src": s, "relation": r, "dst": d} for s, r, d, _ in edges]}
    return events, summary

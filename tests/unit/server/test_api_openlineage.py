"""POST /lineage: OpenLineage events become dataset versions and lineage edges, published as the token's
principal; bad events are 422 problems naming the field and the rule, and nothing is published."""

from __future__ import annotations

import json
import uuid

from modelog.server import openlineage as ol

API = "/api/v1"
PRODUCER = "https://github.com/OpenLineage/OpenLineage/tree/1.54.0/client/python"
SPEC = "https://openlineage.io/spec/2-0-2/OpenLineage.json"
WAREHOUSE = "postgres://warehouse:5432"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def facet(kind: str, **fields) -> dict:
    return {"_producer": PRODUCER, "_schemaURL": f"{SPEC}#/$defs/{kind}", **fields}


def run_event(run_id: str, event_type: str = "COMPLETE", **overrides) -> dict:
    event = {
        "eventType": event_type, "eventTime": "2026-11-30T06:00:00.000Z", "producer": PRODUCER,
        "schemaURL": f"{SPEC}#/$defs/RunEvent",
        "run": {"runId": run_id, "facets": {"nominalTime": facet("NominalTimeRunFacet",
                                                                  nominalStartTime="2026-11-30T05:00:00Z")}},
        "job": {"namespace": "etl", "name": "build_features",
                "facets": {"sql": facet("SQLJobFacet", query="INSERT INTO features SELECT ... FROM orders JOIN customers")}},
        "inputs": [
            {"namespace": WAREHOUSE, "name": "public.orders",
             "facets": {"schema": facet("SchemaDatasetFacet", fields=[{"name": "order_id", "type": "BIGINT"},
                                                                       {"name": "amount", "type": "NUMERIC"}])}},
            {"namespace": WAREHOUSE, "name": "public.customers",
             "facets": {"version": facet("DatasetVersionDatasetFacet", datasetVersion="42")}},
        ],
        "outputs": [
            {"namespace": WAREHOUSE, "name": "public.features",
             "facets": {"schema": facet("SchemaDatasetFacet", fields=[{"name": "spend", "type": "NUMERIC"}]),
                        "dataSource": facet("DatasourceDatasetFacet", name="warehouse", uri=WAREHOUSE),
                        "columnLineage": facet("ColumnLineageDatasetFacet", fields={
                            "spend": {"inputFields": [{"namespace": WAREHOUSE, "name": "public.orders",
                                                       "field": "amount"}]}})},
             "outputFacets": {"outputStatistics": facet("OutputStatisticsOutputDatasetFacet", rowCount=7, size=512)}},
        ],
    }
    event.update(overrides)
    return event


def post(api, token, body):
    return api.post(f"{API}/lineage", content=json.dumps(body), headers=auth(token))


def test_a_run_event_becomes_dataset_versions_and_edges(api, tok, live):
    run_id = str(uuid.uuid4())
    r = post(api, tok["writer"], run_event(run_id))
    assert r.status_code == 200, r.text
    run = "run:" + run_id.replace("-", "")
    orders, customers = ol.dataset_node(WAREHOUSE, "public.orders"), ol.dataset_node(WAREHOUSE, "public.customers", "42")
    features = ol.dataset_node(WAREHOUSE, "public.features")
    assert r.json()["run"] == run and set(r.json()["datasets"]) == {orders, customers, features}
    edges = live.sql("SELECT src, relation, dst, recorded_by, facets FROM lineage_edges ORDER BY relation, src")
    assert [(e["src"], e["relation"], e["dst"], e["recorded_by"]) for e in edges] == [
        (customers, "consumed", run, "writer-user"), (orders, "consumed", run, "writer-user"),
        (run, "produced", features, "writer-user")]
    produced = json.loads(edges[2]["facets"])
    assert produced["job"]["facets"]["sql"]["query"].startswith("INSERT INTO features")
    assert produced["run"]["runId"] == run_id and produced["eventType"] == "COMPLETE"
    assert produced["outputFacets"]["outputStatistics"]["rowCount"] == 7
    v = live.sql("SELECT name, version, uri, columns, row_count, size_bytes, media_type, first_logged_by, facets "
                 "FROM dataset_versions WHERE node = ?", [features])[0]
    assert v["name"] == f"{WAREHOUSE}/public.features" and v["uri"] == f"{WAREHOUSE}/public.features"
    assert v["version"] == ol.dataset_version(None) and v["first_logged_by"] == "writer-user"
    assert v["columns"] == [{"name": "spend", "type": "NUMERIC"}] and (v["row_count"], v["size_bytes"]) == (7, 512)
    assert v["media_type"] == ol.MEDIA_TYPE
    facets = json.loads(v["facets"])
    assert facets["facets"]["columnLineage"]["fields"]["spend"]["inputFields"][0]["field"] == "amount"
    assert facets["facets"]["dataSource"]["uri"] == WAREHOUSE
    assert json.loads(live.sql("SELECT facets FROM dataset_versions WHERE node = ?", [customers])[0]["facets"])[
        "version"] == "42"
    # the upstream walk from the output reaches the run and its inputs
    up = {r["node"] for r in live.sql("SELECT node FROM lineage_upstream(?, 10)", [features])}
    assert up == {run, orders, customers}


def test_job_and_dataset_events(api, tok, live):
    job = run_event(str(uuid.uuid4()), schemaURL=f"{SPEC}#/$defs/JobEvent")
    del job["run"], job["eventType"]
    r = post(api, tok["writer"], job)
    assert r.status_code == 200, r.text
    features = ol.dataset_node(WAREHOUSE, "public.features")
    assert {(e["src"], e["relation"]) for e in live.sql("SELECT src, relation FROM lineage_edges WHERE dst = ?",
                                                        [features])} == {
        (ol.dataset_node(WAREHOUSE, "public.orders"), "derived"),
        (ol.dataset_node(WAREHOUSE, "public.customers", "42"), "derived")}
    ds = {"eventTime": "2026-11-30T07:00:00+01:00", "producer": PRODUCER, "schemaURL": f"{SPEC}#/$defs/DatasetEvent",
          "dataset": {"namespace": "s3://lake", "name": "raw/events", "facets": {
              "documentation": facet("DocumentationDatasetFacet", description="raw click events")}}}
    r = post(api, tok["writer"], ds)
    assert r.status_code == 200, r.text
    assert live.sql("SELECT uri, description FROM dataset_versions WHERE name = 's3://lake/raw/events'") == [
        {"uri": "s3://lake/raw/events", "description": "raw click events"}]


def test_bad_events_are_422_naming_the_field_and_nothing_is_published(api, tok, live):
    before = len(live.emitter.events)
    cases = [
        (run_event("not-a-uuid"), "run.runId", "UUID"),
        (run_event(str(uuid.uuid4()), eventType="DONE"), "eventType", "START"),
        (run_event(str(uuid.uuid4()), schemaURL="https://openlineage.io/spec/1-0-5/OpenLineage.json"),
         "schemaURL", "2-0-x"),
        (run_event(str(uuid.uuid4()), eventTime="yesterday"), "eventTime", "ISO 8601"),
        ({k: v for k, v in run_event(str(uuid.uuid4())).items() if k != "producer"}, "producer", "required"),
        ({"eventTime": "2026-11-30T06:00:00Z", "producer": PRODUCER, "schemaURL": SPEC}, "run", "RunEvent"),
    ]
    no_name = run_event(str(uuid.uuid4()))
    del no_name["inputs"][1]["name"]
    cases.append((no_name, "inputs[1].name", "required"))
    no_producer = run_event(str(uuid.uuid4()))
    del no_producer["outputs"][0]["facets"]["schema"]["_producer"]
    cases.append((no_producer, "outputs[0].facets.schema._producer", "required"))
    bad_name = run_event(str(uuid.uuid4()))
    bad_name["outputs"][0]["name"] = "public.features=2026"
    cases.append((bad_name, "outputs[0].name", "letters, digits"))
    for body, field, rule in cases:
        r = post(api, tok["writer"], body)
        assert r.status_code == 422, (field, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["field"] == field and rule in r.json()["rule"], (field, r.json())
    assert api.post(f"{API}/lineage", content=b"{", headers=auth(tok["writer"])).json()["field"] == "body"
    assert len(live.emitter.events) == before


def test_it_needs_a_token_with_write(api, tok, live):
    body = run_event(str(uuid.uuid4()))
    assert api.post(f"{API}/lineage", content=json.dumps(body)).status_code == 401
    assert post(api, tok["reader"], body).status_code == 403
    assert live.sql("SELECT count(*) AS n FROM lineage_edges") == [{"n": 0}]


def test_a_dataset_whose_uris_are_personal_data_is_refused_and_nothing_is_built(tmp_path):
    """OpenLineage events name no data subject: a dataset the policy marks sensitive (--sensitive-dataset) is
    refused, naming the input, rather than published in clear (decision 0018)."""
    import pytest

    from modelog import Client, MemoryEmitter, Settings, ValidationError

    c = Client(Settings.load(env={}, home=tmp_path, principal="alice"), emitter=MemoryEmitter())
    c.sealer.set_policy(frozenset({("dataset", f"{WAREHOUSE}/public.customers")}))
    with pytest.raises(ValidationError, match="personal data") as info:
        ol.events_for(c, ol.parse(run_event(str(uuid.uuid4()))))
    assert info.value.field == "inputs[1].name"
    c.sealer.set_policy(frozenset({("dataset", "some-other-dataset")}))
    events, _ = ol.events_for(c, ol.parse(run_event(str(uuid.uuid4()))))
    assert [e.event_type for e in events].count("DatasetVersionLogged") == 3

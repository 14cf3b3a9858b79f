"""OpenLineage end to end: the real ``openlineage-python`` client's HTTP transport posts to a real
``modelog serve`` over the real broker and processor; ``modelog lineage upstream`` then walks from a model
through the modelog run that read the OpenLineage job's output, through the job's run, to its input tables."""

from __future__ import annotations

import json
import uuid

import pytest
import requests
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import (
    column_lineage_dataset,
    datasource_dataset,
    output_statistics_output_dataset,
    schema_dataset,
    sql_job,
)
from openlineage.client.transport.http import ApiKeyTokenProvider, HttpConfig, HttpTransport

from conftest import run_cli
from modelog.consumers.query import sql_arrow
from waiting import wait_until

pytestmark = pytest.mark.broker

WAREHOUSE = "postgres://warehouse:5432"


def q(settings, query, params=None):
    return sql_arrow(query, settings, params=params).to_pylist()


def ol_client(url: str, token: str) -> OpenLineageClient:
    config = HttpConfig(url=url, endpoint="api/v1/lineage", auth=ApiKeyTokenProvider({"api_key": token}),
                        retry={"total": 0})
    return OpenLineageClient(transport=HttpTransport(config))


def schema(*fields: tuple[str, str]) -> schema_dataset.SchemaDatasetFacet:
    return schema_dataset.SchemaDatasetFacet(fields=[schema_dataset.SchemaDatasetFacetFields(name=n, type=t)
                                                     for n, t in fields])


def build_features(run_id: str, state: RunState, output_name: str = "public.features") -> RunEvent:
    lineage = column_lineage_dataset.ColumnLineageDatasetFacet(fields={
        "spend": column_lineage_dataset.Fields(inputFields=[
            column_lineage_dataset.InputField(namespace=WAREHOUSE, name="public.orders", field="amount")],
            transformationDescription="sum", transformationType="AGGREGATION")})
    return RunEvent(
        eventType=state, eventTime="2026-11-30T06:00:00.000+00:00", run=Run(runId=run_id),
        job=Job(namespace="etl", name="build_features",
                facets={"sql": sql_job.SQLJobFacet(query="INSERT INTO public.features SELECT ...")}),
        inputs=[InputDataset(namespace=WAREHOUSE, name="public.orders",
                             facets={"schema": schema(("customer_id", "BIGINT"), ("amount", "NUMERIC"))}),
                InputDataset(namespace=WAREHOUSE, name="public.customers",
                             facets={"schema": schema(("customer_id", "BIGINT"), ("city", "TEXT"))})],
        outputs=[OutputDataset(namespace=WAREHOUSE, name=output_name,
                               facets={"schema": schema(("customer_id", "BIGINT"), ("spend", "NUMERIC")),
                                       "dataSource": datasource_dataset.DatasourceDatasetFacet(name="warehouse",
                                                                                              uri=WAREHOUSE),
                                       "columnLineage": lineage},
                               outputFacets={"outputStatistics": output_statistics_output_dataset
                                             .OutputStatisticsOutputDatasetFacet(rowCount=3, size=96)})])


def test_openlineage_job_output_feeds_a_model_and_the_upstream_walk_reaches_its_tables(env, settings, client,
                                                                                        server, tmp_path):
    token = run_cli(env, "token", "create", "etl-bot", "--role", "writer").stdout.strip()
    ol = ol_client(server.url, token)
    ol_run = str(uuid.uuid4())

    # a bad event (a dataset name modelog cannot hold) is refused with a problem; nothing is published
    with pytest.raises(requests.HTTPError) as refused:
        ol.emit(build_features(str(uuid.uuid4()), RunState.START, output_name="public.features=2026"))
    problem = refused.value.response.json()
    assert refused.value.response.status_code == 422 and problem["field"] == "outputs[0].name"
    # no token: 401
    with pytest.raises(requests.HTTPError) as anonymous:
        ol_client(server.url, "mlg_000000000000_nope").emit(build_features(ol_run, RunState.START))
    assert anonymous.value.response.status_code == 401

    ol.emit(build_features(ol_run, RunState.START))
    ol.emit(build_features(ol_run, RunState.COMPLETE))
    features = wait_until(lambda: q(settings, "SELECT node, times_logged, columns, row_count, first_logged_by, facets "
                                              "FROM dataset_versions WHERE name = ? AND times_logged = 2",
                                    [f"{WAREHOUSE}/public.features"]), 60, "the job's output is projected")[0]
    assert features["first_logged_by"] == "etl-bot" and features["row_count"] == 3
    assert [c["name"] for c in features["columns"]] == ["customer_id", "spend"]
    kept = json.loads(features["facets"])["facets"]
    assert kept["columnLineage"]["fields"]["spend"]["inputFields"][0]["name"] == "public.orders"
    assert kept["dataSource"]["uri"] == WAREHOUSE

    # a modelog run reads the job's output and registers a model
    model_file = tmp_path / "model.pkl"
    model_file.write_bytes(b"weights")
    with client.start_run(experiment="credit-risk", name="from-features") as run:
        client.record_lineage(features["node"], "consumed", run, role="train")
        run.log_artifact(model_file)
    mv = run.register_model("credit-risk", artifact="model.pkl", timeout=60)
    client.wait_projected(timeout=60)

    out = run_cli(env, "lineage", "upstream", f"model:credit-risk/{mv.version}", "--format", "json")
    walked = {r["node"]: r for r in json.loads(out.stdout)}
    ol_node = "run:" + ol_run.replace("-", "")
    orders = q(settings, "SELECT node FROM dataset_versions WHERE name = ?", [f"{WAREHOUSE}/public.orders"])[0]["node"]
    customers = q(settings, "SELECT node FROM dataset_versions WHERE name = ?",
                  [f"{WAREHOUSE}/public.customers"])[0]["node"]
    assert walked[f"run:{run.id}"]["depth"] == 1
    assert walked[features["node"]]["relation"] == "consumed" and walked[features["node"]]["depth"] == 2
    assert walked[ol_node]["relation"] == "produced" and walked[ol_node]["depth"] == 3
    assert {walked[orders]["via"], walked[customers]["via"]} == {ol_node}
    assert walked[orders]["depth"] == walked[customers]["depth"] == 4
    # the table output names the tables too
    table = run_cli(env, "lineage", "upstream", f"model:credit-risk/{mv.version}").stdout
    assert "public.orders" in table and "public.customers" in table

    # the job's SQL is kept on the edge it produced; the refused event left nothing behind
    edge = q(settings, "SELECT facets FROM lineage_edges WHERE src = ? AND relation = 'produced'", [ol_node])[0]
    facets = json.loads(edge["facets"])
    assert facets["eventType"] == "COMPLETE" and facets["job"]["facets"]["sql"]["query"].startswith("INSERT INTO")
    assert q(settings, "SELECT count(*) AS n FROM dataset_versions WHERE name LIKE '%=2026'") == [{"n": 0}]

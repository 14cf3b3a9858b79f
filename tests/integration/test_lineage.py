"""Datasets and lineage end to end: SDK -> broker -> processor -> views, `modelog lineage`, rebuild."""

from __future__ import annotations

import hashlib
import json

import duckdb
import pandas as pd
import pytest

import modelog
from conftest import run_cli

pytestmark = pytest.mark.broker


def rows(path, sql):
    con = duckdb.connect(str(path), read_only=True)
    try:
        return sorted(map(repr, con.execute(sql).fetchall()))
    finally:
        con.close()


def test_datasets_runs_models_and_the_lineage_between_them(env, client, processor, settings, tmp_path):
    raw_csv = tmp_path / "applications.csv"
    raw_csv.write_text("id,income,city\n1,10.5,Oslo\n2,,Lima\n2,,Lima\n3,7.25,Pune\n")
    raw = client.register_dataset("applications-raw", raw_csv, description="CRM export", tags={"source": "crm"})
    clean_df = pd.read_csv(raw_csv).drop_duplicates().reset_index(drop=True)
    clean = client.register_dataset("applications", clean_df, derived_from=[raw], transform="dedupe",
                                    code_ref="git:abc123:etl/dedupe.py")
    holdout = tmp_path / "holdout.csv"
    holdout.write_text("id,income,city\n9,1.0,Rome\n")
    model = tmp_path / "model.pkl"
    model.write_bytes(b"weights")

    with client.start_run(experiment="credit-risk", name="gbt") as run:
        train = run.log_dataset("applications", clean_df, role="train")
        test = run.log_dataset("holdout", holdout, role="test")
        run.log_artifact(model)
    with client.start_run(experiment="credit-risk", name="retry") as run2:
        again = run2.log_dataset("applications", pd.read_csv(raw_csv).drop_duplicates(), role="train")
    client.record_lineage(run, "produced", "model:credit-risk/1")
    client.record_lineage("model:credit-risk/1", "deployed", "deployment:credit-risk/production")
    client.wait_projected(timeout=30)

    assert train.version == clean.version == again.version  # the same content is one version
    versions = modelog.sql("SELECT name, version, row_count, times_logged, derived_from, uri, size_bytes "
                           "FROM dataset_versions ORDER BY name", settings)
    assert versions.name.tolist() == ["applications", "applications-raw", "holdout"]
    app, raw_row, hold = versions.to_dict("records")
    assert (app["version"], app["row_count"], app["times_logged"]) == (clean.version, 3, 3)
    assert list(app["derived_from"]) == [raw.node] and app["uri"] == "memory://applications"
    assert raw_row["version"] == hashlib.sha256(raw_csv.read_bytes()).hexdigest()
    assert (raw_row["row_count"], raw_row["size_bytes"], raw_row["uri"]) == (
        4, raw_csv.stat().st_size, raw_csv.resolve().as_uri())
    assert hold["row_count"] == 1 and hold["version"] == test.version
    cols = modelog.sql_arrow("SELECT columns FROM dataset_versions WHERE name = 'applications-raw'", settings)
    assert cols.column("columns").to_pylist() == [[{"name": "id", "type": "int64"}, {"name": "income", "type": "double"},
                                                   {"name": "city", "type": "string"}]]
    ds = modelog.sql_arrow("SELECT name, latest_version, version_count, description FROM datasets ORDER BY name",
                           settings)
    assert [tuple(r.values()) for r in ds.to_pylist()] == [
        ("applications", clean.version, 1, None), ("applications-raw", raw.version, 1, "CRM export"),
        ("holdout", test.version, 1, None)]

    edges = modelog.sql_arrow("SELECT src, relation, dst, role, transform, recorded_by FROM lineage_edges", settings)
    got = {tuple(r.values()) for r in edges.to_pylist()}
    assert got == {
        (raw.node, "derived", clean.node, None, "dedupe", "tester"),
        (clean.node, "consumed", f"run:{run.id}", "train", None, "tester"),
        (test.node, "consumed", f"run:{run.id}", "test", None, "tester"),
        (clean.node, "consumed", f"run:{run2.id}", "train", None, "tester"),
        (f"run:{run.id}", "produced", f"artifact:{run.id}/model.pkl", None, None, "tester"),
        (f"run:{run.id}", "produced", "model:credit-risk/1", None, None, "tester"),
        ("model:credit-risk/1", "deployed", "deployment:credit-risk/production", None, None, "tester"),
    }

    # which data produced the model in production?
    up = json.loads(run_cli(env, "lineage", "upstream", "deployment:credit-risk/production", "--format", "json").stdout)
    assert [(r["node"], r["depth"]) for r in up if r["kind"] == "dataset"] == [
        (clean.node, 3), (test.node, 3), (raw.node, 4)]
    assert up[-1]["path"] == ["deployment:credit-risk/production", "model:credit-risk/1", f"run:{run.id}",
                              clean.node, raw.node]
    near = json.loads(run_cli(env, "lineage", "upstream", "deployment:credit-risk/production", "--depth", "2",
                              "--format", "json").stdout)
    assert [(r["node"], r["relation"], r["depth"]) for r in near] == [
        ("model:credit-risk/1", "deployed", 1), (f"run:{run.id}", "produced", 2)]

    # which models are affected if the raw export is bad? (a version prefix of 8 hex digits will do)
    down = run_cli(env, "lineage", "downstream", f"dataset:applications-raw@{raw.version[:8]}", "--format", "csv")
    lines = down.stdout.splitlines()
    assert lines[0] == '"node","kind","relation","via","role","depth","path"'
    affected = {line.split(",")[0].strip('"') for line in lines[1:]}
    assert affected == {clean.node, f"run:{run.id}", f"run:{run2.id}", f"artifact:{run.id}/model.pkl",
                        "model:credit-risk/1", "deployment:credit-risk/production"}
    table = run_cli(env, "lineage", "downstream", f"dataset:applications-raw@{raw.version[:8]}").stdout
    assert f"dataset:applications@{clean.version[:12]}" in table and clean.version not in table
    assert "model:credit-risk/1" in table and "(6 rows)" in table

    # the macros answer through `modelog sql` (the processor's endpoint) too
    models = json.loads(run_cli(env, "sql", f"SELECT DISTINCT node FROM lineage_downstream('{raw.node}', 100) "
                                            "WHERE kind = 'model'", "--format", "json").stdout)
    assert models == [{"node": "model:credit-risk/1"}]

    unknown = run_cli(env, "lineage", "upstream", "run:doesnotexist", check=False)
    assert unknown.returncode == 2 and "unknown entity 'run:doesnotexist'" in unknown.stderr
    bad = run_cli(env, "lineage", "downstream", "applications", check=False)
    assert bad.returncode == 2 and "entity: must be a lineage node" in bad.stderr
    short = run_cli(env, "lineage", "downstream", "dataset:applications@abc", check=False)
    assert short.returncode == 2 and "lineage node" in short.stderr  # a prefix needs >= 8 hex digits

    # rebuilt from the log, the lineage views and walks equal the live ones
    run_cli(env, "rebuild", "--output", str(tmp_path / "rebuilt.duckdb"))
    processor.stop()
    for sql in ("SELECT * FROM datasets", "SELECT * FROM dataset_versions", "SELECT * FROM lineage_edges",
                "SELECT * FROM lineage_nodes", f"SELECT * FROM lineage_downstream('{raw.node}', 100)"):
        live, rebuilt = rows(settings.views_path, sql), rows(tmp_path / "rebuilt.duckdb", sql)
        assert live == rebuilt and live, sql


def test_module_level_log_dataset_in_a_job(env, processor, settings, tmp_path):
    import subprocess
    import sys
    import os
    import textwrap

    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent("""
        import pandas as pd, modelog
        df = pd.DataFrame({"x": [1, 2, 3]})
        try:
            modelog.log_dataset("features", df)
        except modelog.NoActiveRunError:
            print("no run")
        with modelog.start_run(experiment="jobs") as run:
            dv = modelog.log_dataset("features", df, role="validation")
        modelog.wait_projected()
        print(run.id, dv.version)
    """))
    full = {k: v for k, v in os.environ.items() if not k.startswith("MODELOG_")}
    full.update(env)
    out = subprocess.run([sys.executable, str(script)], env=full, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    first, second = out.stdout.splitlines()
    run_id, version = second.split()
    assert first == "no run"
    edges = modelog.sql("SELECT src, dst, role FROM lineage_edges", settings).values.tolist()
    assert edges == [[f"dataset:features@{version}", f"run:{run_id}", "validation"]]

"""Lineage views and the upstream/downstream macros over a real DuckDB file, on a graph with known answers.

    raw ──derived──► clean(v1) ──consumed/train──► r1 ──produced──► model:credit/1 ──deployed──► deployment:credit/production
                         │                  ▲        └─produced──► artifact:r1/model.pkl
    holdout ─consumed/test──────────────────┘
                         └──consumed/train──► r2 ──produced──► model:credit/2 ──derived──► synthetic ──consumed──► r2 (a cycle)
    clean(v2): a later version of clean, derived from raw too; nothing uses it.
"""

import duckdb
import pytest

from factories import ENVIRONMENT, envelope
from modelog.wire.codec import Codec
from modelog.processors.projection import RawRecord
from modelog.processors.projector import Projector
from modelog.processors.store import VIEW_NAMES, ViewStore

RAW, CLEAN, CLEAN2, HOLDOUT, SYNTH = "a" * 64, "b" * 64, "c" * 64, "d" * 64, "e" * 64
N_RAW, N_CLEAN, N_CLEAN2 = f"dataset:raw@{RAW}", f"dataset:clean@{CLEAN}", f"dataset:clean@{CLEAN2}"
N_HOLDOUT, N_SYNTH = f"dataset:holdout@{HOLDOUT}", f"dataset:synthetic@{SYNTH}"
R1, R2 = "run:r1", "run:r2"
M1, M2, DEP, ART = "model:credit/1", "model:credit/2", "deployment:credit/production", "artifact:r1/model.pkl"
T0 = 1_760_000_000_000_000


class Log:
    """Builds encoded events with increasing event ids and times."""

    def __init__(self) -> None:
        self.codec = Codec()
        self.values: list[bytes] = []

    def add(self, event_type: str, key: str, entity_type: str, actor: str = "alice", **payload) -> None:
        n = len(self.values) + 1
        env = envelope(event_type, key, event_id=f"01890f5e-0000-7000-8003-{n:012d}", occurred_at=T0 + n * 1000,
                       entity_type=entity_type)
        env["actor"] = {"principal": actor, "kind": "USER"}
        self.values.append(self.codec.encode(event_type, {"envelope": env, **payload}))

    def dataset(self, name, version, derived_from=(), description=None, tags=None, uri=None, rows=10, actor="alice"):
        self.add("DatasetVersionLogged", f"dataset:{name}", "dataset", actor=actor, dataset=name, version=version,
                 uri=uri or f"file:///data/{name}.csv", columns=[{"name": "x", "type": "int64"}], row_count=rows,
                 size_bytes=100, media_type="text/csv", description=description, tags=tags or {},
                 derived_from=[{"dataset": d, "version": v, "transform": "dedupe", "code_ref": "git:abc:etl.py"}
                               for d, v in derived_from])

    def edge(self, src, relation, dst, role=None, actor="alice"):
        self.add("LineageRecorded", dst, dst.split(":")[0], actor=actor, src=src, relation=relation, dst=dst,
                 role=role, transform=None, code_ref=None)

    def run(self, run_id):
        self.add("RunStarted", run_id, "run", run_id=run_id, experiment="e", name=run_id, start_time=T0, tags={},
                 environment=ENVIRONMENT)

    def records(self, start=0):
        return [RawRecord("t", 0, start + i, 1_760_000_000_000 + i, b"k", v) for i, v in enumerate(self.values)]


def graph() -> Log:
    log = Log()
    log.run("r1")
    log.run("r2")
    log.dataset("raw", RAW, description="from the CRM", tags={"source": "crm"})
    log.dataset("clean", CLEAN, derived_from=[("raw", RAW)])
    log.dataset("holdout", HOLDOUT, rows=None)
    log.edge(N_CLEAN, "consumed", R1, role="train")
    log.edge(N_HOLDOUT, "consumed", R1, role="test")
    log.add("ArtifactLogged", "r1", "run", actor="bob", run_id="r1", path="model.pkl", uri="file:///m/model.pkl",
            sha256="f" * 64, size_bytes=5, media_type="application/octet-stream")
    log.edge(R1, "produced", M1)
    log.edge(M1, "deployed", DEP, actor="carol")
    log.edge(N_CLEAN, "consumed", R2, role="train")
    log.edge(R2, "produced", M2)
    log.dataset("synthetic", SYNTH)
    log.edge(M2, "derived", N_SYNTH)
    log.edge(N_SYNTH, "consumed", R2, role="augment")
    # the same content logged again (another uri, a description): one version, times_logged 2
    log.dataset("clean", CLEAN, uri="s3://bucket/clean.csv", description="deduplicated", actor="bob")
    log.edge(N_CLEAN, "consumed", R1, role="train", actor="bob")  # a duplicate edge: dropped
    log.dataset("clean", CLEAN2, derived_from=[("raw", RAW)], rows=12)
    return log


@pytest.fixture
def store(tmp_path):
    s = ViewStore(tmp_path / "views.duckdb")
    stats, dead = s.apply(graph().records(), Projector())
    assert dead == [] and stats.applied == len(graph().values)
    yield s
    s.close()


def rows(store, sql):
    return store.reader().execute(sql).fetchall()


def walk(store, direction, node, depth=100):
    return {(n, rel, via, d) for n, rel, via, d in rows(
        store, f"SELECT node, relation, via, depth FROM lineage_{direction}('{node}', {depth})")}


def test_dataset_versions_one_row_per_content(store):
    got = rows(store, "SELECT name, version, node, uri, row_count, times_logged, description, tags, derived_from, "
                      "first_logged_by, columns FROM dataset_versions ORDER BY name, version")
    assert [(r[0], r[1]) for r in got] == [("clean", CLEAN), ("clean", CLEAN2), ("holdout", HOLDOUT), ("raw", RAW),
                                           ("synthetic", SYNTH)]
    clean = got[0]
    assert clean[2] == N_CLEAN
    assert clean[3] == "file:///data/clean.csv"  # the first logging's uri
    assert (clean[4], clean[5], clean[6], clean[8], clean[9]) == (10, 2, "deduplicated", [N_RAW], "alice")
    assert clean[10] == [{"name": "x", "type": "int64"}]
    assert got[1][8] == [N_RAW] and got[1][4] == 12
    assert got[2][4] is None  # unknown row count stays unknown
    assert (got[3][7], got[3][8]) == ({"source": "crm"}, [])


def test_datasets_one_row_per_name(store):
    got = {r[0]: r[1:] for r in rows(store, "SELECT name, latest_version, latest_node, version_count, times_logged, "
                                            "description FROM datasets")}
    assert set(got) == {"raw", "clean", "holdout", "synthetic"}
    assert got["clean"] == (CLEAN2, N_CLEAN2, 2, 3, "deduplicated")
    assert got["raw"] == (RAW, N_RAW, 1, 1, "from the CRM")
    assert got["holdout"] == (HOLDOUT, N_HOLDOUT, 1, 1, None)


def test_lineage_edges_columns_are_pinned(store):
    """The registry adds a UNION ALL branch with exactly these columns."""
    cols = rows(store, "SELECT column_name, data_type FROM information_schema.columns "
                       "WHERE table_name = 'lineage_edges' ORDER BY ordinal_position")
    assert cols == [("src", "VARCHAR"), ("relation", "VARCHAR"), ("dst", "VARCHAR"), ("role", "VARCHAR"),
                    ("transform", "VARCHAR"), ("code_ref", "VARCHAR"), ("recorded_at", "TIMESTAMP"),
                    ("recorded_by", "VARCHAR"), ("event_id", "VARCHAR"), ("facets", "VARCHAR")]


def test_facets_are_kept_the_latest_that_had_any(store):
    """OpenLineage's facets (JSON text): the views show those of the latest event that carried some."""
    assert rows(store, "SELECT count(*) FROM lineage_edges WHERE facets IS NOT NULL") == [(0,)]
    log = Log()
    log.values = list(graph().values)
    start = len(log.values)
    log.add("DatasetVersionLogged", "dataset:raw", "dataset", dataset="raw", version=RAW, uri="file:///raw.csv",
            size_bytes=1, media_type="text/csv", facets='{"facets": {"schema": {"fields": []}}}')
    log.add("LineageRecorded", R1, "run", src=N_CLEAN, relation="consumed", dst=R1, role="train",
            facets='{"eventType": "START"}')
    log.add("LineageRecorded", R1, "run", src=N_CLEAN, relation="consumed", dst=R1, role="train",
            facets='{"eventType": "COMPLETE"}')
    log.add("DatasetVersionLogged", "dataset:raw", "dataset", dataset="raw", version=RAW, uri="file:///raw.csv",
            size_bytes=1, media_type="text/csv")  # no facets: the earlier ones stay
    _, dead = store.apply(log.records()[start:], Projector(), )
    assert dead == []
    assert rows(store, f"SELECT facets, times_logged FROM dataset_versions WHERE node = '{N_RAW}'") == [
        ('{"facets": {"schema": {"fields": []}}}', 3)]
    assert rows(store, f"SELECT facets, recorded_by FROM lineage_edges WHERE src = '{N_CLEAN}' AND dst = '{R1}'") == [
        ('{"eventType": "COMPLETE"}', "alice")]


def test_lineage_edges_from_events_derivations_and_artifacts(store):
    got = rows(store, "SELECT src, relation, dst, role, transform, code_ref, recorded_by FROM lineage_edges")
    assert sorted((s, r, d, role) for s, r, d, role, *_ in got) == sorted([
        (N_RAW, "derived", N_CLEAN, None), (N_RAW, "derived", N_CLEAN2, None),
        (N_CLEAN, "consumed", R1, "train"), (N_HOLDOUT, "consumed", R1, "test"),
        (R1, "produced", ART, None), (R1, "produced", M1, None), (M1, "deployed", DEP, None),
        (N_CLEAN, "consumed", R2, "train"), (R2, "produced", M2, None), (M2, "derived", N_SYNTH, None),
        (N_SYNTH, "consumed", R2, "augment"),
    ])
    by_edge = {(s, r, d): rest for s, r, d, *rest in got}
    assert by_edge[(N_RAW, "derived", N_CLEAN)][1:3] == ["dedupe", "git:abc:etl.py"]
    assert by_edge[(N_CLEAN, "consumed", R1)][-1] == "alice"  # the first recording wins over bob's duplicate
    assert by_edge[(R1, "produced", ART)][-1] == "bob"  # the artifact's logger
    assert by_edge[(M1, "deployed", DEP)][-1] == "carol"


def test_lineage_nodes(store):
    got = {n: (k, up, down) for n, k, up, down in rows(store, "SELECT * FROM lineage_nodes")}
    assert len(got) == 11  # 5 dataset versions, 2 runs, 2 models, a deployment, an artifact
    assert got[R1] == ("run", 2, 2) and got[N_RAW] == ("dataset", 0, 2) and got[DEP] == ("deployment", 1, 0)
    assert got[N_CLEAN2] == ("dataset", 1, 0) and got[ART] == ("artifact", 1, 0)


def test_upstream_of_the_deployment_is_the_data_that_made_it(store):
    assert walk(store, "upstream", DEP) == {
        (M1, "deployed", DEP, 1), (R1, "produced", M1, 2),
        (N_CLEAN, "consumed", R1, 3), (N_HOLDOUT, "consumed", R1, 3), (N_RAW, "derived", N_CLEAN, 4)}
    data = rows(store, f"SELECT DISTINCT node FROM lineage_upstream('{DEP}', 100) WHERE kind = 'dataset' ORDER BY 1")
    assert data == [(N_CLEAN,), (N_HOLDOUT,), (N_RAW,)]
    path = rows(store, f"SELECT path FROM lineage_upstream('{DEP}', 100) WHERE node = '{N_RAW}'")
    assert path == [([DEP, M1, R1, N_CLEAN, N_RAW],)]


def test_depth_limits_the_walk(store):
    assert walk(store, "upstream", DEP, 2) == {(M1, "deployed", DEP, 1), (R1, "produced", M1, 2)}
    assert walk(store, "upstream", DEP, 1) == {(M1, "deployed", DEP, 1)}
    assert walk(store, "upstream", DEP, 0) == set()


def test_downstream_of_a_bad_dataset_is_every_model_it_touched_and_cycles_end(store):
    got = walk(store, "downstream", N_RAW)
    assert got == {
        (N_CLEAN, "derived", N_RAW, 1), (N_CLEAN2, "derived", N_RAW, 1),
        (R1, "consumed", N_CLEAN, 2), (R2, "consumed", N_CLEAN, 2),
        (ART, "produced", R1, 3), (M1, "produced", R1, 3), (M2, "produced", R2, 3),
        (DEP, "deployed", M1, 4), (N_SYNTH, "derived", M2, 4),
        # synthetic -> r2 would revisit r2 on this path: the walk stops there
    }
    models = rows(store, f"SELECT DISTINCT node FROM lineage_downstream('{N_RAW}', 100) WHERE kind = 'model' ORDER BY 1")
    assert models == [(M1,), (M2,)]


def test_a_walk_starting_inside_a_cycle_never_returns_to_its_start(store):
    assert walk(store, "downstream", R2) == {(M2, "produced", R2, 1), (N_SYNTH, "derived", M2, 2)}
    assert walk(store, "upstream", R2) == {
        (N_CLEAN, "consumed", R2, 1), (N_SYNTH, "consumed", R2, 1), (N_RAW, "derived", N_CLEAN, 2),
        (M2, "derived", N_SYNTH, 2)}


def test_unknown_node_has_no_lineage(store):
    assert walk(store, "upstream", "run:nope") == set() and walk(store, "downstream", "run:nope") == set()


def _snapshot(s: ViewStore) -> dict:
    cur = s.reader()
    out = {v: sorted(map(repr, cur.execute(f"SELECT * FROM {v}").fetchall())) for v in VIEW_NAMES}
    out["walk"] = sorted(map(repr, cur.execute(f"SELECT * FROM lineage_downstream('{N_RAW}', 100)").fetchall()))
    return out


def test_views_are_a_pure_function_of_the_events(store, tmp_path):
    """Redelivery changes nothing; any batching of the same log gives the same views (rebuild = live)."""
    before = _snapshot(store)
    stats, _ = store.apply(graph().records(start=100), Projector())
    assert stats.applied == 0 and _snapshot(store) == before
    other = ViewStore(tmp_path / "other.duckdb")
    recs = graph().records()
    for i in range(0, len(recs), 3):
        other.apply(recs[i:i + 3], Projector())
    assert _snapshot(other) == before
    other.close()


def test_macros_live_in_the_file_for_read_only_readers(tmp_path):
    s = ViewStore(tmp_path / "v.duckdb")
    s.apply(graph().records(), Projector())
    s.close()
    con = duckdb.connect(str(tmp_path / "v.duckdb"), read_only=True)
    try:
        assert con.execute(f"SELECT count(*) FROM lineage_upstream('{DEP}', 100)").fetchone() == (5,)
    finally:
        con.close()


def test_facets_that_are_not_a_json_object_are_dead_lettered(tmp_path):
    log = Log()
    log.add("LineageRecorded", R1, "run", src=N_CLEAN, relation="consumed", dst=R1, facets="[1, 2]")
    log.add("LineageRecorded", R2, "run", src=N_CLEAN, relation="consumed", dst=R2, facets='{"eventType": "START"}')
    s = ViewStore(tmp_path / "views.duckdb")
    try:
        _, dead = s.apply(log.records(), Projector())
        assert len(dead) == 1 and "facets" in str(dead[0])
        assert rows(s, "SELECT dst, facets FROM lineage_edges") == [(R2, '{"eventType": "START"}')]
    finally:
        s.close()

"""Several projector workers in one consumer group on the real broker, one set of views over the lake.

`modelog process --workers 3` over 4 partitions: every worker's data is visible in SQL, a worker killed
with -9 mid-stream is replaced without losing or doubling a point, governance decisions read across
partitions, and rebuilding one views file from the log gives the same rows as the lake. Then two workers
that share no disk (each its own MODELOG_HOME) publish to a lake on the embedded S3 server, read back
with Delta Lake's own reader.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import duckdb
import pytest

from conftest import Processor, run_cli
from modelog import Client, Settings
from modelog.consumers.query import sql as query
from modelog.processors.lake import Lake, LakeReader
from modelog.processors.store import VIEW_NAMES
from waiting import wait_until

pytestmark = pytest.mark.broker

STEPS = 100


@pytest.fixture
def lake_env(env, tmp_path):
    return dict(env, MODELOG_LAKE=str(tmp_path / "lake"))


def log_runs(client: Client, names: list[str]) -> list[str]:
    ids = []
    for name in names:
        with client.start_run(experiment="scale", name=name) as run:
            run.log_params({"name": name})
            for s in range(STEPS):
                run.log_metrics({"loss": 1 / (s + 1), "acc": s / STEPS}, step=s)
            run.log_metric("auc", 0.9)
        ids.append(run.id)
    return ids


def workers_of(settings: Settings) -> list[int]:
    return json.loads((settings.home / "processor.json").read_text())["workers"]


def test_three_workers_one_set_of_views_survive_a_kill_and_equal_a_rebuild(lake_env, tmp_path):
    settings = Settings.load(env=lake_env)

    def sql(text: str):
        return query(text, settings)

    sup = Processor(lake_env, settings, args=("--workers", "3")).start(timeout=90)
    client = Client(settings)
    try:
        first = log_runs(client, [f"a{i}" for i in range(8)])
        client.registry.register_model("scaled", run_id=first[0], wait=False)
        client.registry.set_policy([{"name": "gate", "kind": "METRIC_GATE", "action": "PROMOTE",
                                     "stage": "production", "metric": "auc", "op": ">=", "threshold": 0.8}],
                                   model="scaled")
        client.wait_projected(timeout=60)
        runs = sql("SELECT count(*) AS n FROM runs")["n"][0]
        assert runs == 8
        parts = {str(p) for t, p in Lake(tmp_path / "lake").positions() if t == settings.tracking_topic}
        published = {str(p) for t, p in client.emitter.positions if t == settings.tracking_topic}
        assert parts == published  # every partition the events went to has its shard in the lake

        # kill -9 one worker mid-stream; the supervisor starts another, the group moves its partitions
        victim = workers_of(settings)[0]
        os.kill(victim, signal.SIGKILL)
        second = log_runs(client, [f"b{i}" for i in range(8)])
        status = client.registry.promote("scaled", 1, "production", precheck=False)
        client.wait_projected(timeout=90)
        wait_until(lambda: victim not in workers_of(settings), 30,
                   lambda: f"the supervisor replaced worker {victim} (workers: {workers_of(settings)})", interval=0.2)
        assert len(workers_of(settings)) == 3

        counts = sql("SELECT count(*) AS points, count(DISTINCT run_id) AS runs FROM metrics")
        assert (counts["points"][0], counts["runs"][0]) == (16 * (2 * STEPS + 1), 16)
        assert set(sql("SELECT run_id FROM runs WHERE status = 'FINISHED'")["run_id"]) == set(first + second)
        def decided():  # the decision is published by the model's shard, then projected
            got = sql(f"SELECT status FROM requests WHERE request_id = '{status.request_id}'")["status"].tolist()
            return got if got and got[0] != "PENDING" else None

        got = wait_until(decided, 30, f"request {status.request_id} is decided", interval=0.2)
        assert got == ["APPROVED"]  # the gate read the run's auc from another partition
        # the SQL endpoint of the supervisor reads the same lake
        assert run_cli(lake_env, "sql", "SELECT count(*) AS n FROM runs").stdout.split()[-3] == "16"
    finally:
        client.close()
        assert sup.stop() == 0

    # the log is the truth: one views file rebuilt from it equals the lake, view by view
    run_cli(lake_env, "rebuild", "--output", str(tmp_path / "rebuilt.duckdb"))
    lake = LakeReader(tmp_path / "lake").reader()
    rebuilt = duckdb.connect(str(tmp_path / "rebuilt.duckdb"), read_only=True)
    for view in VIEW_NAMES:
        a = sorted(map(repr, lake.execute(f"SELECT * FROM {view}").fetchall()))
        b = sorted(map(repr, rebuilt.execute(f"SELECT * FROM {view}").fetchall()))
        assert a == b, view
    rebuilt.close()


@pytest.fixture
def s3(tmp_path):
    """The embedded S3 server (modelog.local.s3server) on a port it picked, with a bucket ``lake``."""
    data, port_file = tmp_path / "s3", tmp_path / "s3.port"
    (data / "lake").mkdir(parents=True)
    proc = subprocess.Popen([sys.executable, "-m", "modelog.local.s3server", str(data), "--port", "0",
                             "--port-file", str(port_file)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port = wait_until(lambda: port_file.exists() and port_file.read_text().strip(), 30, "the S3 server listens")
        yield {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "local",
               "AWS_SECRET_ACCESS_KEY": "local", "AWS_REGION": "us-east-1"}
    finally:
        proc.kill()
        proc.wait()


def test_workers_on_no_shared_disk_publish_a_delta_lake_on_s3_read_by_deltalake_itself(env, s3, tmp_path):
    """Two `modelog process` workers, each with a home of its own (as on two machines), one lake at
    s3://lake/prefix: the runs land in Delta tables that deltalake's own reader finds, and modelog's
    views over the same lake agree."""
    from deltalake import DeltaTable

    base = dict(env, **s3, MODELOG_LAKE="s3://lake/team/modelog", MODELOG_PROCESSOR_ID=f"lake-{time.time_ns()}")
    homes = [tmp_path / "machine-a", tmp_path / "machine-b"]
    workers = []
    for home in homes:
        worker_env = dict(base, MODELOG_HOME=str(home))
        workers.append(Processor(worker_env, Settings.load(env=worker_env)).start(timeout=90))
    client_env = dict(base, MODELOG_HOME=str(tmp_path / "laptop"))
    settings = Settings.load(env=client_env)
    client = Client(settings)
    try:
        ids = log_runs(client, [f"s{i}" for i in range(10)])
        client.wait_projected(timeout=90)  # waits for the lake's _positions table on S3
        opts = {**s3, "AWS_ALLOW_HTTP": "true"}
        runs = DeltaTable("s3://lake/team/modelog/log_run_started", storage_options=opts).to_pyarrow_table()
        assert sorted(runs["run_id"].to_pylist()) == sorted(ids)
        points = DeltaTable("s3://lake/team/modelog/log_metrics", storage_options=opts).to_pyarrow_table(
            columns=["run_id", "key", "step", "lake_shard"])
        assert points.num_rows == len(set(zip(points["run_id"].to_pylist(), points["key"].to_pylist(),
                                               points["step"].to_pylist()))) == 10 * (2 * STEPS + 1)
        shards = set(points["lake_shard"].to_pylist())
        # the partitions were spread over both "machines", each keeping its shard files in its own home
        local = [{p.stem for p in home.rglob("*.duckdb") if "lake-shards" in str(p)} for home in homes]
        assert all(local) and not (local[0] & local[1]) and shards <= local[0] | local[1]
        assert not (tmp_path / "s3" / "lake" / "team" / "modelog" / "shards").exists()
        # modelog's own views over the same lake (read in this process, from S3)
        assert query("SELECT count(*) AS n FROM metrics", settings)["n"][0] == 10 * (2 * STEPS + 1)
        assert query("SELECT count(*) AS n FROM runs WHERE status = 'FINISHED'", settings)["n"][0] == 10
    finally:
        client.close()
        for w in workers:
            assert w.stop() == 0

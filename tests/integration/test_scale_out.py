"""Several projector workers in one consumer group on the real broker, one set of views over the lake.

`modelog process --workers 3` over 4 partitions: every worker's data is visible in SQL, a worker killed
with -9 mid-stream is replaced without losing or doubling a point, governance decisions read across
partitions, and rebuilding one views file from the log gives the same rows as the lake.
"""

from __future__ import annotations

import json
import os
import signal

import duckdb
import pytest

from conftest import Processor, run_cli
from modelog import Client, Settings
from modelog.consumers.query import sql as query
from modelog.processors.lake import LakeReader
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
        parts = {m.stem.rsplit(".", 1)[1] for m in (tmp_path / "lake" / "manifests").glob("*tracking*.json")}
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

"""Monitoring end to end on the real broker: a service logs predictions with injected drift, the drift
processor (a real `modelog drift` process) windows them against the reference, the projector makes
drift metrics and alerts queryable; a restarted drift processor recovers its open window."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modelog import Monitor, configure_monitor, log_reference
from modelog.consumers.query import sql_arrow
from waiting import wait_until

pytestmark = pytest.mark.broker


class Drift:
    def __init__(self, env: dict[str, str], home: Path) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MODELOG_")} | env
        self.home = home
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> "Drift":
        self.home.mkdir(parents=True, exist_ok=True)
        log = open(self.home / "drift-test.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "modelog", "drift", "--loglevel", "info"], env=self.env,
                                     stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.home / "drift-test.log").read_text()[-3000:]
            try:
                info = json.loads((self.home / "drift.json").read_text())
                if info.get("pid") == self.proc.pid and info.get("ready"):
                    return self
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        raise TimeoutError((self.home / "drift-test.log").read_text()[-3000:])

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture
def drift(env, settings):
    d = Drift(env, settings.home).start()
    yield d
    d.stop()


def q(settings, query):
    return [tuple(r.values()) for r in sql_arrow(query, settings).to_pylist()]


def wait_for(settings, query, predicate, timeout=60.0):
    last: list = []

    def ready():
        last[:] = q(settings, query)
        return predicate(last)

    wait_until(ready, timeout, lambda: f"{query!r} satisfies the condition (last rows: {last})", interval=0.1)
    return list(last)


def reference(n=2000, seed=1):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"income": rng.normal(50, 10, n), "age": rng.integers(18, 80, n).astype(float),
                         "city": rng.choice(["Lyon", "Oslo", "Kyiv"], n, p=[0.5, 0.3, 0.2]),
                         "score": rng.random(n)})


def serve(monitor, n, shift, seed):
    rng = np.random.default_rng(seed)
    for i in range(n):
        monitor.log({"income": float(rng.normal(50 + shift * 25, 10)), "age": float(rng.integers(18, 80)),
                     "city": str(rng.choice(["Lyon", "Oslo", "Kyiv", "Rome"],
                                            p=[0.5, 0.3, 0.2, 0.0] if not shift else [0.2, 0.2, 0.2, 0.4]))},
                    prediction=float(rng.random() ** (1 + 3 * shift)))


def test_drift_windows_alerts_and_recovery(env, settings, client, processor, drift):
    log_reference("credit-risk", None, reference(), prediction="score", client=client)
    configure_monitor("credit-risk", window_rows=500, raise_after=1, resolve_after=2, client=client)
    client.flush()
    # no wait here: the reference, the configuration and the predictions share the key monitor:<model>,
    # so they are on one partition and the drift processor reads them in the order they were logged
    m = Monitor("credit-risk", "prod-eu", client=client, batch_rows=250)
    serve(m, 1000, 0.0, seed=2)          # windows 0, 1: calm
    serve(m, 1000, 1.0, seed=3)          # windows 2, 3: drift -> RAISED at 2
    serve(m, 1000, 0.0, seed=4)          # windows 4, 5: calm -> RESOLVED at 5
    serve(m, 300, 0.0, seed=5)           # window 6: open, 300 rows
    m.flush()
    windows = wait_for(settings, "SELECT \"window\", dataset_drift FROM drift_windows ORDER BY 1",
                       lambda rows: len(rows) >= 6)
    assert windows == [(0, False), (1, False), (2, True), (3, True), (4, False), (5, False)]
    alerts = wait_for(settings, "SELECT state, \"window\", alert_id FROM alerts ORDER BY changed_at",
                      lambda rows: len(rows) >= 4)
    # one incident per rule and episode: RAISED once, RESOLVED once (the prediction shifted too)
    assert alerts == [("RAISED", 2, "credit-risk/prod-eu/dataset_drift/2"),
                      ("RAISED", 2, "credit-risk/prod-eu/prediction_drift/2"),
                      ("RESOLVED", 5, "credit-risk/prod-eu/dataset_drift/2"),
                      ("RESOLVED", 5, "credit-risk/prod-eu/prediction_drift/2")]
    per_col = dict(q(settings, "SELECT \"column\", drift FROM drift_metrics WHERE \"window\" = 2"))
    assert per_col["income"] and per_col["city"] and not per_col["age"]
    assert q(settings, "SELECT method FROM drift_metrics WHERE \"window\" = 2 AND \"column\" = 'income'") == [
        ("wasserstein",)]  # reference of 2,000 > 1,000 rows: Evidently's rule
    assert q(settings, "SELECT unseen > 0 FROM drift_metrics WHERE \"window\" = 2 AND \"column\" = 'city'") == [(True,)]
    assert q(settings, "SELECT sum(predictions) FROM prediction_rates") == [(3300,)]

    # kill -9 the drift processor with window 6 open; restart: the 300 rows come back from the changelog
    drift.kill9()
    serve(m, 100, 0.0, seed=6)           # logged while it is down
    m.flush()
    drift.start()
    serve(m, 100, 0.0, seed=7)           # 300 + 100 + 100 = 500: window 6 closes
    m.close()
    rows = wait_for(settings, "SELECT \"window\", rows FROM drift_windows WHERE \"window\" = 6",
                    lambda rows: len(rows) == 1, timeout=90)
    assert rows == [(6, 500)]
    assert q(settings, "SELECT count(*) FROM drift_windows") == [(7,)]  # nothing measured twice
    assert q(settings, "SELECT count(*) FROM alerts") == [(4,)]


def test_two_drift_workers_share_the_models_and_survive_a_kill(env, settings, client, processor, tmp_path):
    """Two `modelog drift` processes in one group: every model's windows are measured once, by whichever
    worker holds its partition, and after one is killed the other restores its state and carries on."""
    import zlib

    names, seen = [], set()
    for i in range(100):  # four models, one per partition (librdkafka hashes keys with CRC32)
        p = zlib.crc32(f"monitor:model-{i}".encode()) % settings.partitions
        if p not in seen:
            seen.add(p)
            names.append(f"model-{i}")
    assert len(names) == settings.partitions
    workers = [Drift(env | {"MODELOG_HOME": str(tmp_path / f"drift-{k}")}, tmp_path / f"drift-{k}").start()
               for k in range(2)]
    try:
        for name in names:
            log_reference(name, None, reference(), prediction="score", client=client)
            configure_monitor(name, window_rows=500, raise_after=1, resolve_after=2, client=client)
        client.flush()  # references, configurations and predictions share a partition per model: no wait
        monitors = [Monitor(name, "prod", client=client, batch_rows=250) for name in names]
        for m in monitors:
            serve(m, 500, 0.0, seed=2)
            serve(m, 500, 1.0, seed=3)
            m.flush()
        rows = wait_for(settings, "SELECT model, \"window\", dataset_drift FROM drift_windows ORDER BY 1, 2",
                        lambda rows: len(rows) >= 2 * len(names))
        assert rows == [(n, w, w == 1) for n in sorted(names) for w in (0, 1)]
        for w in workers:  # the group gave each worker some of the monitoring partitions
            text = (w.home / "drift-test.log").read_text()
            assert "monitoring" in text.split("Setting newly assigned partitions")[-1].split("for group")[0]

        workers[0].kill9()
        for m in monitors:
            serve(m, 500, 0.0, seed=4)
            m.close()
        rows = wait_for(settings, "SELECT model, \"window\", rows FROM drift_windows WHERE \"window\" = 2 ORDER BY 1",
                        lambda rows: len(rows) >= len(names), timeout=90)
        assert rows == [(n, 2, 500) for n in sorted(names)]
        assert q(settings, "SELECT count(*) FROM drift_windows") == [(3 * len(names),)]  # none measured twice
        raised = q(settings, "SELECT DISTINCT model FROM alerts WHERE state = 'RAISED' ORDER BY 1")
        assert raised == [(n,) for n in sorted(names)]
    finally:
        for w in workers:
            w.stop()


def test_a_frame_logged_at_once_lands_row_for_row_in_the_predictions_view(settings, client, processor):
    """Monitor.log_frame (batch scoring: columns encoded as they are, events published by the call) through
    the real broker and projector: every row, its values and its text, exactly once."""
    frame = reference(n=2_500, seed=9)
    frame.loc[7, "city"] = None
    m = Monitor("batch-scorer", "nightly", client=client, batch_rows=1000)
    ids = m.log_frame(frame.drop(columns="score"), predictions=frame["score"], request_ids=[f"b{i}" for i in range(2500)])
    m.close()
    assert ids == [f"b{i}" for i in range(2500)] and m.stats()["sent"] == 2500
    rows = wait_for(settings, "SELECT request_id, features['income'], features['age'], feature_text['city'], prediction "
                              "FROM predictions WHERE model = 'batch-scorer' ORDER BY request_id",
                    lambda rows: len(rows) >= 2500)
    assert len(rows) == 2500 and len({r[0] for r in rows}) == 2500
    got = {r[0]: r[1:] for r in rows}
    for i in (0, 7, 999, 1000, 2499):
        income, age, city, prediction = got[f"b{i}"]
        assert income == pytest.approx(frame.at[i, "income"]) and age == frame.at[i, "age"]
        assert city == (None if i == 7 else frame.at[i, "city"])
        assert prediction == pytest.approx(frame.at[i, "score"])
    assert q(settings, "SELECT sum(predictions), sum(batches) FROM prediction_rates WHERE model = 'batch-scorer'") == \
        [(2500, 3)]

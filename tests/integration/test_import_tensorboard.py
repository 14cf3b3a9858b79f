"""modelog import tensorboard against the real broker and processor: runs and metric histories with their
steps and wall times in the views; a second import skips every run (idempotent)."""

from __future__ import annotations

import pytest

from conftest import run_cli
from waiting import wait_until
from modelog.consumers.query import sql_arrow

pytestmark = pytest.mark.broker


def test_import_tensorboard_twice_imports_once(env, settings, processor, tmp_path):
    from tensorboardX import SummaryWriter

    logdir = tmp_path / "tb"
    for run, lr in (("lr-0.1", 0.1), ("lr-0.01", 0.01)):
        w = SummaryWriter(str(logdir / run))
        for step in range(50):
            w.add_scalar("loss/train", 1.0 / (1 + step * lr), step, walltime=1_700_000_000.0 + step)
        if lr == 0.1:  # an HParams session: tensorboardX writes it to a directory of its own, lr-0.1/hparams
            w.add_hparams({"lr": 0.1, "optimizer": "adam"}, {"hparam/final": 0.5}, name="hparams")
        w.close()
    out = run_cli(env, "import", "tensorboard", str(logdir), "--experiment", "from-tb")
    assert "imported 3 run(s), 101 metric point(s), 2 hparam(s); skipped 0 run(s)" in out.stdout
    # the import was another process: wait until the views hold what it published
    wait_until(lambda: sql_arrow("SELECT count(*) AS n FROM metrics", settings).to_pylist() == [{"n": 101}]
               and sql_arrow("SELECT count(*) AS n FROM runs WHERE status = 'FINISHED'", settings).to_pylist()
               == [{"n": 3}], 60, "the imported runs and points projected")
    runs = sql_arrow("SELECT run_id, name, experiment, status FROM runs ORDER BY name", settings).to_pylist()
    assert [(r["name"], r["experiment"], r["status"]) for r in runs] == [
        ("lr-0.01", "from-tb", "FINISHED"), ("lr-0.1", "from-tb", "FINISHED"), ("lr-0.1/hparams", "from-tb", "FINISHED")]
    points = sql_arrow("SELECT step, value, epoch_us(timestamp) AS us FROM metrics WHERE run_id = ? "
                       "AND key = 'loss/train' ORDER BY step", settings, params=[runs[1]["run_id"]]).to_pylist()
    assert len(points) == 50 and points[0] == {"step": 0, "value": 1.0, "us": 1_700_000_000_000_000}
    assert points[49]["us"] == 1_700_000_049_000_000
    tags = {r["key"]: r["value"] for r in sql_arrow("SELECT key, value FROM tags WHERE run_id = ?", settings,
                                                    params=[runs[0]["run_id"]]).to_pylist()}
    assert tags["modelog.import"] == "tensorboard" and tags["source"].endswith("tb/lr-0.01")
    params = sql_arrow("SELECT run_id, key, value, value_type FROM params ORDER BY key", settings).to_pylist()
    assert params == [{"run_id": runs[2]["run_id"], "key": "lr", "value": "0.1", "value_type": "float"},
                      {"run_id": runs[2]["run_id"], "key": "optimizer", "value": "adam", "value_type": "str"}]

    again = run_cli(env, "import", "tensorboard", str(logdir), "--experiment", "from-tb")
    assert "imported 0 run(s), 0 metric point(s), 0 hparam(s); skipped 3 run(s)" in again.stdout and "already imported" in again.stdout
    n = sql_arrow("SELECT count(*) AS n FROM metrics", settings).to_pylist()
    assert n == [{"n": 101}]

    (tmp_path / "empty").mkdir()
    nothing = run_cli(env, "import", "tensorboard", str(tmp_path / "empty"), check=False)
    assert nothing.returncode == 1 and "no TensorBoard event files" in nothing.stderr

"""The fault campaign's harness itself (bench/faults_kill.py): the projector-kill scenario with two kills, on
its own s3:// embedded broker, real projector processes and real training-job subprocesses."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import faults_kill  # noqa: E402
from compare_common import cleanup_spawned  # noqa: E402

pytestmark = pytest.mark.broker


def test_projector_kill_scenario_passes_with_two_kills(tmp_path):
    try:
        result = faults_kill.projector_kill(argparse.Namespace(quick=True), tmp_path, kills=2)
    finally:
        assert cleanup_spawned(tmp_path) == []  # the scenario ended everything it started
    f = result["figures"]
    assert result["passed"], result
    assert f["kills"] == 2 and f["runs"] >= 3  # three jobs, each acknowledged at least one run
    assert f["acknowledged_points"] > 0 and f["acknowledged_lost"] == 0
    assert f["metric_rows"] >= f["acknowledged_points"] and f["duplicated_rows"] == 0
    assert f["views_differing_after_rebuild"] == []


def test_two_deployments_on_one_broker_keep_their_own_drift_state(bootstrap, tmp_path):
    """Found by drift-kill: the drift processor's consumer group and changelog topics were named by
    MODELOG_PROCESSOR_ID alone, so a second deployment on the same broker (another MODELOG_TOPIC_PREFIX)
    restored the first one's windows, took its own predictions for redeliveries and measured nothing."""
    measured = []
    try:
        for name in ("first", "second"):  # the same input, one deployment after the other
            d = faults_kill.Deployment(tmp_path, bootstrap, name)
            try:
                d.projector()
                d.drift()
                faults_kill.drift_feed(d, windows=2, pace_s=0.0)
                measured.append(faults_kill.drift_results(d, windows=2, timeout=120))
            finally:
                d.close()
    finally:
        assert cleanup_spawned(tmp_path) == []
    assert [w[0] for w in measured[1]["drift_windows"]] == [0, 1]
    assert measured[1] == measured[0]

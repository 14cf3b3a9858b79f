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

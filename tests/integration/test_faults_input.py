"""The fault campaign's bad-input and resource scenarios (bench/faults_input.py, issue 10) at small sizes.

Each scenario starts its own embedded broker on durable s3:// storage and a real ``modelog process`` (not the
suite's shared memory:// broker), does its damage, asserts on the views and ends everything it started; the
test asserts the scenario passed and pins the figures that make the claim.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import faults_input  # noqa: E402

pytestmark = pytest.mark.broker


def _args(**kw) -> argparse.Namespace:
    return argparse.Namespace(quick=True, **kw)


def test_mutated_records_are_all_dead_lettered_and_the_good_ones_around_them_projected(tmp_path):
    r = faults_input.SCENARIOS["mutated-records"](_args(mutations=200), tmp_path)
    f = r["figures"]
    assert r["passed"], f"{r['notes']}\nfigures: {f}"  # the notes first: CI shows a part of the output
    assert f["mutated_records"] == 200 and f["produce_failures"] == 0
    assert f["sure_bad_dead_lettered"] == f["sure_bad"] > 150
    assert f["dead_letters_in_view"] == f["dead_letters_on_topic"] >= f["sure_bad"]
    assert f["good_projected"] == f["good_records"] > 100 and f["unaccounted"] == 0
    assert f["processor_alive_throughout"] and f["processor_errors_logged"] == 0
    assert set(f["reasons"]) >= {"malformed_body", "unknown_schema", "not_modelog_event", "invalid_event", "empty",
                                 "bad_signature"}
    assert not (tmp_path / "spawned.jsonl").exists() or not faults_input.cleanup_spawned(tmp_path)


def _can_mount(tmp_path: Path) -> bool:
    where = tmp_path / "probe"
    where.mkdir()
    ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where)], capture_output=True).returncode == 0
    if ok:
        subprocess.run(["umount", str(where)], capture_output=True)
    return ok


def test_a_full_views_disk_pauses_projecting_and_it_catches_up_once_grown(tmp_path):
    if not _can_mount(tmp_path):
        pytest.skip("mounting a tmpfs is not permitted here (needs root)")
    r = faults_input.SCENARIOS["disk-full"](_args(), tmp_path)
    f = r["figures"]
    assert r["passed"], f"{r['notes']}\nfigures: {f}"  # the notes first: CI shows a part of the output
    assert "cannot write the views at" in f["error_line"] and "No space left on device" in f["error_line"]
    assert f["processor_alive_when_full"] and f["same_processor_throughout"] and f["resumed_line"]
    assert f["when_full"]["whole"] and f["when_full"]["points"] < f["acked_points"]
    assert f["after"]["whole"] and f["after"]["points"] >= f["acked_points"]
    assert f["after"]["points"] == f["after"]["distinct_points"]  # none doubled
    mounts = Path("/proc/mounts").read_text()
    assert str(tmp_path / "views") not in mounts  # unmounted at the end

"""wait_projected: a processor too busy to answer one position read is asked again until the deadline."""

from __future__ import annotations

import pytest

from modelog import QueryError, Settings
from modelog.consumers.query import wait_projected


def test_a_failed_read_is_retried_until_the_views_caught_up(tmp_path):
    answers = [QueryError("processor health endpoint unreachable: timed out"), {("t", 0): 3}, {("t", 0): 8}]
    calls = []

    def positions(settings):
        calls.append(1)
        a = answers[min(len(calls), len(answers)) - 1]
        if isinstance(a, Exception):
            raise a
        return a

    wait_projected(Settings.load(env={}, home=tmp_path), {("t", 0): 7}, timeout=5, positions=positions, interval=0)
    assert len(calls) == 3


def test_a_read_failing_past_the_deadline_raises_its_error(tmp_path):
    def positions(settings):
        raise QueryError("processor health endpoint unreachable: refused")

    with pytest.raises(QueryError, match="unreachable: refused"):
        wait_projected(Settings.load(env={}, home=tmp_path), {("t", 0): 7}, timeout=0.05, positions=positions,
                       interval=0.01)

"""Writes without the right role are refused by the processor, on the real broker (decision 0017).

The deployment (conftest ``secured``): alice ran `modelog init`, bob holds writer everywhere, signatures are
required. Here alice also gives erin a key and writer on experiment team-a only, and frank a key and reader.
"""

from __future__ import annotations

import dataclasses

import pytest

from modelog import Client
from waiting import wait_until

from conftest import run_cli

pytestmark = pytest.mark.broker


@pytest.fixture(scope="module")
def team(secured):
    for who in ("erin", "frank"):
        run_cli(secured.env, "keys", "create", "--principal", who)
    run_cli(secured.env, "access", "grant", "erin", "writer", "--experiment", "team-a")
    run_cli(secured.env, "access", "grant", "frank", "reader")
    wait_until(lambda: len(secured.sql("SELECT 1 FROM role_assignments WHERE principal IN ('erin', 'frank')")) == 2
               and len(secured.sql("SELECT 1 FROM signing_keys WHERE principal IN ('erin', 'frank')")) == 2,
               30, "erin's and frank's keys and roles")
    return secured


def client(secured, principal: str) -> Client:
    return Client(dataclasses.replace(secured.settings, principal=principal))


def refusals(secured, actor: str) -> list[dict]:
    return secured.sql(f"SELECT reason, detail FROM dead_letters WHERE reason = 'not_authorized' "
                       f"AND detail LIKE '% by ''{actor}'' %' ORDER BY detail")


def test_access_list_shows_the_scope(team):
    out = run_cli(team.env, "access", "list", "--format", "json").stdout
    assert '"experiment": "team-a"' in out and '"principal": "erin"' in out


def test_a_writer_on_one_experiment_cannot_write_into_another(team):
    erin = client(team, "erin")
    try:
        with erin.start_run("team-a") as run:
            run.log_params({"lr": 0.1})
        mine = run.id
        erin.wait_projected(30)
        before = team.snapshot()
        with erin.start_run("team-b") as other:
            other.log_params({"lr": 0.2})
        erin.flush()
    finally:
        erin.close()
    wait_until(lambda: len(refusals(team, "erin")) >= 4, 30, "erin's four writes to team-b refused")
    got = refusals(team, "erin")
    assert len(got) == 4 and all("on experiment 'team-b'" in r["detail"] or "was not started" in r["detail"]
                                 for r in got)
    assert {r["detail"].split(" by ")[0] for r in got} == {"ExperimentCreated", "RunStarted", "ParamsLogged",
                                                            "RunEnded"}
    assert team.sql(f"SELECT experiment FROM runs WHERE run_id = '{mine}'") == [{"experiment": "team-a"}]
    assert team.sql(f"SELECT count(*) AS n FROM runs WHERE run_id = '{other.id}'") == [{"n": 0}]
    assert team.snapshot() == before


def test_a_writer_cannot_log_into_a_run_of_an_experiment_it_has_no_role_on(team):
    bob = client(team, "bob")
    try:
        with bob.start_run("bobs-team") as bobs:
            bobs.log_param("owner", "bob")
        bob.wait_projected(30)
    finally:
        bob.close()
    before = team.snapshot()
    # erin addresses bob's run by its id (a valid, signed event: only the role is missing)
    erin = client(team, "erin")
    try:
        erin.publish("ParamsLogged", "run", bobs.id, run_id=bobs.id,
                     params=[{"key": "owner", "value": "erin", "value_type": "str"}])
        erin.flush()
    finally:
        erin.close()
    wait_until(lambda: any("ParamsLogged" in r["detail"] and "bobs-team" in r["detail"]
                           for r in refusals(team, "erin")), 30,
               "erin's param on bob's run refused")
    assert team.sql(f"SELECT value FROM params WHERE run_id = '{bobs.id}' AND key = 'owner'") == [
        {"value": "bob"}]
    assert team.snapshot() == before


def test_a_reader_writes_nothing_and_registry_changes_need_a_maintainer(team):
    before = team.snapshot()
    frank = client(team, "frank")
    try:
        frank.create_experiment("franks")
        frank.flush()
    finally:
        frank.close()
    out = run_cli(team.as_("bob"), "model", "annotate", "credit-risk", "--description", "bob was here", check=False)
    assert out.returncode == 0, out.stderr  # published: the processor decides
    wait_until(lambda: refusals(team, "frank") and refusals(team, "bob"), 30, "frank's and bob's writes refused")
    assert "needs admin or maintainer or writer on experiment 'franks'" in refusals(team, "frank")[0]["detail"]
    assert "ModelAnnotated by 'bob' needs admin or maintainer on model 'credit-risk'" in refusals(team, "bob")[0]["detail"]
    assert team.sql("SELECT count(*) AS n FROM models WHERE description = 'bob was here'") == [{"n": 0}]
    assert team.snapshot() == before

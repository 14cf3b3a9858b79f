"""Signatures, write authorization and tamper evidence with `modelog process --workers 2`, on the real broker.

Each worker owns only some partitions, while the key registry, the grants and the policy live on others
(``keys``, ``access:<principal>``, ``policy:*``): every worker reads those itself (``processors/ledger.py``,
``trust_reader.py``) and decides each record as the single processor does (decision 0015, amended). Each
shard keeps its partition's Merkle tree and signs checkpoints, so `modelog audit verify` holds (0023).

The deployment: alice runs `modelog init` (before the workers start, so they sign from their first
checkpoint), gives bob a key and writer on experiment ``wt-a`` only, carol a key and writer everywhere
(revoked later), and turns --require-signatures on.
"""

from __future__ import annotations

import dataclasses
import json

import pytest

import modelog
from modelog import Client, Settings
from modelog.wire.signing import Signer
from waiting import wait_until

from conftest import Processor, deployment_env, run_cli
from test_signed_events import experiment_record, produce

pytestmark = pytest.mark.broker


@dataclasses.dataclass
class Workers:
    env: dict[str, str]
    settings: Settings
    processor: Processor

    def sql(self, query: str) -> list[dict]:
        return modelog.sql_arrow(query, self.settings).to_pylist()

    def key_file(self, principal: str):
        from modelog.wire.signing import key_path

        return key_path(self.settings.home, principal)

    def dead_letter(self, reason: str, contains: str, timeout: float = 60) -> dict:
        def find():
            hits = [r for r in self.sql(f"SELECT * FROM dead_letters WHERE reason = '{reason}'")
                    if contains in r["detail"]]
            return hits[0] if hits else None

        return wait_until(find, timeout, lambda: f"a {reason} dead letter about {contains!r}; have "
                          f"{self.sql('SELECT reason, detail FROM dead_letters')}")

    def dead_letter_at(self, tp, offset: int, timeout: float = 60) -> dict:
        """The dead letter of the record at ``tp`` / ``offset``, once there."""
        return wait_until(lambda: next(iter(self.sql(
            f"SELECT * FROM dead_letters WHERE topic = '{tp[0]}' AND \"partition\" = {tp[1]} AND \"offset\" = {offset}")),
            None), timeout, lambda: f"a dead letter at {tp}/{offset}; have {self.sql('SELECT * FROM dead_letters')}")

    def experiments(self, name: str) -> list[dict]:
        return self.sql(f"SELECT * FROM experiments WHERE experiment = '{name}'")

    def audit_rows(self, name: str) -> list[dict]:
        return self.sql(f"SELECT * FROM audit_log WHERE entity_key = '{name}'")


@pytest.fixture(scope="module")
def workers(bootstrap, tmp_path_factory):
    home = tmp_path_factory.mktemp("workers-trust") / "home"
    env = dict(deployment_env(bootstrap, home, "alice"), MODELOG_LAKE=str(home.parent / "lake"),
               MODELOG_CHECKPOINT_EVERY="8", MODELOG_CHECKPOINT_SECONDS="1")
    settings = Settings.load(env=env)
    run_cli(env, "init")  # before the workers start: they sign every checkpoint with the projector's key
    processor = Processor(env, settings, args=("--workers", "2")).start(timeout=120)
    try:
        w = Workers(env, settings, processor)
        for who in ("bob", "carol"):
            run_cli(env, "keys", "create", "--principal", who)
        run_cli(env, "access", "grant", "bob", "writer", "--experiment", "wt-a")
        run_cli(env, "access", "grant", "carol", "writer")

        def ready():
            keys = {r["principal"] for r in w.sql("SELECT principal FROM signing_keys WHERE status = 'active'")}
            roles = {r["principal"] for r in w.sql("SELECT principal FROM role_assignments")}
            return {"alice", "bob", "carol", "modelog-projector"} <= keys and {"bob", "carol"} <= roles

        wait_until(ready, 60, lambda: f"init's, bob's and carol's keys and roles; dead letters: "
                                      f"{w.sql('SELECT reason, detail FROM dead_letters')}")
        run_cli(env, "policy", "set", "--require-signatures")
        wait_until(lambda: w.sql("SELECT require_signatures FROM signature_policy") == [{"require_signatures": True}],
                   60, "the require-signatures switch is on")
        # the admin's changes were accepted by whichever worker owns their partitions: none was refused
        assert w.sql("SELECT reason, detail FROM dead_letters") == []
        yield w
    finally:
        processor.stop()


def test_the_two_workers_share_the_partitions(workers):
    info = json.loads((workers.settings.home / "processor.json").read_text())
    assert len(info["workers"]) == 2


def test_a_signed_and_granted_write_projects_verified_on_any_partition(workers):
    bob = Client(dataclasses.replace(workers.settings, principal="bob"))
    try:
        ids = []
        for i in range(6):  # several runs: their records land on every partition, so on both workers
            with bob.start_run("wt-a", name=f"r{i}") as run:
                run.log_params({"i": i})
                run.log_metric("loss", 1.0 / (i + 1))
            ids.append(run.id)
        bob.flush()
    finally:
        bob.close()
    wait_until(lambda: len(workers.sql("SELECT run_id FROM runs WHERE experiment = 'wt-a' AND status = 'FINISHED'"))
               == 6, 60, lambda: f"bob's six runs; dead letters: {workers.sql('SELECT reason, detail FROM dead_letters')}")
    partitions = {r["partition"] for r in workers.sql(
        "SELECT DISTINCT \"partition\" FROM audit_log WHERE actor = 'bob'")}
    assert len(partitions) >= 2, partitions  # the trust records are on other partitions than these writes
    rows = workers.sql("SELECT actor, verified FROM audit_log WHERE actor = 'bob'")
    assert rows and all(r["verified"] for r in rows)
    assert workers.sql("SELECT count(*) AS n FROM dead_letters WHERE detail LIKE '%''bob''%'") == [{"n": 0}]


def test_an_unsigned_event_straight_to_kafka_is_refused(workers):
    (tp, offset), _, _ = produce(workers, experiment_record("bob", "wt-unsigned"), None)
    dl = workers.dead_letter_at(tp, offset)
    assert dl["reason"] == "unsigned" and "ExperimentCreated by 'bob'" in dl["detail"], dl
    assert workers.experiments("wt-unsigned") == [] and workers.audit_rows("wt-unsigned") == []


def test_a_forged_signature_is_refused(workers):
    stranger = Signer.generate()  # a key nobody registered, claiming to be bob
    (tp, offset), _, _ = produce(workers, experiment_record("bob", "wt-forged"), stranger)
    dl = workers.dead_letter("unknown_key", stranger.key_id)
    assert (dl["partition"], dl["offset"]) == (tp[1], offset)
    bob = Signer.from_pem(workers.key_file("bob").read_bytes())
    (tp2, offset2), _, _ = produce(workers, experiment_record("alice", "wt-as-alice"), bob)  # bob's key, alice's name
    dl2 = workers.dead_letter("actor_mismatch", bob.key_id)
    assert (dl2["partition"], dl2["offset"]) == (tp2[1], offset2)
    assert workers.experiments("wt-forged") == [] and workers.experiments("wt-as-alice") == []


def test_a_write_without_a_grant_is_refused(workers):
    bob = Signer.from_pem(workers.key_file("bob").read_bytes())
    (tp, offset), _, _ = produce(workers, experiment_record("bob", "wt-b"), bob)  # bob holds writer on wt-a only
    dl = workers.dead_letter("not_authorized", "on experiment 'wt-b'")
    assert (dl["partition"], dl["offset"]) == (tp[1], offset)
    assert workers.experiments("wt-b") == [] and workers.audit_rows("wt-b") == []


def test_a_revoked_key_is_refused_after_its_revocation(workers):
    carol = Signer.from_pem(workers.key_file("carol").read_bytes())
    (tp, offset), _, _ = produce(workers, experiment_record("carol", "wt-before-revocation"), carol)
    wait_until(lambda: workers.experiments("wt-before-revocation"), 60, "carol's write before the revocation")
    run_cli(workers.env, "keys", "revoke", carol.key_id, "--reason", "laptop stolen")
    # no waiting for the revocation to be projected: the worker deciding carol's next write waits for its
    # trust reader to have read every partition up to that write (the revocation on `keys` is before it)
    (tp2, offset2), _, _ = produce(workers, experiment_record("carol", "wt-after-revocation"), carol)
    dl = workers.dead_letter("revoked_key", carol.key_id)
    assert (dl["partition"], dl["offset"]) == (tp2[1], offset2)
    assert workers.experiments("wt-after-revocation") == []
    assert [r["verified"] for r in workers.audit_rows("wt-before-revocation")] == [True]


def test_a_grant_takes_effect_for_the_very_next_write_on_another_partition(workers):
    run_cli(workers.env, "keys", "create", "--principal", "dave")
    dave = Signer.from_pem(workers.key_file("dave").read_bytes())
    run_cli(workers.env, "access", "grant", "dave", "writer", "--experiment", "wt-dave")
    (tp, offset), _, _ = produce(workers, experiment_record("dave", "wt-dave"), dave)  # at once, no waiting
    wait_until(lambda: workers.experiments("wt-dave"), 60,
               lambda: f"dave's write; dead letters: {workers.sql('SELECT reason, detail FROM dead_letters')}")
    assert [(r["actor"], r["verified"]) for r in workers.audit_rows("wt-dave")] == [("dave", True)]


def test_audit_verify_passes_on_the_workers_checkpoints(workers):
    def verified():
        out = run_cli(workers.env, "audit", "verify", "--json", "--idle-timeout", "3", check=False)
        report = json.loads(out.stdout) if out.stdout.strip() else None
        # every record checkpointed: each shard checkpoints its partition within MODELOG_CHECKPOINT_SECONDS
        return report if out.returncode == 0 and report and not report["uncovered"] else None

    report = wait_until(verified, 90, lambda: "audit verify passes with every record checkpointed")
    assert report["ok"] and report["matched"] > 0 and not report["findings"], report
    assert report["partitions"] >= workers.settings.partitions, report
    assert set(report["signatures"]) == {"signed by modelog-projector"}, report  # both workers signed theirs

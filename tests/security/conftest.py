"""Real broker, real processor process, real DuckDB files -- as tests/integration/conftest.py -- plus a
secured deployment: `modelog init` (alice is the bootstrap admin), a key for bob created by alice, and
``--require-signatures`` on. The attacks in this folder run against it, one test each (decision 0015)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import modelog
from modelog import Settings
from harness import SESSION_TIMEOUT_MS, Processor, run_cli  # noqa: F401  (the tests import them from here)
from waiting import wait_until



@pytest.fixture(scope="session")
def bootstrap(tmp_path_factory):
    """The embedded tansu broker on a free port, in-memory storage (security tests need no Docker)."""
    from modelog.local.broker import running_broker

    with running_broker(tmp_path_factory.mktemp("broker-home"), storage="memory") as address:
        yield address


def deployment_env(bootstrap: str, home: Path, principal: str) -> dict[str, str]:
    return {
        "MODELOG_HOME": str(home),
        "MODELOG_KAFKA_BOOTSTRAP": bootstrap,
        "MODELOG_TOPIC_PREFIX": f"s{uuid.uuid4().hex[:10]}.",
        "MODELOG_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS),
        "MODELOG_LINGER_MS": "20",
        "MODELOG_PRINCIPAL": principal,
    }


@dataclass
class Secured:
    """A deployment after `modelog init` by alice, bob's key, and --require-signatures."""

    env: dict[str, str]  # alice's (the admin's) environment
    settings: Settings
    processor: Processor
    keys: dict[str, str] = field(default_factory=dict)  # principal -> key id
    unsigned_before_policy: str = ""  # event id of an unsigned event accepted before the policy

    def sql(self, query: str) -> list[dict]:
        return modelog.sql_arrow(query, self.settings).to_pylist()

    def as_(self, principal: str, **extra: str) -> dict[str, str]:
        """The environment of another principal on the same deployment."""
        return {**self.env, "MODELOG_PRINCIPAL": principal, **extra}

    def key_file(self, principal: str) -> Path:
        from modelog.wire.signing import key_path

        return key_path(self.settings.home, principal)

    def snapshot(self) -> dict:
        """What an attack must not change: every row of the views it could touch."""
        out = {}
        for view, order in (("experiments", "experiment"), ("runs", "run_id"), ("signing_keys", "key_id"),
                            ("signature_policy", "set_at"), ("role_assignments", "principal, role"),
                            ("policies", "scope, seq"), ("tags", "run_id, key")):
            out[view] = self.sql(f"SELECT * FROM {view} ORDER BY {order}")
        out["audit_log"] = self.sql("SELECT event_id, actor, verified, key_id FROM audit_log ORDER BY event_id")
        return out

    def dead_letter(self, reason: str, contains: str, timeout: float = 30) -> dict:
        """Wait for the dead letter with ``reason`` whose detail contains ``contains``; return it."""
        def find():
            rows = self.sql(f"SELECT * FROM dead_letters WHERE reason = '{reason}'")
            hits = [r for r in rows if contains in r["detail"]]
            return hits[0] if hits else None

        return wait_until(find, timeout, lambda: f"a {reason} dead letter about {contains!r}; have "
                          f"{self.sql('SELECT reason, detail FROM dead_letters')}")

    def wait_offsets(self, offsets: dict[tuple[str, int], int], timeout: float = 30) -> None:
        from modelog.consumers.query import wait_projected

        wait_projected(self.settings, offsets, timeout)


@pytest.fixture(scope="module")
def secured(bootstrap, tmp_path_factory):
    home = tmp_path_factory.mktemp("secured") / "home"
    env = deployment_env(bootstrap, home, "alice")
    settings = Settings.load(env=env)
    processor = Processor(env, settings).start()
    try:
        s = Secured(env, settings, processor)
        # before modelog init: an unsigned event is accepted, shown unverified (a fresh local install)
        unsigned = run_cli(s.as_("dave"), "access", "grant", "dave", "reader")
        assert unsigned.returncode == 0
        run_cli(env, "init")
        run_cli(env, "keys", "create", "--principal", "bob")
        run_cli(env, "access", "grant", "bob", "writer")  # once governed, every write needs a role (decision 0017)

        def keys():
            rows = s.sql("SELECT principal, key_id FROM signing_keys WHERE status = 'active'")
            got = {r["principal"]: r["key_id"] for r in rows}
            return got if {"alice", "bob", "modelog-projector", "modelog-server"} <= set(got) else None

        s.keys = wait_until(keys, 30, lambda: f"init's and bob's keys are registered; dead letters: "
                                              f"{s.sql('SELECT reason, detail FROM dead_letters')}")
        run_cli(env, "policy", "set", "--require-signatures")
        wait_until(lambda: s.sql("SELECT require_signatures FROM signature_policy") == [{"require_signatures": True}],
                   30, "the require-signatures switch is on")
        s.unsigned_before_policy = s.sql("SELECT event_id FROM audit_log WHERE actor = 'dave'")[0]["event_id"]
        yield s
    finally:
        processor.stop()

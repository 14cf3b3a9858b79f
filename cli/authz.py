"""The authorization rule of every CLI command: who may run it, and who enforces that (issue 12).

The CLI is a client: what it publishes is decided by the processor, what it reads comes from the views,
and what it starts runs on this machine. Each command therefore has exactly one of these rules, and
``tests/unit/cli/test_authz.py`` fails when a command is added without one (as ``test_api_auth`` does
for the HTTP routes):

* ``local``  -- operates this machine's processes and files under MODELOG_HOME (the broker, the
  processors, the server, a rebuild, key files): the operating system's permissions on MODELOG_HOME
  (the key files and the admin token are mode 0600). Reading the raw log (``rebuild``, ``audit
  verify``) is also ``local``: it bypasses the views' read filtering, so only whoever may read the
  topics themselves may run it -- on the embedded broker whoever reaches its loopback port, on a real
  Kafka the principal's ACLs (Read on the modelog topics); nothing in modelog can narrow that.
* ``read``   -- reads the views (SQL, registry, lineage, alerts, artifacts): whoever reaches the
  processor's endpoint (127.0.0.1 by default) or the views file; the SQL sandbox and its caps apply.
* ``write``  -- publishes ordinary events (runs, registrations, requests, deployments, artifacts): the
  processor verifies the signature and the actor (decision 0015) and applies the policy's rules.
* ``approver`` -- approves or rejects a request: the processor's decider counts only principals holding
  the policy rule's role, never the requester (admins included), ``approvals`` distinct ones.
* ``admin``  -- grants, policies, signing keys and tokens: after ``modelog init`` the processor refuses
  every key registration and revocation, policy change, grant or revocation of a role and API token
  by a non-admin (dead letter ``not_admin``; docs/security.md).
"""

from __future__ import annotations

LOCAL, READ, WRITE, APPROVER, ADMIN = "local", "read", "write", "approver", "admin"

RULES: dict[str, str] = {
    "modelog broker start": LOCAL, "modelog broker stop": LOCAL, "modelog broker status": LOCAL,
    "modelog process": LOCAL, "modelog rebuild": LOCAL, "modelog serve": LOCAL, "modelog drift": LOCAL,
    "modelog alerts webhook": LOCAL, "modelog schemas": LOCAL, "modelog init": LOCAL, "modelog keys create": LOCAL,
    "modelog demo": LOCAL, "modelog demo monitoring": LOCAL, "modelog audit verify": LOCAL,
    "modelog sql": READ, "modelog lineage upstream": READ, "modelog lineage downstream": READ,
    "modelog model download": READ, "modelog model list": READ, "modelog model show": READ,
    "modelog requests list": READ, "modelog deploy list": READ, "modelog access list": READ,
    "modelog policy show": READ, "modelog token list": READ, "modelog alerts tail": READ,
    "modelog artifacts list": READ, "modelog artifacts get": READ, "modelog keys list": READ,
    "modelog model register": WRITE, "modelog model promote": WRITE, "modelog model alias": WRITE,
    "modelog model unalias": WRITE, "modelog model deprecate": WRITE, "modelog model archive": WRITE,
    "modelog model delete-version": WRITE, "modelog model delete": WRITE, "modelog model annotate": WRITE,
    "modelog deploy record": WRITE, "modelog deploy rollback": WRITE, "modelog monitor reference": WRITE,
    "modelog monitor configure": WRITE, "modelog artifacts log": WRITE, "modelog import tensorboard": WRITE,
    "modelog import mlflow": WRITE,
    "modelog requests approve": APPROVER, "modelog requests reject": APPROVER,
    "modelog access grant": ADMIN, "modelog access revoke": ADMIN, "modelog policy set": ADMIN,
    "modelog token create": ADMIN, "modelog token revoke": ADMIN, "modelog keys revoke": ADMIN,
    # erasure: the data key's deletion is authorized by write access to the key store ($MODELOG_HOME/keystore,
    # mode 0600; a KMS's permissions later), like any crypto-shredding; the event records who (decision 0018)
    "modelog erase": ADMIN,
}


def rule_of(command_path: str) -> str:
    """The rule of a command (its full name, e.g. ``modelog model promote``); KeyError if it has none."""
    return RULES[command_path]

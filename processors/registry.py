"""The registry event family: models, versions, aliases, stages, deployments, access, policies, decisions.

Base tables (facts) and event -> rows projections. Pure: no faust, no duckdb.
Version numbers, current stages and aliases are derived by ``views_registry.sql``.

Decisions have two sources in ``log_decisions`` / ``log_decision_effects``:
``computed`` rows the processor writes when it decides a request, and
``recorded`` rows projected from the ``RequestDecided`` event in the log. The
views prefer the recorded row, so the log is authoritative on every replay.
"""

from __future__ import annotations

import pyarrow as pa

from .keys import signature_policy_rows
from .privacy import sensitive_rows
from .rows import Rows, add

TS = pa.timestamp("us")
_MAP = pa.map_(pa.string(), pa.string())
_LIST = pa.list_(pa.string())

TABLES: dict[str, pa.Schema] = {
    "log_model_versions": pa.schema([
        ("event_id", pa.string()), ("model", pa.string()), ("run_id", pa.string()), ("artifact", pa.string()),
        ("uri", pa.string()), ("semver", pa.string()), ("description", pa.string()), ("tags", _MAP),
        ("registered_at", TS), ("registered_by", pa.string()),
    ]),
    "log_model_annotations": pa.schema([
        ("event_id", pa.string()), ("model", pa.string()), ("version", pa.int64()), ("description", pa.string()),
        ("tags", _MAP), ("removed_tags", _LIST), ("annotations", _MAP), ("annotated_at", TS), ("actor", pa.string()),
    ]),
    "log_requests": pa.schema([
        ("request_id", pa.string()), ("model", pa.string()), ("action", pa.string()), ("version", pa.int64()),
        ("stage", pa.string()), ("alias", pa.string()), ("comment", pa.string()), ("requested_at", TS),
        ("requested_by", pa.string()),
    ]),
    "log_approvals": pa.schema([
        ("event_id", pa.string()), ("model", pa.string()), ("request_id", pa.string()), ("verdict", pa.string()),
        ("comment", pa.string()), ("given_at", TS), ("approver", pa.string()),
    ]),
    "log_decisions": pa.schema([
        ("request_id", pa.string()), ("source", pa.string()), ("event_id", pa.string()), ("model", pa.string()),
        ("outcome", pa.string()), ("reason", pa.string()), ("decided_at", TS), ("trigger_offset", pa.int64()),
        ("rules", _LIST), ("evidence", _MAP),
    ]),
    "log_decision_effects": pa.schema([
        ("request_id", pa.string()), ("source", pa.string()), ("model", pa.string()), ("seq", pa.int32()),
        ("kind", pa.string()), ("version", pa.int64()), ("stage", pa.string()), ("alias", pa.string()),
        ("decided_at", TS), ("trigger_offset", pa.int64()),
    ]),
    "log_deployments": pa.schema([
        ("event_id", pa.string()), ("model", pa.string()), ("version", pa.int64()), ("environment", pa.string()),
        ("endpoint", pa.string()), ("deployed_at", TS), ("rollback_of", pa.int64()), ("comment", pa.string()),
        ("deployed_by", pa.string()),
    ]),
    "log_access": pa.schema([
        ("event_id", pa.string()), ("principal", pa.string()), ("role", pa.string()), ("model", pa.string()),
        ("granted", pa.bool_()), ("changed_at", TS), ("changed_by", pa.string()), ("experiment", pa.string()),
    ]),
    "log_policies": pa.schema([
        ("event_id", pa.string()), ("scope", pa.string()), ("set_at", TS), ("set_by", pa.string()),
        ("rule_count", pa.int32()),
    ]),
    "log_policy_rules": pa.schema([
        ("event_id", pa.string()), ("scope", pa.string()), ("seq", pa.int32()), ("name", pa.string()),
        ("kind", pa.string()), ("action", pa.string()), ("stage", pa.string()), ("role", pa.string()),
        ("metric", pa.string()), ("op", pa.string()), ("threshold", pa.float64()), ("set_at", TS),
        ("approvals", pa.int32()),
    ]),
}
PRIMARY_KEYS: dict[str, tuple[str, ...]] = {}
VIEWS: tuple[str, ...] = (
    "registered_versions", "decisions", "decision_effects", "stage_history", "alias_history", "model_aliases",
    "model_versions", "models", "model_annotations", "requests", "approvals", "deployments", "current_deployments", "role_assignments", "policies",
    "model_lineage_edges",
)
VIEWS_SQL = "views_registry.sql"

GLOBAL_SCOPE = "*"


def _who(r: dict) -> tuple[str, int]:
    env = r["envelope"]
    return env["actor"]["principal"], env["occurred_at"]


def _version_registered(r: dict, out: Rows) -> None:
    who, at = _who(r)
    add(out, "log_model_versions", event_id=r["envelope"]["event_id"], model=r["model"], run_id=r.get("run_id"),
        artifact=r.get("artifact"), uri=r.get("uri"), semver=r.get("semver"), description=r.get("description"),
        tags=list(r.get("tags", {}).items()), registered_at=at, registered_by=who)


def _annotated(r: dict, out: Rows) -> None:
    who, at = _who(r)
    add(out, "log_model_annotations", event_id=r["envelope"]["event_id"], model=r["model"], version=r.get("version"),
        description=r.get("description"), tags=list(r.get("tags", {}).items()),
        removed_tags=list(r.get("removed_tags", [])), annotations=list(r.get("annotations", {}).items()),
        annotated_at=at, actor=who)


def request_row(r: dict) -> dict:
    who, at = _who(r)
    return dict(request_id=r["envelope"]["event_id"], model=r["model"], action=r["action"], version=r.get("version"),
                stage=r.get("stage"), alias=r.get("alias"), comment=r.get("comment"), requested_at=at,
                requested_by=who)


def _requested(r: dict, out: Rows) -> None:
    add(out, "log_requests", **request_row(r))


def _approval(r: dict, out: Rows) -> None:
    who, at = _who(r)
    add(out, "log_approvals", event_id=r["envelope"]["event_id"], model=r["model"], request_id=r["request_id"],
        verdict=r["verdict"], comment=r.get("comment"), given_at=at, approver=who)


def decision_rows(r: dict, source: str, out: Rows) -> None:
    """Rows of a RequestDecided record (``source``: 'recorded' from the log, 'computed' by the decider)."""
    add(out, "log_decisions", request_id=r["request_id"], source=source, event_id=r["envelope"]["event_id"],
        model=r["model"], outcome=r["outcome"], reason=r["reason"], decided_at=r["decided_at"],
        trigger_offset=r["trigger_offset"], rules=list(r.get("rules", [])),
        evidence=list(r.get("evidence", {}).items()))
    for seq, e in enumerate(r.get("effects", [])):
        add(out, "log_decision_effects", request_id=r["request_id"], source=source, model=r["model"], seq=seq,
            kind=e["kind"], version=e.get("version"), stage=e.get("stage"), alias=e.get("alias"),
            decided_at=r["decided_at"], trigger_offset=r["trigger_offset"])


def _decided(r: dict, out: Rows) -> None:
    decision_rows(r, "recorded", out)


def _deployed(r: dict, out: Rows) -> None:
    who, _ = _who(r)
    add(out, "log_deployments", event_id=r["envelope"]["event_id"], model=r["model"], version=r["version"],
        environment=r["environment"], endpoint=r.get("endpoint"), deployed_at=r["deployed_at"],
        rollback_of=r.get("rollback_of"), comment=r.get("comment"), deployed_by=who)


def _access(r: dict, out: Rows) -> None:
    who, at = _who(r)
    add(out, "log_access", event_id=r["envelope"]["event_id"], principal=r["principal"], role=r["role"],
        model=r.get("model"), granted=r.get("granted", True), changed_at=at, changed_by=who,
        experiment=r.get("experiment"))


def _policy(r: dict, out: Rows) -> None:
    who, at = _who(r)
    scope = r.get("model") or GLOBAL_SCOPE
    eid = r["envelope"]["event_id"]
    rules = r.get("rules", [])
    signature_policy_rows(r, out)
    sensitive_rows(r, out)
    if r.get("rules_unchanged"):  # only the require-signatures switch or the sensitive list changes
        return
    add(out, "log_policies", event_id=eid, scope=scope, set_at=at, set_by=who, rule_count=len(rules))
    for seq, rule in enumerate(rules):
        add(out, "log_policy_rules", event_id=eid, scope=scope, seq=seq, name=rule["name"], kind=rule["kind"],
            action=rule["action"], stage=rule.get("stage"), role=rule.get("role"), metric=rule.get("metric"),
            op=rule.get("op"), threshold=rule.get("threshold"), set_at=at, approvals=rule.get("approvals"))


PROJECTIONS = {
    "ModelVersionRegistered": _version_registered,
    "ModelAnnotated": _annotated,
    "ChangeRequested": _requested,
    "ApprovalGiven": _approval,
    "RequestDecided": _decided,
    "DeploymentRecorded": _deployed,
    "AccessChanged": _access,
    "PolicySet": _policy,
}

# Events after which the decider looks at the model's pending requests.
DECISION_TRIGGERS = frozenset({"ChangeRequested", "ApprovalGiven"})

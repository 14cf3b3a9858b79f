"""Deciding governed change requests. Pure: no faust, no duckdb (``decider.py`` loads the state).

``decide(request, state)`` returns the outcome of one request against the model's
state, its policy rules, the approvals given so far and the metrics the gates
read -- or ``None`` while an approval rule is still waiting. It is a function of
its arguments only, so the same log gives the same decisions.

Built-in invariants (always applied, before any policy rule):
  * the model must have a version that is not deleted;
  * a named version must exist and not be deleted;
  * PROMOTE targets development | staging | production; archived versions are never promoted;
  * an alias can only point at an existing, non-archived version; REMOVE_ALIAS needs a set alias;
  * a request that would change nothing (already in that stage, alias already there) is rejected.

Policy rules (data, from PolicySet events), for the request's action (and, for PROMOTE, stage):
  * METRIC_GATE: the version's run's latest ``metric`` must satisfy ``op threshold``;
  * APPROVAL: APPROVEs from ``approvals`` (default 1) distinct principals holding ``role`` (for every
    model or this one), none of them the requester -- admins included; a REJECT from such a principal
    rejects the request.

Effects of an approval (what the views apply):
  * PROMOTE v -> S: STAGE(v, S); to production also moves the previous production version(s) to
    deprecated (one production version per model, so "what was in production at T" has one answer);
  * SET_ALIAS / REMOVE_ALIAS: ALIAS(alias, v | None);
  * DEPRECATE / ARCHIVE: STAGE(v, deprecated | archived); archiving also removes v's aliases;
  * DELETE_VERSION: DELETED(v) and v's aliases removed; DELETE_MODEL: every live version deleted.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field

from modelog.wire.rules import PROMOTABLE_STAGES

NEEDS_VERSION = frozenset({"PROMOTE", "SET_ALIAS", "DEPRECATE", "ARCHIVE", "DELETE_VERSION"})
OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt, "==": operator.eq}


@dataclass(frozen=True)
class Request:
    request_id: str
    model: str
    action: str
    version: int | None
    stage: str | None
    alias: str | None
    requested_by: str


@dataclass(frozen=True)
class Rule:
    name: str
    kind: str  # APPROVAL | METRIC_GATE
    action: str
    stage: str | None = None
    role: str | None = None
    metric: str | None = None
    op: str | None = None
    threshold: float | None = None
    approvals: int | None = None  # APPROVAL: distinct approvers required (None: 1)

    def applies_to(self, req: Request) -> bool:
        return self.action == req.action and (self.stage is None or self.stage == req.stage)


@dataclass(frozen=True)
class Approval:
    approver: str
    verdict: str  # APPROVE | REJECT
    roles: frozenset[str]  # roles the approver holds for this model (global or scoped)
    comment: str | None = None


@dataclass
class State:
    """What the decider knows about one model when it decides."""

    versions: dict[int, str] = field(default_factory=dict)  # version -> stage ('deleted' for tombstones)
    runs: dict[int, str | None] = field(default_factory=dict)  # version -> run id
    aliases: dict[str, int] = field(default_factory=dict)
    rules: list[Rule] = field(default_factory=list)
    approvals: list[Approval] = field(default_factory=list)
    metrics: dict[tuple[str, str], float] = field(default_factory=dict)  # (run_id, key) -> latest value


@dataclass(frozen=True)
class Effect:
    kind: str  # STAGE | ALIAS | DELETED
    version: int | None = None
    stage: str | None = None
    alias: str | None = None

    def record(self) -> dict:
        return {"kind": self.kind, "version": self.version, "stage": self.stage, "alias": self.alias}


@dataclass(frozen=True)
class Decision:
    outcome: str  # APPROVED | REJECTED
    reason: str
    rules: tuple[str, ...] = ()
    evidence: tuple[tuple[str, str], ...] = ()
    effects: tuple[Effect, ...] = ()


def _reject(reason: str, rules=(), evidence=()) -> Decision:
    return Decision("REJECTED", reason, tuple(rules), tuple(evidence))


def _invariants(req: Request, s: State) -> str | None:
    """The reason the request is impossible, or None."""
    live = {v: st for v, st in s.versions.items() if st != "deleted"}
    if not live:
        return f"model {req.model!r} has no versions" + (" (all deleted)" if s.versions else "")
    if req.action == "UNKNOWN":
        return "unknown action (written by a newer modelog?)"
    v = req.version
    if req.action in NEEDS_VERSION:
        if v is None:
            return f"{req.action} needs a version"
        if v not in s.versions:
            return f"model {req.model!r} has no version {v} (latest is {max(s.versions)})"
        if s.versions[v] == "deleted":
            return f"version {v} of {req.model!r} is deleted"
    stage = s.versions.get(v) if v is not None else None
    if req.action == "PROMOTE":
        if req.stage not in PROMOTABLE_STAGES:
            return f"stage must be one of {', '.join(PROMOTABLE_STAGES)} (got {req.stage!r})"
        if stage == "archived":
            return f"version {v} is archived; archived versions cannot be promoted"
        if stage == req.stage:
            return f"version {v} is already in {stage}"
    elif req.action == "SET_ALIAS":
        if not req.alias:
            return "SET_ALIAS needs an alias"
        if stage == "archived":
            return f"version {v} is archived; an alias cannot point at it"
        if s.aliases.get(req.alias) == v:
            return f"alias {req.alias!r} already points at version {v}"
    elif req.action == "REMOVE_ALIAS":
        if not req.alias:
            return "REMOVE_ALIAS needs an alias"
        if req.alias not in s.aliases:
            return f"alias {req.alias!r} is not set on {req.model!r}"
    elif req.action == "DEPRECATE":
        if stage in ("deprecated", "archived"):
            return f"version {v} is already {stage}"
    elif req.action == "ARCHIVE":
        if stage == "archived":
            return f"version {v} is already archived"
    return None


def _effects(req: Request, s: State) -> tuple[Effect, ...]:
    v = req.version
    out: list[Effect] = []

    def drop_aliases(version: int) -> None:
        out.extend(Effect("ALIAS", None, None, a) for a, held in sorted(s.aliases.items()) if held == version)

    if req.action == "PROMOTE":
        if req.stage == "production":
            out.extend(Effect("STAGE", other, "deprecated") for other, st in sorted(s.versions.items())
                       if st == "production" and other != v)
        out.append(Effect("STAGE", v, req.stage))
    elif req.action == "SET_ALIAS":
        out.append(Effect("ALIAS", v, None, req.alias))
    elif req.action == "REMOVE_ALIAS":
        out.append(Effect("ALIAS", None, None, req.alias))
    elif req.action == "DEPRECATE":
        out.append(Effect("STAGE", v, "deprecated"))
    elif req.action == "ARCHIVE":
        drop_aliases(v)
        out.append(Effect("STAGE", v, "archived"))
    elif req.action == "DELETE_VERSION":
        drop_aliases(v)
        out.append(Effect("DELETED", v))
    elif req.action == "DELETE_MODEL":
        for other, st in sorted(s.versions.items()):
            if st != "deleted":
                drop_aliases(other)
                out.append(Effect("DELETED", other))
    return tuple(out)


def _fmt(x: float) -> str:
    return repr(x) if math.isfinite(x) else str(x)


def decide(req: Request, s: State) -> Decision | None:
    """The decision on ``req`` given ``s``; None while an approval rule is still waiting."""
    problem = _invariants(req, s)
    if problem:
        return _reject(problem, ["invariants"])
    applicable = [r for r in s.rules if r.applies_to(req)]
    names = ["invariants"] + [r.name for r in applicable]
    evidence: list[tuple[str, str]] = []
    waiting: list[str] = []
    for rule in applicable:
        if rule.kind == "METRIC_GATE":
            run_id = s.runs.get(req.version) if req.version is not None else None
            if rule.metric is None or rule.op not in OPS or rule.threshold is None:
                return _reject(f"rule {rule.name!r} is malformed (metric, op and threshold required)", names, evidence)
            if run_id is None:
                return _reject(f"rule {rule.name!r}: version {req.version} has no run, so {rule.metric} is unknown",
                               names, evidence)
            value = s.metrics.get((run_id, rule.metric))
            if value is None:
                return _reject(f"rule {rule.name!r}: run {run_id} has no metric {rule.metric!r}", names, evidence)
            evidence.append((f"{rule.name}.{rule.metric}", _fmt(value)))
            if math.isnan(value) or not OPS[rule.op](value, rule.threshold):
                return _reject(f"rule {rule.name!r}: {rule.metric} = {_fmt(value)} is not {rule.op} "
                               f"{_fmt(rule.threshold)}", names, evidence)
        elif rule.kind == "APPROVAL":
            valid = [a for a in s.approvals
                     if a.approver != req.requested_by and (rule.role is None or rule.role in a.roles)]
            rejections = [a for a in valid if a.verdict == "REJECT"]
            if rejections:
                a = rejections[0]
                evidence.append((f"{rule.name}.rejected_by", a.approver))
                return _reject(f"rule {rule.name!r}: rejected by {a.approver}"
                               + (f": {a.comment}" if a.comment else ""), names, evidence)
            approvers = list(dict.fromkeys(a.approver for a in valid if a.verdict == "APPROVE"))  # distinct, in order
            needed = max(1, rule.approvals or 1)
            if len(approvers) < needed:
                waiting.append(rule.name)
                continue
            evidence.append((f"{rule.name}.approved_by", ", ".join(approvers[:needed])))
        else:
            return _reject(f"rule {rule.name!r} has unknown kind {rule.kind!r}", names, evidence)
    if waiting:
        return None
    passed = ", ".join(r.name for r in applicable) or "no policy rules apply"
    return Decision("APPROVED", f"approved ({passed})", tuple(names), tuple(evidence), _effects(req, s))

"""The decider's I/O: load a model's state from the views (inside the batch's transaction) and turn
:func:`governance.decide` outcomes into ``RequestDecided`` records.

It runs inside :meth:`ViewStore.apply` right after a trigger event (a request, or an approval) has
been written, so it sees every earlier event of the model's partition, its own earlier decisions
included. The record's event_id is derived from the request id and ``decided_at`` is the trigger's
``occurred_at``: deciding the same request twice yields the same event.
"""

from __future__ import annotations

import os
import socket
import uuid

import duckdb

from modelog._version import __version__

from .governance import Approval, Decision, Request, Rule, State, decide
from .registry import DECISION_TRIGGERS, GLOBAL_SCOPE
from .rows import RawRecord

_NS = uuid.UUID("6d6f6465-6c6f-6700-8000-646563696465")  # "modelog" / "decide"


def decision_event_id(request_id: str) -> str:
    return str(uuid.uuid5(_NS, request_id))


class Decider:
    """Decides the pending requests a trigger event concerns."""

    def __init__(self, principal: str = "modelog-processor") -> None:
        self.actor = {"principal": principal, "kind": "SERVICE"}
        self.source = {"host": socket.gethostname(), "pid": os.getpid(), "program": "modelog-processor",
                       "sdk_version": __version__}

    def after(self, con: duckdb.DuckDBPyConnection, event_type: str, record: dict,
              position: RawRecord) -> list[dict]:
        """RequestDecided records for the requests ``record`` (just written) completes."""
        if event_type not in DECISION_TRIGGERS:
            return []
        request_id = record["envelope"]["event_id"] if event_type == "ChangeRequested" else record["request_id"]
        req = self._pending(con, request_id)
        if req is None:
            return []
        decision = decide(req, self.state(con, req))
        if decision is None:
            return []
        return [self._record(req, decision, record["envelope"]["occurred_at"], position.offset)]

    @staticmethod
    def _pending(con: duckdb.DuckDBPyConnection, request_id: str) -> Request | None:
        row = con.execute(
            "SELECT request_id, model, action, version, stage, alias, requested_by FROM log_requests q "
            "WHERE request_id = ? AND NOT EXISTS (SELECT 1 FROM log_decisions d WHERE d.request_id = q.request_id) "
            "LIMIT 1", [request_id]).fetchone()
        return None if row is None else Request(*row)

    @staticmethod
    def state(con: duckdb.DuckDBPyConnection, req: Request) -> State:
        s = State()
        for version, stage, run_id in con.execute(
                "SELECT r.version, coalesce(h.stage, 'development'), r.run_id FROM registered_versions r "
                "LEFT JOIN (SELECT version, stage FROM stage_history WHERE model = $1 AND valid_to IS NULL "
                "           QUALIFY row_number() OVER (PARTITION BY version ORDER BY log_offset DESC, seq DESC) = 1) h "
                "USING (version) WHERE r.model = $1", [req.model]).fetchall():
            s.versions[version] = stage
            s.runs[version] = run_id
        s.aliases = dict(con.execute("SELECT alias, version FROM model_aliases WHERE model = ?", [req.model]).fetchall())
        s.rules = [Rule(*row) for row in con.execute(
            "SELECT name, kind, action, stage, role, metric, op, threshold, approvals FROM policies "
            "WHERE scope IN (?, ?) ORDER BY scope = '*', seq", [req.model, GLOBAL_SCOPE]).fetchall()]
        approvals = con.execute(
            "SELECT approver, verdict, comment FROM log_approvals WHERE request_id = ? ORDER BY given_at, event_id",
            [req.request_id]).fetchall()
        for approver, verdict, comment in approvals:
            roles = frozenset(r for (r,) in con.execute(
                "SELECT role FROM role_assignments "
                "WHERE principal = ? AND (model = ? OR (model IS NULL AND experiment IS NULL))",
                [approver, req.model]).fetchall())
            s.approvals.append(Approval(approver, verdict, roles, comment))
        gates = {r.metric for r in s.rules if r.kind == "METRIC_GATE" and r.metric and r.applies_to(req)}
        run_id = s.runs.get(req.version) if req.version is not None else None
        if gates and run_id:
            for key, value in con.execute(
                    "SELECT key, value FROM latest_metrics WHERE run_id = ? AND list_contains(?, key)",
                    [run_id, sorted(gates)]).fetchall():
                s.metrics[(run_id, key)] = value
        return s

    def _record(self, req: Request, d: Decision, decided_at: int, trigger_offset: int) -> dict:
        envelope = {
            "event_id": decision_event_id(req.request_id), "event_type": "RequestDecided", "occurred_at": decided_at,
            "actor": self.actor, "source": self.source, "entity": {"type": "model", "key": f"model:{req.model}"},
        }
        return {
            "envelope": envelope, "model": req.model, "request_id": req.request_id, "outcome": d.outcome,
            "reason": d.reason, "decided_at": decided_at, "trigger_offset": trigger_offset, "rules": list(d.rules),
            "evidence": dict(d.evidence), "effects": [e.record() for e in d.effects],
        }

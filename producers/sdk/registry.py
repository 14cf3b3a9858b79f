"""The model registry from the SDK: register versions, annotate, request governed changes, approve,
record deployments, grant roles, set policies.

Every verb publishes one event keyed ``model:<name>`` (``access:<principal>``, ``policy:<scope>`` for
access and policy), so one model's history is one partition, in order. Version numbers and decisions
come from the processor; the verbs that return them wait for the views to catch up with what this
client published (read-your-writes by offset).

    mv = client.registry.register_model("credit-risk", run_id=run.id, artifact="model.pkl", semver="1.2.0")
    status = client.registry.promote("credit-risk", mv.version, to="production", wait=True)
    if not status.approved:
        raise SystemExit(status.reason)
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from modelog.wire import rules as _rules
from modelog.wire.errors import QueryError, ValidationError
from modelog.wire.envelope import now_micros
from modelog.wire.models import tag_texts
from modelog.wire.tokens import check_roles

if TYPE_CHECKING:
    from modelog.sdk.client import Client

ACTIONS = ("PROMOTE", "SET_ALIAS", "REMOVE_ALIAS", "DEPRECATE", "ARCHIVE", "DELETE_VERSION", "DELETE_MODEL")
RULE_KINDS = ("APPROVAL", "METRIC_GATE")
PRECHECK_WAIT = 10.0  # seconds a pre-publish check waits for the views; after that the processor decides


@dataclass(frozen=True)
class ModelVersion:
    """A registered model version. ``version`` is None if the caller did not wait for the number."""

    model: str
    version: int | None
    event_id: str
    run_id: str | None = None
    semver: str | None = None

    @property
    def node(self) -> str:
        return f"model:{self.model}/{self.version}"


@dataclass(frozen=True)
class RequestStatus:
    """Where a governed change request stands: PENDING, APPROVED or REJECTED (with the reason)."""

    request_id: str
    model: str
    action: str
    status: str
    reason: str | None = None

    @property
    def approved(self) -> bool:
        return self.status == "APPROVED"


def _q(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _check_name(field: str, value: Any) -> str:
    try:
        return _rules.name(value)
    except ValueError as exc:
        raise ValidationError(field, value, str(exc)) from None


def _check_version(field: str, value: Any) -> int:
    try:
        _rules.version(value)
    except ValueError as exc:
        raise ValidationError(field, value, str(exc)) from None
    if value is None:
        raise ValidationError(field, value, "must be a version number: an integer >= 1")
    return value


class Registry:
    """Registry verbs on one client. Get it as ``client.registry`` (or use the module-level verbs)."""

    def __init__(self, client: Client) -> None:
        self._client = client

    # -- publishing ------------------------------------------------------------------

    def _publish(self, event_type: str, key: str, entity_type: str = "model", **payload: Any) -> str:
        c = self._client
        event = c.events.make(event_type, entity_type, key, **payload)
        from modelog.wire.models import validate

        validate(event_type, event.record)
        c.emitter.emit([event])
        return event.event_id

    def _sync(self, timeout: float) -> None:
        """Flush and wait until the views hold everything this client published."""
        self._client.wait_projected(timeout)

    def _sql(self, query: str):
        from modelog.consumers.query import sql_arrow

        return sql_arrow(query, self._client.settings).to_pylist()

    def _known_versions(self, model: str) -> list[int] | None:
        """Live version numbers of ``model`` per the views, or None if the views cannot be read.

        Waits (briefly) for the views to hold this client's own earlier events first.
        """
        try:
            self._sync(PRECHECK_WAIT)
            return [r["version"] for r in self._sql(f"SELECT version FROM model_versions WHERE model = {_q(model)}")]
        except QueryError:
            return None

    def _precheck(self, model: str, version: int | None) -> None:
        """Reject before publishing what the views already show to be impossible (when they can be read)."""
        versions = self._known_versions(model)
        if versions is None:
            return  # no views reachable: the processor decides (and rejects with a reason)
        if not versions:
            raise ValidationError("model", model, "must be a registered model with a version that is not deleted")
        if version is not None and version not in versions:
            raise ValidationError("version", version, f"must be a live version of {model!r} "
                                                      f"(known: {', '.join(map(str, sorted(versions)))})")

    # -- versions --------------------------------------------------------------------

    def register_model(self, model: str, *, run_id: str | None = None, artifact: str | None = None,
                       uri: str | None = None, semver: str | None = None, description: str | None = None,
                       tags: Mapping[str, Any] | None = None, wait: bool = True,
                       timeout: float = 30.0) -> ModelVersion:
        """Register a new version of ``model``; with ``wait`` (default) return it with its number.

        Numbers are 1, 2, 3... per model in log order, assigned by the processor.
        Raises ValidationError (bad name, semver, tags) before publishing; QueryError if ``wait`` times out.
        """
        _check_name("model", model)
        event_id = self._publish("ModelVersionRegistered", f"model:{model}", model=model, run_id=run_id,
                                 artifact=artifact, uri=uri, semver=semver, description=description,
                                 tags=tag_texts(tags or {}))
        if not wait:
            self._client.flush()
            return ModelVersion(model, None, event_id, run_id, semver)
        self._sync(timeout)
        rows = self._sql(f"SELECT version FROM registered_versions WHERE event_id = {_q(event_id)}")
        if not rows:
            raise QueryError(f"registration {event_id} of {model!r} is not in the views (dead-lettered? "
                             "see the dead_letters view)")
        return ModelVersion(model, rows[0]["version"], event_id, run_id, semver)

    def annotate(self, model: str, version: int | None = None, *, description: str | None = None,
                 tags: Mapping[str, Any] | None = None, remove_tags: Iterable[str] = (),
                 annotations: Mapping[str, Any] | None = None) -> None:
        """Set the description, tags and annotations of a model (version None) or of one version."""
        _check_name("model", model)
        self._publish("ModelAnnotated", f"model:{model}", model=model, version=version, description=description,
                      tags=tag_texts(tags or {}), removed_tags=list(remove_tags),
                      annotations=tag_texts(annotations or {}))

    # -- governed changes ------------------------------------------------------------

    def request(self, model: str, action: str, *, version: int | None = None, stage: str | None = None,
                alias: str | None = None, comment: str | None = None, wait: bool = False,
                timeout: float = 60.0, precheck: bool = True) -> RequestStatus:
        """Publish a change request; with ``wait``, block until it is decided (or ``timeout``).

        A request the views already show to be impossible (unknown model or version, bad stage,
        malformed alias) raises ValidationError and publishes nothing; others are decided by the
        processor, and a rejection carries its reason.
        """
        _check_name("model", model)
        action = action.upper()
        if action not in ACTIONS:
            raise ValidationError("action", action, f"must be one of {', '.join(ACTIONS)}")
        if version is not None:
            _check_version("version", version)
        if action == "PROMOTE" and stage not in _rules.PROMOTABLE_STAGES:
            raise ValidationError("stage", stage, f"must be one of {', '.join(_rules.PROMOTABLE_STAGES)}")
        if action in ("SET_ALIAS", "REMOVE_ALIAS"):
            try:
                _rules.alias(alias)
            except ValueError as exc:
                raise ValidationError("alias", alias, str(exc)) from None
            if alias is None:
                raise ValidationError("alias", alias, "is required for " + action)
        if precheck:
            self._precheck(model, version)
        request_id = self._publish("ChangeRequested", f"model:{model}", model=model, action=action,
                                   version=version, stage=stage, alias=alias, comment=comment)
        if not wait:
            self._client.flush()
            return RequestStatus(request_id, model, action, "PENDING")
        return self.wait_decision(request_id, timeout)

    def status(self, request_id: str) -> RequestStatus:
        rows = self._sql("SELECT request_id, model, action, status, reason FROM requests "
                         f"WHERE request_id = {_q(request_id)}")
        if not rows:
            raise QueryError(f"no request {request_id} in the views")
        return RequestStatus(**rows[0])

    def wait_decision(self, request_id: str, timeout: float = 60.0) -> RequestStatus:
        """Block until ``request_id`` is decided; returns its status (PENDING if ``timeout`` passes first)."""
        deadline = time.monotonic() + timeout
        self._sync(timeout)
        while True:
            st = self.status(request_id)
            if st.status != "PENDING" or time.monotonic() >= deadline:
                return st
            time.sleep(0.05)

    def promote(self, model: str, version: int, to: str, **kw: Any) -> RequestStatus:
        """Request moving ``version`` to stage ``to`` (development | staging | production)."""
        return self.request(model, "PROMOTE", version=version, stage=to, **kw)

    def set_alias(self, model: str, alias: str, version: int, **kw: Any) -> RequestStatus:
        return self.request(model, "SET_ALIAS", version=version, alias=alias, **kw)

    def remove_alias(self, model: str, alias: str, **kw: Any) -> RequestStatus:
        return self.request(model, "REMOVE_ALIAS", alias=alias, **kw)

    def deprecate(self, model: str, version: int, **kw: Any) -> RequestStatus:
        return self.request(model, "DEPRECATE", version=version, **kw)

    def archive(self, model: str, version: int, **kw: Any) -> RequestStatus:
        return self.request(model, "ARCHIVE", version=version, **kw)

    def delete_version(self, model: str, version: int, **kw: Any) -> RequestStatus:
        """Request a tombstone for ``version``: hidden from current views, kept in the log and history."""
        return self.request(model, "DELETE_VERSION", version=version, **kw)

    def delete_model(self, model: str, **kw: Any) -> RequestStatus:
        return self.request(model, "DELETE_MODEL", **kw)

    def approve(self, model: str, request_id: str, comment: str | None = None, *, verdict: str = "APPROVE") -> None:
        """Give your verdict (APPROVE or REJECT) on a pending request of ``model``."""
        _check_name("model", model)
        if verdict not in ("APPROVE", "REJECT"):
            raise ValidationError("verdict", verdict, "must be APPROVE or REJECT")
        self._publish("ApprovalGiven", f"model:{model}", model=model, request_id=request_id, verdict=verdict,
                      comment=comment)
        self._client.flush()

    def reject(self, model: str, request_id: str, comment: str | None = None) -> None:
        self.approve(model, request_id, comment, verdict="REJECT")

    # -- deployments -----------------------------------------------------------------

    def record_deployment(self, model: str, version: int, environment: str, *, endpoint: str | None = None,
                          comment: str | None = None, rollback_of: int | None = None,
                          deployed_at: int | None = None, precheck: bool = True) -> str:
        """Record that ``version`` of ``model`` now serves in ``environment``. Returns the event id."""
        _check_name("model", model)
        _check_name("environment", environment)
        _check_version("version", version)
        if precheck:
            self._precheck(model, version)
        event_id = self._publish("DeploymentRecorded", f"model:{model}", model=model, version=version,
                                 environment=environment, endpoint=endpoint, comment=comment,
                                 rollback_of=rollback_of, deployed_at=deployed_at or now_micros())
        self._client.flush()
        return event_id

    def rollback(self, model: str, environment: str, to_version: int | None = None, *,
                 comment: str | None = None) -> int:
        """Deploy an earlier version to ``environment`` again (default: the one before the current).

        Returns the version now deployed. Raises ValidationError if there is nothing to roll back to.
        """
        self._sync(30.0)
        rows = self._sql(f"SELECT version, replaced_at FROM deployments WHERE model = {_q(model)} "
                         f"AND environment = {_q(environment)} ORDER BY deployed_at, event_id")
        if not rows:
            raise ValidationError("environment", environment, f"must have a deployment of {model!r} to roll back")
        current = rows[-1]["version"]
        if to_version is None:
            earlier = [r["version"] for r in rows[:-1] if r["version"] != current]
            if not earlier:
                raise ValidationError("environment", environment, "must have had an earlier version to roll back to")
            to_version = earlier[-1]
        self.record_deployment(model, to_version, environment, comment=comment, rollback_of=current)
        return to_version

    # -- access and policy -----------------------------------------------------------

    def grant(self, principal: str, role: str, model: str | None = None, *, experiment: str | None = None,
              granted: bool = True) -> None:
        """Give ``principal`` the ``role`` for ``model``, or for ``experiment``, or (neither) everywhere.
        The roles and what each may do: ``modelog.wire.tokens.ROLES`` and docs/security.md."""
        _check_name("principal", principal)
        check_roles([role], "role")
        if model is not None and experiment is not None:
            raise ValidationError("experiment", experiment, "must not be given together with model "
                                                            "(a role is scoped to one model or one experiment)")
        self._publish("AccessChanged", f"access:{principal}", entity_type="access", principal=principal,
                      role=role, model=model, granted=granted, experiment=experiment)
        self._client.flush()

    def revoke(self, principal: str, role: str, model: str | None = None, *, experiment: str | None = None) -> None:
        self.grant(principal, role, model, experiment=experiment, granted=False)

    def require_signatures(self, on: bool = True) -> None:
        """Refuse (``on``) or accept again unsigned events logged from now on; the rules stay as they are.
        Only an admin may, once the log has one (``modelog init``; decision 0015)."""
        self._publish("PolicySet", "policy:*", entity_type="policy", model=None, rules=[],
                      require_signatures=on, rules_unchanged=True)
        self._client.flush()

    def set_policy(self, rules: Iterable[Mapping[str, Any]], model: str | None = None, *,
                   require_signatures: bool | None = None) -> None:
        """Replace the policy of ``model`` (None: the global policy) with ``rules``; ``require_signatures``
        (global policy only): also switch the refusal of unsigned events on or off (None: unchanged).

        Each rule: ``name``, ``kind`` (APPROVAL | METRIC_GATE), ``action`` (e.g. PROMOTE), optional
        ``stage``; APPROVAL takes ``role`` and optional ``approvals`` (distinct approvers required,
        default 1; the requester never counts, admins included); METRIC_GATE takes ``metric``, ``op``
        (>=, >, <=, <, ==) and ``threshold``. Example::

            registry.set_policy([
                {"name": "needs-approval", "kind": "APPROVAL", "action": "PROMOTE", "stage": "production",
                 "role": "approver", "approvals": 2},
                {"name": "auc-gate", "kind": "METRIC_GATE", "action": "PROMOTE", "stage": "production",
                 "metric": "auc", "op": ">=", "threshold": 0.8},
            ])
        """
        out = []
        for i, r in enumerate(rules):
            r = dict(r)
            where = f"rules.{i}"
            unknown = set(r) - {"name", "kind", "action", "stage", "role", "metric", "op", "threshold", "approvals"}
            if unknown:
                raise ValidationError(f"{where}", sorted(unknown), "has unknown keys")
            if r.get("kind") not in RULE_KINDS:
                raise ValidationError(f"{where}.kind", r.get("kind"), f"must be one of {', '.join(RULE_KINDS)}")
            if r.get("action") not in ACTIONS:
                raise ValidationError(f"{where}.action", r.get("action"), f"must be one of {', '.join(ACTIONS)}")
            if not r.get("name"):
                raise ValidationError(f"{where}.name", r.get("name"), "is required")
            if r["kind"] == "METRIC_GATE":
                if r.get("op") not in (">=", ">", "<=", "<", "=="):
                    raise ValidationError(f"{where}.op", r.get("op"), "must be one of >=, >, <=, <, ==")
                if not r.get("metric"):
                    raise ValidationError(f"{where}.metric", r.get("metric"), "is required for METRIC_GATE")
                try:
                    r["threshold"] = float(r["threshold"])
                except (KeyError, TypeError, ValueError):
                    raise ValidationError(f"{where}.threshold", r.get("threshold"), "must be a number") from None
            if r["kind"] == "APPROVAL" and not r.get("role"):
                raise ValidationError(f"{where}.role", r.get("role"), "is required for APPROVAL")
            if r.get("approvals") is not None:
                n = r["approvals"]
                if r["kind"] != "APPROVAL":
                    raise ValidationError(f"{where}.approvals", n, "applies to APPROVAL rules only")
                if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 100:
                    raise ValidationError(f"{where}.approvals", n, "must be an integer 1..100")
            out.append({k: r.get(k) for k in ("name", "kind", "action", "stage", "role", "metric", "op",
                                              "threshold", "approvals")})
        if require_signatures is not None and model is not None:
            raise ValidationError("require_signatures", require_signatures, "is a global switch: no model")
        self._publish("PolicySet", f"policy:{model or '*'}", entity_type="policy", model=model, rules=out,
                      require_signatures=require_signatures)
        self._client.flush()

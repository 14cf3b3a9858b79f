"""Who may write what: the roles, what each permits, and the scope every event type writes to. Pure.

Once the log has a bootstrap admin (``modelog init``), the processor authorizes every write event against
the grants as of the event's log time (decision 0017, docs/security.md "Roles"). A grant is a role for a
principal, held everywhere (no scope), for one experiment, or for one model (``modelog access grant``).

What each role permits (an action is allowed when the actor holds, in a scope that covers the event, one
of the roles that permit it):

========== ====================================================================================================
role       permits
========== ====================================================================================================
admin      everything, including the governed changes (keys, policies, grants, tokens: ``trust.GOVERNED``)
maintainer write, and maintain: model annotations, change requests (promote, alias, deprecate, ...),
           deployments, monitor configuration
writer     write: experiments, runs and what they log (params, metrics, tags, artifacts, end), datasets,
           lineage, model versions, monitoring data (predictions, labels, reference profiles)
approver   approve: verdicts on requests (a policy's APPROVAL rule still decides whose verdicts count)
reader     read only
========== ====================================================================================================

Every role also permits reading in its scope (read scoping is the SQL endpoint's and API's, not this module's).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

WRITE, MAINTAIN, APPROVE = "write", "maintain", "approve"

PERMITS: dict[str, frozenset[str]] = {
    "admin": frozenset({WRITE, MAINTAIN, APPROVE}),
    "maintainer": frozenset({WRITE, MAINTAIN}),
    "writer": frozenset({WRITE}),
    "approver": frozenset({APPROVE}),
    "reader": frozenset(),
}

# What writing each event type needs, and where. The scope comes from the record:
#   "run"        the run's experiment (from its RunStarted)      "experiment" the record's experiment field
#   "model"      the record's model field                          "lineage"    every end of the edge
#   "anywhere"   the action in some scope (datasets are a catalog shared by every experiment)
ACTIONS: dict[str, tuple[str, str]] = {
    "ExperimentCreated": (WRITE, "experiment"),
    "RunStarted": (WRITE, "experiment"),
    "ParamsLogged": (WRITE, "run"), "MetricsLogged": (WRITE, "run"), "TagsSet": (WRITE, "run"),
    "ArtifactLogged": (WRITE, "run"), "RunEnded": (WRITE, "run"),
    "DatasetVersionLogged": (WRITE, "anywhere"),
    "LineageRecorded": (WRITE, "lineage"),
    "ModelVersionRegistered": (WRITE, "model"),
    "PredictionsLogged": (WRITE, "model"), "LabelsLogged": (WRITE, "model"), "ReferenceProfileLogged": (WRITE, "model"),
    "ModelAnnotated": (MAINTAIN, "model"), "ChangeRequested": (MAINTAIN, "model"),
    "DeploymentRecorded": (MAINTAIN, "model"), "MonitorConfigured": (MAINTAIN, "model"),
    # an approver needs only to reach the model: which verdicts count is the policy's rule (its role)
    "ApprovalGiven": ("reach", "model"),
    # the erasure's real effect is deleting the data key (who may, is who may write the key store: decision
    # 0018); the event records it, so any writer may publish it and the processor applies it
    "SubjectErased": (WRITE, "anywhere"),
}
# Published by modelog's own processors (the decider, the drift processor, the checkpoints of decision 0023), not
# by users: outside the grants.
SYSTEM = frozenset({"RequestDecided", "DriftMeasured", "AlertChanged", "LogCheckpoint"})


@dataclass(frozen=True)
class Scope:
    """Where a write lands: an experiment, a model, or (both None) nowhere in particular."""

    experiment: str | None = None
    model: str | None = None

    def __str__(self) -> str:
        return (f"experiment {self.experiment!r}" if self.experiment is not None
                else f"model {self.model!r}" if self.model is not None else "any scope")


@dataclass(frozen=True)
class Grant:
    role: str
    experiment: str | None = None
    model: str | None = None

    def covers(self, scope: Scope) -> bool:
        if self.experiment is None and self.model is None:
            return True  # a global role
        if scope.experiment is None and scope.model is None:
            return True  # "anywhere": a role in any scope will do
        return (self.experiment is not None and self.experiment == scope.experiment) or (
            self.model is not None and self.model == scope.model)

    def __str__(self) -> str:
        where = (f" on experiment {self.experiment!r}" if self.experiment is not None
                 else f" on model {self.model!r}" if self.model is not None else " everywhere")
        return self.role + where


def roles_for(action: str) -> tuple[str, ...]:
    """The roles that permit ``action`` ("reach": any role at all), strongest first."""
    return tuple(r for r, p in PERMITS.items() if action == "reach" or action in p)


def scopes_of(event_type: str, record: dict, run_experiment: Callable[[str], str | None]) -> list[Scope] | None:
    """The scopes a write of ``event_type`` lands in (each must be allowed); None: not a write under grants.

    ``run_experiment(run_id)``: the experiment of a run (None: a run the log has not started)."""
    if event_type not in ACTIONS:
        return None
    kind = ACTIONS[event_type][1]
    if kind == "experiment":
        return [Scope(experiment=record["experiment"])]
    if kind == "model":
        return [Scope(model=record["model"])]
    if kind == "run":
        return [_run_scope(record["run_id"], run_experiment)]
    if kind == "lineage":
        return [_node_scope(record["src"], run_experiment), _node_scope(record["dst"], run_experiment)]
    return [Scope()]


class UnknownRun(Exception):
    """A write to a run whose RunStarted the log does not hold (before it): only a global role can cover it."""


def _run_scope(run_id: str, run_experiment: Callable[[str], str | None]) -> Scope:
    experiment = run_experiment(run_id)
    if experiment is None:
        raise UnknownRun(run_id)
    return Scope(experiment=experiment)


def _node_scope(node: str, run_experiment: Callable[[str], str | None]) -> Scope:
    """A lineage node id's scope: run:<id> its run's experiment, model:<name>/<v> and deployment:<model>/<env>
    their model, anything else (datasets, jobs) any scope."""
    kind, _, rest = node.partition(":")
    if kind == "run":
        return _run_scope(rest, run_experiment)
    if kind in ("model", "deployment"):
        return Scope(model=rest.rsplit("/", 1)[0] if "/" in rest else rest)
    return Scope()


def allowed(held: list[Grant], action: str, scope: Scope) -> bool:
    """Whether roles ``held`` permit ``action`` in ``scope``."""
    permitted = roles_for(action)
    return any(g.role in permitted and g.covers(scope) for g in held)

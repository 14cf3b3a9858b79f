"""Who may read what: the pure read-scope rule of a governed log (decision 0022, docs/security.md).

Shared by the processor (``processors/scope.py``, which turns a :class:`Scope` into filtered views) and the HTTP
server (``/stream``, which reads the log rather than the views). Roles themselves are ``tokens.ROLES``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Scope:
    """What one principal may read. ``everything``: no filter at all."""

    principal: str
    everything: bool = False
    experiments: frozenset[str] = frozenset()
    models: frozenset[str] = frozenset()

    @property
    def key(self) -> tuple:
        """Equal for equal scopes (the cache key of a scoped connection)."""
        if self.everything:
            return ("*",)
        return (self.principal, tuple(sorted(self.experiments)), tuple(sorted(self.models)))


def scope_of(principal: str, assignments: Iterable[Mapping], governed: bool, bootstrap_admins: Iterable[str] = ()
             ) -> Scope:
    """The scope of ``principal`` given the grants in force (``role_assignments`` rows: principal, role, model,
    experiment), whether the log is governed, and the bootstrap admins' principals."""
    if not governed or principal in set(bootstrap_admins):
        return Scope(principal, everything=True)
    experiments: set[str] = set()
    models: set[str] = set()
    for row in assignments:
        if row.get("principal") != principal:
            continue
        model, experiment = row.get("model"), row.get("experiment")
        if model is None and experiment is None:  # a global role (admin or any other): everything
            return Scope(principal, everything=True)
        if model is not None:
            models.add(model)
        if experiment is not None:
            experiments.add(experiment)
    return Scope(principal, experiments=frozenset(experiments), models=frozenset(models))

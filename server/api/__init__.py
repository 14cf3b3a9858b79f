"""The REST API under ``/api/v1``: one router per concern. Every route declares the permission it needs
(:func:`modelog.server.auth.requires`); a unit test fails on a route without one."""

from __future__ import annotations

from modelog.server.api import audit, ingest, lineage, monitoring, registry, sql, stream, tracking, writes

ROUTERS = [tracking.router, writes.router, sql.router, registry.router, lineage.router, monitoring.router,
           audit.router, stream.router, ingest.router]

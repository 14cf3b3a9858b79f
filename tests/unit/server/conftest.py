"""Shared harness of the server's unit tests: the real SDK, projector and DuckDB views, in-process.

``live`` is a views file that the real projector keeps up to date: every event emitted through its
emitter (by SDK clients of the test, or by the server's publisher) is projected when the emitter is
flushed -- as a processor would project it shortly after the broker acknowledged it. ``api`` is a
TestClient of the server over it (with the real Publisher), ``tok`` a token per role.
"""

from __future__ import annotations

import dataclasses

import pytest
from fastapi.testclient import TestClient

from modelog import Client, MemoryEmitter, Settings
from modelog.processors.projection import RawRecord
from modelog.processors.projector import Projector
from modelog.processors.store import ViewStore
from modelog.sdk.tokens import issue_token
from modelog.server.app import create_app
from modelog.server.publish import Publisher

ROLES = ("admin", "maintainer", "approver", "writer", "reader")


class ProjectingEmitter(MemoryEmitter):
    """A MemoryEmitter whose ``flush`` projects what was emitted since the last flush into the views."""

    def __init__(self, live: LiveViews) -> None:
        super().__init__()
        self._live = live
        self.fail_next_flush: Exception | None = None

    def flush(self, timeout: float | None = None) -> None:
        if self.fail_next_flush is not None:
            exc, self.fail_next_flush = self.fail_next_flush, None
            raise exc
        self._live.project()


class LiveViews:
    """A views file the real projector keeps up to date with everything emitted through ``emitter``."""

    def __init__(self, tmp_path) -> None:
        self.path = tmp_path / "views.duckdb"
        self.settings = Settings.load(home=tmp_path / "home", env={"MODELOG_DB": str(self.path)})
        self.emitter = ProjectingEmitter(self)
        self.projector = Projector()
        self.offset = 0
        ViewStore(self.path).close()

    def client(self, principal: str) -> Client:
        return Client(dataclasses.replace(self.settings, principal=principal), emitter=self.emitter)

    def project(self) -> None:
        new = self.emitter.encoded[self.offset:]
        if not new:
            return
        store = ViewStore(self.path)
        try:
            store.apply([RawRecord(self.settings.tracking_topic, 0, self.offset + i, None, b"k", v)
                         for i, v in enumerate(new)], self.projector)
        finally:
            store.close()
        self.offset += len(new)

    def sql(self, query: str, params: list | None = None) -> list[dict]:
        from modelog.consumers.query import sql_arrow

        return sql_arrow(query, self.settings, params=params).to_pylist()


@pytest.fixture
def live(tmp_path) -> LiveViews:
    return LiveViews(tmp_path)


@pytest.fixture
def tok(live) -> dict[str, str]:
    """A token per role, held by ``<role>-user`` (e.g. ``approver-user``)."""
    root = live.client("root")
    out = {role: issue_token(root, f"{role}-user", [role]).token for role in ROLES}
    live.project()
    return out


@pytest.fixture
def server_app(live, tok):
    return create_app(live.settings, publisher=Publisher(live.settings, emitter=live.emitter), ui=False)


@pytest.fixture
def api(server_app) -> TestClient:
    return TestClient(server_app)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}

"""The SQL endpoint's (governed, grants version): kept by the store, read again only after a batch that
wrote keys, grants or revocations has committed (processors/store.py, ViewStore.governance)."""

import pytest

from modelog.processors.projector import Projector
from modelog.processors.query_server import QueryServer
from modelog.processors.scope import governance_version
from modelog.wire.sqlauth import AuthError
from test_store import store  # noqa: F401 -- the fixture: an empty views file
from test_trust import ADMIN, created, grant, raw, registered


def kept(store):
    cur = store.reader()
    try:
        return store.governance(cur), governance_version(cur)
    finally:
        cur.close()


def test_a_batch_with_keys_or_grants_moves_the_kept_version_and_others_do_not(store):
    projector = Projector()
    server = QueryServer(store).start()
    try:
        check_versions(store, projector, server)
    finally:
        server.stop()


def check_versions(store, projector, server):
    assert kept(store) == ((False, 0), (False, 0))
    assert server.answer(b"SELECT 1 AS x", {}, None, None).to_pylist() == [{"x": 1}]  # not governed: anyone
    store.apply([raw("KeyRegistered", registered("alice", ADMIN, "alice", bootstrap=True), ADMIN, 1000, 0)],
                projector)
    assert kept(store) == ((True, 1), (True, 1))
    with pytest.raises(AuthError):  # governed now: the next request is refused unsigned, not answered from a stale value
        server.answer(b"SELECT 1 AS x", {}, None, None)
    store.apply([raw("AccessChanged", grant("alice", "bob", "reader", at_us=2_000_000), ADMIN, 2000, 1)], projector)
    assert kept(store) == ((True, 2), (True, 2))
    store.apply([raw("ExperimentCreated", created("alice"), ADMIN, 3000, 2)], projector)
    assert kept(store) == ((True, 2), (True, 2))


def test_the_kept_value_is_not_read_again_until_such_a_batch_commits(store):
    projector = Projector()
    assert kept(store)[0] == (False, 0)
    # written past the projector (no batch): the kept value stays as it was, the tables say otherwise
    store.con.execute("INSERT INTO log_access (event_id, principal, role, granted, changed_at, changed_by) "
                      "VALUES ('e-x', 'carol', 'reader', true, now(), 'alice')")
    assert kept(store) == ((False, 0), (False, 1))
    store.apply([raw("ExperimentCreated", created("alice"), None, 1000, 0)], projector)  # no keys or grants
    assert kept(store) == ((False, 0), (False, 1))
    store.apply([raw("KeyRegistered", registered("alice", ADMIN, "alice", bootstrap=True), ADMIN, 2000, 1)],
                projector)
    assert kept(store) == ((True, 2), (True, 2))

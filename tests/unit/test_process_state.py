"""Process-wide state does not leak from one test into the next (tests/conftest.py resets it), and the
lake readers ``modelog.sql`` keeps are bounded and closed."""

import signal

import modelog
from modelog import MemoryEmitter, Settings
from modelog.consumers import query
from modelog.sdk import fluent, tracking


def test_1_a_run_installs_the_sigterm_handler_and_configure_sets_the_default(tmp_path):
    modelog.configure(Settings.load(env={}, home=tmp_path, linger_ms=1), emitter=MemoryEmitter())
    with modelog.start_run(experiment="e"):
        pass
    assert signal.getsignal(signal.SIGTERM) is tracking._on_sigterm and fluent._default is not None


def test_2_the_next_test_starts_clean():  # runs after test_1 (file order)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert fluent._default is None and tracking._sigterm_installed is False and not query._readers


def test_lake_readers_are_bounded_and_closed(tmp_path, monkeypatch):
    closed = []

    class FakeReader:
        def __init__(self, path, aws=None):
            self.path = path

        def close(self):
            closed.append(self.path.name)

    from modelog.processors import lake

    monkeypatch.setattr(lake, "LakeReader", FakeReader)
    paths = []
    for i in range(query.MAX_READERS + 2):
        lake.Lake(tmp_path / f"lake{i}").ensure()  # a lake exists once its positions table does
        paths.append(tmp_path / f"lake{i}")
    first = query.lake_reader(paths[0])
    for p in paths[1:query.MAX_READERS]:
        query.lake_reader(p)
    assert query.lake_reader(paths[0]) is first  # kept, and now the most recently used
    query.lake_reader(paths[query.MAX_READERS])
    query.lake_reader(paths[query.MAX_READERS + 1])
    assert closed == ["lake1", "lake2"]  # the least recently used ones, closed when evicted
    assert list(query._readers) == [paths[3], paths[0], paths[4], paths[5]]  # least recently used first
    query.close_readers()
    assert sorted(closed) == sorted(f"lake{i}" for i in range(query.MAX_READERS + 2)) and not query._readers

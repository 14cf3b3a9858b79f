"""Shared fixtures. Integration fixtures (broker, processor) live in tests/integration/conftest.py."""

import signal
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # factories, waiting

# the SIGTERM handler this process started with: what every test ends with, even when a module-scoped fixture
# started a run (and so installed the SDK's handler) before a test's own snapshot below was taken
_SIGTERM_AT_START = signal.getsignal(signal.SIGTERM)


@pytest.fixture(autouse=True)
def _process_state_reset():
    """Undo what a test leaves in this process's globals: the fluent default client (``modelog.configure``
    or first use), the SIGTERM handler the SDK installs when a run starts, the kept lake readers and SQL-endpoint connections."""
    from modelog.consumers import query
    from modelog.sdk import fluent, tracking

    yield
    with fluent._default_lock:
        client, fluent._default = fluent._default, None
    if _SIGTERM_AT_START is not None:  # None: installed outside Python, nothing of ours to undo
        signal.signal(signal.SIGTERM, _SIGTERM_AT_START)
    tracking._sigterm_installed = False
    query.close_readers()
    query.close_connections()
    if client is not None:
        client.close()

"""The files under ``MODELOG_HOME`` through which modelog's processes find each other.

The embedded broker writes ``broker/broker.json`` (its address), the projector
``processor.json`` (its SQL endpoint, metrics and readiness) and the drift processor
``drift.json``. Settings, the SDK, the CLI and the processors read them here, and
nothing else: no process imports another's code to learn where it runs.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modelog.wire.settings import Settings


def pid_alive(pid: int | None) -> bool:
    """Whether ``pid`` runs. An exited child of this process that nobody has waited for yet (a zombie)
    has stopped: it is reaped here, so that stopping a process we started does not wait in vain."""
    if not pid:
        return False
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:  # not our child
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def accepts(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS's pick for a bind to port 0).

    The one copy of this helper. It is racy by nature -- the port is released before the caller's
    process binds it, and another may take it meanwhile -- so use it only where a *child* process
    must be told its port up front (tansu: its advertised address is its command line), and retry
    on "address in use" there. A server of our own binds port 0 itself and reports what it got.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_json(path: Path) -> dict:
    """The JSON object in ``path``, or ``{}`` when it is missing or half-written."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


# -- the embedded broker ---------------------------------------------------------------

def broker_file(home: Path) -> Path:
    return Path(home) / "broker" / "broker.json"


def embedded_broker_address(home: Path) -> str | None:
    """The bootstrap address of the embedded broker running under ``home``, or None."""
    st = read_json(broker_file(home))
    if pid_alive(st.get("pid")) and st.get("port") and accepts(st["port"]):
        return st["address"]
    return None


def embedded_s3_endpoint(home: Path) -> str | None:
    """``http://127.0.0.1:PORT`` of the embedded broker's S3 server under ``home`` (it also holds the
    artifact store's bucket), or None when it is not running."""
    st = read_json(broker_file(home))
    if pid_alive(st.get("s3_pid")) and st.get("s3_port") and accepts(st["s3_port"]):
        return f"http://127.0.0.1:{st['s3_port']}"
    return None


# -- the projector and the drift processor -------------------------------------------------

def processor_file(settings: Settings) -> Path:
    return settings.home / "processor.json"


def drift_file(settings: Settings) -> Path:
    return settings.home / "drift.json"


def running_processor(settings: Settings) -> dict | None:
    """The running processor serving ``settings.views_path``, or None."""
    info = read_json(processor_file(settings))
    if not info:
        return None
    pid = int(info.get("pid", -1))
    # a file naming this very process is stale: in a container every start is pid 1
    # `modelog process --workers N` without MODELOG_LAKE uses the default lake under the home
    served = {str(settings.views_target)} | ({str(settings.home / "lake")} if settings.lake_path is None else set())
    if info.get("db") not in served or pid == os.getpid() or not pid_alive(pid):
        return None
    return info


# -- the HTTP server -----------------------------------------------------------------------

def server_file(settings: Settings) -> Path:
    return settings.home / "server.json"


def admin_token_file(settings: Settings) -> Path:
    """The local admin's API token, made on the server's first start (mode 0600)."""
    return settings.home / "server" / "admin.token"


def running_server(settings: Settings) -> dict | None:
    """The running ``modelog serve`` of ``settings.home`` (its server.json: pid, url), or None."""
    info = read_json(server_file(settings))
    if not info:
        return None
    pid = int(info.get("pid", -1))
    return info if pid != os.getpid() and pid_alive(pid) else None

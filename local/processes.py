"""Background processes of the local stack: the projector and the drift processor, detached.

``modelog process --background`` and ``modelog drift --background`` (and the demos) start
``python -m modelog COMMAND`` in a new session, logging under ``$MODELOG_HOME``, and return
once the process says it is ready in its info file (:mod:`modelog.wire.home`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

from modelog.wire.errors import ModelogError
from modelog.wire.home import drift_file, pid_alive, read_json, running_processor, running_server
from modelog.wire.settings import Settings


def start_background(settings: Settings, command: str, ready: Callable[[int], bool], what: str, log_name: str,
                     loglevel: str = "warning", timeout: float = 120.0, args: tuple[str, ...] = ()) -> int:
    """Run ``modelog COMMAND`` detached, logging to ``$MODELOG_HOME/<log_name>``; return its pid once
    ``ready(pid)`` says so. Raises ModelogError if it exits or is not ready within ``timeout``."""
    settings.home.mkdir(parents=True, exist_ok=True)
    log_path = settings.home / log_name
    log = open(log_path, "ab")
    env = dict(os.environ, MODELOG_HOME=str(settings.home))
    if settings.db_path:
        env["MODELOG_DB"] = str(settings.db_path)
    if settings.lake_path:
        env["MODELOG_LAKE"] = str(settings.lake_path)
    if settings.bootstrap:
        env["MODELOG_KAFKA_BOOTSTRAP"] = settings.bootstrap
    proc = subprocess.Popen([sys.executable, "-m", "modelog", command, "--loglevel", loglevel, *args],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True, env=env)
    log.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ModelogError(f"{what} exited with code {proc.returncode}; see {log_path}")
        if ready(proc.pid):
            proc.returncode = 0  # detached on purpose: it outlives this Popen object
            return proc.pid
        time.sleep(0.1)
    proc.terminate()
    proc.wait(10)
    raise ModelogError(f"{what} not ready after {timeout:.0f}s; see {log_path}")


def stop_pid(pid: int, timeout: float = 30.0) -> None:
    """SIGTERM, then SIGKILL if it is still alive after ``timeout``."""
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and pid_alive(pid):
        time.sleep(0.1)
    if pid_alive(pid):
        os.kill(pid, signal.SIGKILL)


def start_processor_background(settings: Settings, loglevel: str = "warning", timeout: float = 120.0,
                               workers: int = 1) -> int:
    def ready(pid: int) -> bool:
        info = running_processor(settings)
        return bool(info and info.get("pid") == pid and info.get("ready"))

    return start_background(settings, "process", ready, "processor", "processor.log", loglevel, timeout,
                            ("--workers", str(workers)))


def stop_processor(settings: Settings, info: dict, timeout: float = 30.0) -> None:
    stop_pid(int(info["pid"]), timeout)


def running_drift(settings: Settings) -> dict | None:
    """The running drift processor of ``settings.home`` (its drift.json), or None."""
    info = read_json(drift_file(settings))
    if not info:
        return None
    pid = int(info.get("pid", -1))
    return info if pid != os.getpid() and pid_alive(pid) else None  # own pid: stale file (pid 1 in containers)


def start_drift_background(settings: Settings, loglevel: str = "warning", timeout: float = 120.0) -> int:
    def ready(pid: int) -> bool:
        info = running_drift(settings)
        return bool(info and info.get("pid") == pid and info.get("ready"))

    return start_background(settings, "drift", ready, "drift processor", "drift.log", loglevel, timeout)


def stop_drift(settings: Settings, timeout: float = 30.0) -> bool:
    info = running_drift(settings)
    if not info:
        return False
    stop_pid(int(info["pid"]), timeout)
    return True


def start_server_background(settings: Settings, host: str, port: int, loglevel: str = "warning",
                            timeout: float = 120.0) -> dict:
    """``modelog serve`` detached; returns its server.json (pid, url) once it answers."""
    def ready(pid: int) -> bool:
        info = running_server(settings)
        return bool(info and info.get("pid") == pid and info.get("ready"))

    start_background(settings, "serve", ready, "server", "server.log", loglevel, timeout,
                     ("--host", host, "--port", str(port)))
    return running_server(settings) or {}


def stop_server(settings: Settings, timeout: float = 30.0) -> bool:
    info = running_server(settings)
    if not info:
        return False
    stop_pid(int(info["pid"]), timeout)
    return True

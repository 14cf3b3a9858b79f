"""``modelog process --workers N``: N projector workers in one consumer group on this machine.

The supervisor starts N ``modelog process --worker`` children sharing one lake (``MODELOG_LAKE``,
default ``$MODELOG_HOME/lake``), restarts any that dies, and serves the SQL endpoint over the lake
(``processor.json`` names it, as for a single processor). It is ready once every worker has joined the
group. On other machines, run ``modelog process`` with the same ``MODELOG_LAKE`` (``s3://bucket/prefix``:
no filesystem is shared) and processor id instead: the consumer group spreads the partitions over every worker, wherever it runs.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from modelog.wire.settings import Settings
from modelog.wire.home import processor_file
from modelog.wire.topics import ensure_topics

from .app import _write_json, processor_info
from .lake import lake_for, reader_for
from .query_server import QueryLimits, QueryServer

log = logging.getLogger("modelog.processor")

RESTART_DELAY = 1.0


def worker_file(settings: Settings, pid: int) -> Path:
    return settings.home / "workers" / f"{pid}.json"


def mark_worker_ready(settings: Settings) -> None:
    """Called by a worker once its consumer has joined the group."""
    path = worker_file(settings, os.getpid())
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_json(path, {"pid": os.getpid(), "ready_at": time.time()})


def run_workers(settings: Settings, workers: int, loglevel: str = "warning") -> None:
    """Supervise ``workers`` projector processes until SIGINT/SIGTERM."""
    assert settings.lake_path is not None
    settings.home.mkdir(parents=True, exist_ok=True)
    ensure_topics(settings)
    lake_for(settings).instance_id  # created once here (a worker elsewhere that races it reads the winner's)
    env = dict(os.environ, MODELOG_HOME=str(settings.home), MODELOG_LAKE=str(settings.lake_path))
    if settings.bootstrap:
        env["MODELOG_KAFKA_BOOTSTRAP"] = settings.bootstrap
    stopping = threading.Event()
    logs = settings.home / "workers"
    logs.mkdir(parents=True, exist_ok=True)

    def spawn(i: int) -> subprocess.Popen:
        out = open(logs / f"worker-{i}.log", "ab")
        try:
            return subprocess.Popen([sys.executable, "-m", "modelog", "process", "--worker", "--loglevel", loglevel],
                                    env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        finally:
            out.close()

    procs = [spawn(i) for i in range(workers)]
    server = QueryServer(reader_for(settings), host=settings.processor_host, port=settings.processor_port,
                         limits=QueryLimits.from_settings(settings))
    server.ready = False
    server.start()
    info_path = processor_file(settings)
    info = processor_info(settings, server, workers=[p.pid for p in procs])
    _write_json(info_path, info)

    def stop(*_args) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        while not stopping.is_set():
            for i, p in enumerate(procs):
                if p.poll() is not None and not stopping.is_set():
                    log.warning("worker %d (pid %d) exited with %s; restarting", i, p.pid, p.returncode)
                    time.sleep(RESTART_DELAY)
                    procs[i] = spawn(i)
                    info["workers"] = [q.pid for q in procs]
                    _write_json(info_path, info)
            ready = all(worker_file(settings, p.pid).exists() for p in procs)
            if ready != info["ready"]:
                server.ready = info["ready"] = ready
                info["ready_at"] = time.time()
                _write_json(info_path, info)
            stopping.wait(0.2)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        deadline = time.monotonic() + 30
        for p in procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            worker_file(settings, p.pid).unlink(missing_ok=True)
        server.stop()
        try:
            if json.loads(info_path.read_text()).get("pid") == os.getpid():
                info_path.unlink()
        except (OSError, ValueError):
            pass

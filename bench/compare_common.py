"""Shared pieces of ``bench/compare.py`` (stdlib only: imported from our venv and the peers' venv).

* workload W and its metric values (the same numbers for every system);
* per-process CPU seconds and peak RSS read from ``/proc`` (no psutil);
* the spawned-process ledger the orchestrator uses to clean up after a crashed script;
* the paced training loop's clock and the outage timer of the durability test.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import statistics
import subprocess
import threading
import time
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


# -- workload W ---------------------------------------------------------------------------

class W:
    """10 runs x (20 params, 5 tags, 20 metrics x 500 steps) = 100,000 metric points (sizes overridable)."""

    def __init__(self, runs: int = 10, steps: int = 500, metrics: int = 20, params: int = 20, tags: int = 5) -> None:
        self.runs, self.steps, self.metrics, self.params, self.tags = runs, steps, metrics, params, tags
        self.keys = [f"metric_{j:02d}" for j in range(metrics)]

    @property
    def points(self) -> int:
        return self.runs * self.steps * self.metrics

    def describe(self) -> str:
        return (f"{self.runs} runs x ({self.params} params, {self.tags} tags, {self.metrics} metrics x "
                f"{self.steps} steps) = {self.points:,} metric points")

    def param_dict(self) -> dict:
        return {f"param_{p:02d}": p * 0.1 for p in range(self.params)}

    def tag_dict(self) -> dict:
        return {f"tag_{t}": f"v{t}" for t in range(self.tags)}

    @staticmethod
    def value(run: int, step: int, j: int) -> float:
        # differs per run so "runs filtered by one metric, ordered by another" selects and sorts something
        return j + step * 0.001 + run * 0.01

    def values(self, run: int, step: int) -> dict:
        return {k: self.value(run, step, j) for j, k in enumerate(self.keys)}

    def as_dict(self) -> dict:
        return {"runs": self.runs, "steps": self.steps, "metrics": self.metrics, "params": self.params,
                "tags": self.tags, "points": self.points}

    # the two queries, with the same meaning for every system
    def query_threshold(self) -> float:
        """metric_00's last value is > this for the upper half of the runs."""
        last = self.steps - 1
        lo = self.value(self.runs // 2 - 1, last, 0) if self.runs >= 2 else self.value(0, last, 0) - 1
        hi = self.value(self.runs // 2, last, 0)
        return round((lo + hi) / 2, 6)

    def expected_filter_rows(self) -> int:
        t = self.query_threshold()
        return sum(1 for r in range(self.runs) if self.value(r, self.steps - 1, 0) > t)


# -- /proc measurements -----------------------------------------------------------------------

def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # comm (field 2) may hold spaces and parentheses: split after the last ')'
    return raw[raw.rindex(")") + 2:].split()


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of ``pid`` (its threads included; reaped children are not)."""
    f = _stat_fields(pid)
    if f is None:
        return None
    # after comm: state(3) ppid(4) ... utime(14) stime(15): index = field - 3
    return (int(f[11]) + int(f[12])) / CLK_TCK


def status_kib(pid: int, field: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def peak_rss_mib(pid: int) -> float | None:
    kib = status_kib(pid, "VmHWM")
    return None if kib is None else kib / 1024


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current RSS (``echo 5 > /proc/PID/clear_refs``, Linux >= 4.0)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def alive(pid: int) -> bool:
    f = _stat_fields(pid)
    return f is not None and f[0] not in ("Z", "X")


def children(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (depth first)."""
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    direct: set[int] = set()
    for t in tasks:
        try:
            direct.update(int(c) for c in Path(f"/proc/{pid}/task/{t}/children").read_text().split())
        except OSError:
            pass
    for c in sorted(direct):
        if alive(c):
            out.append(c)
            out.extend(children(c))
    return out


class ProcessMeter:
    """CPU seconds and peak RSS of a set of processes over one measured window.

    ``add(role, pid)`` before the window (descendants are found at ``start``/``stop`` too);
    ``start()`` resets each peak RSS and reads CPU; ``stop()`` reads CPU and VmHWM again.
    """

    def __init__(self) -> None:
        self.roles: list[tuple[str, int, bool]] = []
        self._cpu0: dict[int, float] = {}
        self.rows: list[dict] = []

    def add(self, role: str, pid: int | None, with_children: bool = True) -> None:
        if pid:
            self.roles.append((role, int(pid), with_children))

    def _pids(self) -> list[tuple[str, int]]:
        seen: set[int] = set()
        out = []
        for role, pid, kids in self.roles:
            for p in [pid] + (children(pid) if kids else []):
                if p not in seen and alive(p):
                    seen.add(p)
                    out.append((role if p == pid else f"{role} (child: {_short(cmdline(p))})", p))
        return out

    def start(self) -> None:
        for _, pid in self._pids():
            reset_peak_rss(pid)
            c = cpu_seconds(pid)
            if c is not None:
                self._cpu0[pid] = c

    def stop(self) -> list[dict]:
        self.rows = []
        for role, pid in self._pids():
            c = cpu_seconds(pid)
            self.rows.append({"role": role, "pid": pid, "cmd": _short(cmdline(pid), 120),
                              "cpu_s": None if c is None else round(c - self._cpu0.get(pid, 0.0), 3),
                              "cpu_counted_from": "window start" if pid in self._cpu0 else "process start",
                              "peak_rss_mib": _round(peak_rss_mib(pid))})
        return self.rows

    @staticmethod
    def totals(rows: list[dict]) -> dict:
        return {"cpu_s": round(sum(r["cpu_s"] or 0 for r in rows), 3),
                "peak_rss_mib": round(sum(r["peak_rss_mib"] or 0 for r in rows), 1),
                "processes": len(rows)}


def _short(text: str, n: int = 60) -> str:
    text = text.replace(str(Path.home()), "~")
    return text if len(text) <= n else text[: n - 3] + "..."


def _round(x: float | None, nd: int = 1) -> float | None:
    return None if x is None else round(x, nd)


# -- ledger of spawned processes (the orchestrator's safety net) -------------------------------

def record_spawn(workdir: Path, pid: int, what: str, group: bool = False) -> None:
    """Note a process this benchmark started, so ``cleanup_spawned`` can end it if a script dies."""
    with (Path(workdir) / "spawned.jsonl").open("a") as fh:
        fh.write(json.dumps({"pid": pid, "what": what, "group": group, "cmd": cmdline(pid)[:200]}) + "\n")


def terminate_tree(pid: int, timeout: float = 15.0) -> None:
    """SIGTERM ``pid`` and its descendants, wait, then SIGKILL what is left. Only for processes we started."""
    pids = [pid] + children(pid)
    for p in pids:
        try:
            os.kill(p, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        _reap(pids)
        time.sleep(0.05)
    for p in pids:
        if alive(p):
            try:
                os.kill(p, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    time.sleep(0.05)
    _reap(pids)


def run_bounded(cmd: list[str], log, cwd: Path, timeout: float) -> int | str:
    """Run a benchmark script in a session of its own, output to the open ``log``; its exit code, or
    "timeout" after ``timeout`` s (then the whole session is stopped: TERM, and KILL 20 s later)."""
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=str(cwd),
                            start_new_session=True)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
        return "timeout"


def _reap(pids: list[int]) -> None:
    for p in pids:
        try:
            os.waitpid(p, os.WNOHANG)
        except ChildProcessError:
            pass


def cleanup_spawned(workdir: Path) -> list[str]:
    """End every still-running process in ``workdir/spawned.jsonl`` whose command line still matches."""
    ledger = Path(workdir) / "spawned.jsonl"
    ended = []
    if not ledger.exists():
        return ended
    for line in ledger.read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        pid = int(rec["pid"])
        if alive(pid) and rec.get("cmd") and cmdline(pid)[:200] == rec["cmd"]:
            terminate_tree(pid, timeout=10)
            ended.append(f"{rec['what']} (pid {pid})")
    return ended


# -- timing helpers ---------------------------------------------------------------------------------

def pace(t0: float, i: int, period_s: float) -> None:
    """Sleep until step ``i`` of a loop that does one step per ``period_s`` (no catching up early)."""
    if period_s <= 0:
        return
    delay = t0 + i * period_s - time.perf_counter()
    if delay > 0:
        time.sleep(delay)


class Outage:
    """At ``at_s`` after ``begin()`` call ``stop()``; ``down_s`` after it returned call ``start()`` (in a thread)."""

    def __init__(self, at_s: float, down_s: float, stop, start) -> None:
        self.at_s, self.down_s = at_s, down_s
        self._stop, self._start = stop, start
        self.log: dict = {"stop_at_s": None, "stopped_after_s": None, "restart_at_s": None, "ready_at_s": None,
                          "error": None}
        self._thread = threading.Thread(target=self._run, name="outage", daemon=True)
        self.t0 = 0.0

    def begin(self) -> None:
        self.t0 = time.perf_counter()
        self._thread.start()

    def _run(self) -> None:
        try:
            time.sleep(max(0.0, self.at_s - (time.perf_counter() - self.t0)))
            self.log["stop_at_s"] = round(time.perf_counter() - self.t0, 2)
            self._stop()
            stopped = time.perf_counter() - self.t0
            self.log["stopped_after_s"] = round(stopped, 2)
            time.sleep(self.down_s)  # down for down_s from the moment it is really gone
            self.log["restart_at_s"] = round(time.perf_counter() - self.t0, 2)
            self._start()
            self.log["ready_at_s"] = round(time.perf_counter() - self.t0, 2)
        except BaseException as exc:  # reported, not raised: the logging loop must go on
            self.log["error"] = f"{type(exc).__name__}: {exc}"

    def join(self, timeout: float | None = None) -> dict:
        self._thread.join(timeout)
        if self._thread.is_alive():
            self.log["error"] = (self.log["error"] or "") + " outage thread still running"
        return self.log


class Stalls:
    """The longest single logging call of a training loop (how long the loop was held up at worst)."""

    def __init__(self) -> None:
        self.max_s = 0.0
        self.where = None

    def __call__(self, what: str):
        return _Stall(self, what)

    def as_dict(self) -> dict:
        return {"longest_logging_call_s": round(self.max_s, 3), "longest_logging_call": self.where}


class _Stall:
    def __init__(self, stalls: Stalls, what: str) -> None:
        self.stalls, self.what = stalls, what

    def __enter__(self) -> None:
        self.t0 = time.perf_counter()

    def __exit__(self, *exc) -> None:
        d = time.perf_counter() - self.t0
        if d > self.stalls.max_s:
            self.stalls.max_s, self.stalls.where = d, self.what


def median_ms(fn, reps: int) -> dict:
    """Call ``fn`` once to warm up, then ``reps`` times; median / min / max in ms and the last result's size."""
    result = fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - t0) * 1000)
    return {"median_ms": round(statistics.median(times), 3), "min_ms": round(min(times), 3),
            "max_ms": round(max(times), 3), "reps": reps, "rows": _rows(result)}


def _rows(result) -> int | None:
    for attr in ("num_rows", "shape"):
        v = getattr(result, attr, None)
        if v is not None:
            return v if isinstance(v, int) else v[0]
    try:
        return len(result)
    except TypeError:
        return None


def machine() -> dict:
    try:
        load = Path("/proc/loadavg").read_text().split()[:3]
    except OSError:
        load = None
    return {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
            "memory_gib": round(PAGE * os.sysconf("SC_PHYS_PAGES") / 2**30, 1), "loadavg_1_5_15": load}


def runner_parser(doc: str | None):
    """The arguments every system's runner takes (the orchestrator passes them); add your own."""
    import argparse

    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--durability", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--pace-ms", type=float, default=5.0)
    ap.add_argument("--outage-at", type=float, default=8.0)
    ap.add_argument("--outage-s", type=float, default=10.0)
    return ap


def write_json(path: Path, data: dict) -> None:
    Path(path).write_text(json.dumps(data, indent=2, default=str) + "\n")

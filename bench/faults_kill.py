"""Process-kill scenarios of the fault campaign (``bench/faults.py``; docs/reliability.md).

Each runs a real embedded broker on durable ``s3://`` storage under its workdir, real ``modelog``
processes, and training jobs as subprocesses (``bench/faults_writer.py``) that write down every point the
broker acknowledged; the assertions hold the DuckDB views against that set.

* ``projector-kill``: ``kill -9`` of ``modelog process`` at random moments while 3 jobs log;
* ``drift-kill``: ``kill -9`` of ``modelog drift`` while predictions stream in, against an undisturbed run;
* ``broker-outage``: tansu ``kill -9``-ed during training, restarted 5, 30 and 120 s later;
* ``s3-kill``: the embedded S3 server under tansu ``kill -9``-ed, restarted 5 and 30 s later.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import duckdb

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from compare_common import record_spawn  # noqa: E402

SESSION_TIMEOUT_MS = 2000  # fast consumer-group joins on tansu (as the tests run it)
LOG_CALL_BOUND_S = 1.0  # docs/reliability.md: a log_* call never waits for the broker
FLUSH_TIMEOUT_S = 60.0  # MODELOG_FLUSH_TIMEOUT of the outage scenarios' training jobs
KEYS = 3


def wait_for(predicate, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        got = predicate()
        if got:
            return got
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


# -- the stack: broker, deployments, processes ---------------------------------------------------------

class Broker:
    """The embedded broker on ``s3://`` under ``workdir/broker-home``; every process it starts is on the ledger."""

    def __init__(self, workdir: Path) -> None:
        from modelog.local.broker import EmbeddedBroker

        self.workdir = workdir
        self.embedded = EmbeddedBroker(workdir / "broker-home", storage="s3")
        self.address = ""

    def __enter__(self) -> Broker:
        self.address = self.embedded.start(timeout=60)
        self._record()
        return self

    def __exit__(self, *exc) -> None:
        self.embedded.stop()

    @property
    def port(self) -> int:
        return int(self.address.rsplit(":", 1)[1])

    def state(self) -> dict:
        return self.embedded._state()

    def _record(self) -> None:
        st = self.state()
        record_spawn(self.workdir, st["pid"], "tansu")
        record_spawn(self.workdir, st["s3_pid"], "s3 server")

    def kill_tansu(self) -> None:
        kill9(self.state()["pid"])

    def restart(self) -> None:
        """Start tansu (and a new S3 server) on the same port again."""
        self.embedded.start(port=self.port, timeout=60)
        self._record()

    def kill_s3(self) -> None:
        kill9(self.state()["s3_pid"])

    def restart_s3(self) -> None:
        """The S3 server again on its old port (tansu keeps the endpoint it was started with)."""
        st = self.state()
        data = self.embedded.dir / "s3"
        with (self.embedded.dir / "s3.log").open("ab") as log:
            proc = subprocess.Popen([sys.executable, "-m", "modelog.local.s3server", str(data), "--host", "127.0.0.1",
                                     "--port", str(st["s3_port"])], stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        proc.returncode = 0  # a daemon, like the broker's own: reaped by pid_alive
        record_spawn(self.workdir, proc.pid, "s3 server")
        self.embedded._write_state({**st, "s3_pid": proc.pid})
        from modelog.wire.home import accepts

        wait_for(lambda: accepts(st["s3_port"]), 30, "the S3 server to listen again", 0.05)


def kill9(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    from modelog.wire.home import pid_alive

    wait_for(lambda: not pid_alive(pid), 10, f"pid {pid} to die", 0.02)


class Deployment:
    """One modelog deployment (home, topic prefix) on the broker at ``address``: its processes, training jobs."""

    def __init__(self, workdir: Path, address: str, name: str, **extra: str) -> None:
        from modelog import Settings

        self.workdir = workdir
        self.dir = workdir / name
        self.home = self.dir / "home"
        self.env = {"MODELOG_HOME": str(self.home), "MODELOG_KAFKA_BOOTSTRAP": address,
                    "MODELOG_TOPIC_PREFIX": f"{name}{uuid.uuid4().hex[:6]}.",
                    "MODELOG_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS), "MODELOG_PRINCIPAL": "faults", **extra}
        self.settings = Settings.load(env=self.env)
        self.procs: list[subprocess.Popen] = []

    def child_env(self, **extra: str) -> dict[str, str]:
        return {k: v for k, v in os.environ.items() if not k.startswith("MODELOG_")} | self.env | extra

    def spawn(self, cmd: list[str], log: str, **extra: str) -> subprocess.Popen:
        self.home.mkdir(parents=True, exist_ok=True)
        with (self.dir / log).open("ab") as fh:
            proc = subprocess.Popen(cmd, env=self.child_env(**extra), stdout=fh, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        record_spawn(self.workdir, proc.pid, " ".join(cmd[1:4]))
        self.procs.append(proc)
        return proc

    def modelog(self, command: str, info_file: str, timeout: float = 120) -> subprocess.Popen:
        """``modelog COMMAND`` (process, drift), returned once its info file says it is ready."""
        proc = self.spawn([sys.executable, "-m", "modelog", command, "--loglevel", "info"], f"{command}.log")

        def ready() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"modelog {command} exited {proc.returncode}; see {self.dir / (command + '.log')}")
            try:
                info = json.loads((self.home / info_file).read_text())
            except (OSError, ValueError):
                return False
            return info.get("pid") == proc.pid and bool(info.get("ready"))

        wait_for(ready, timeout, f"modelog {command} to be ready", 0.05)
        return proc

    def projector(self) -> subprocess.Popen:
        return self.modelog("process", "processor.json")

    def drift(self) -> subprocess.Popen:
        return self.modelog("drift", "drift.json")

    def writers(self, n: int, **opts) -> Writers:
        return Writers(self, n, opts)

    def sql(self, query: str) -> list[tuple]:
        import modelog

        return [tuple(r.values()) for r in modelog.sql_arrow(query, self.settings).to_pylist()]

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                stop(proc)


def views(path: Path, names) -> dict[str, list[str]]:
    """Every row of each view in the views file at ``path`` (no processor may hold it), sorted."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        return {v: sorted(map(repr, con.execute(f"SELECT * FROM {v}").fetchall())) for v in names}
    finally:
        con.close()


def stop(proc: subprocess.Popen) -> int:
    proc.terminate()
    try:
        return proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(10)


def kill9_proc(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


# -- training jobs and what they were acknowledged ------------------------------------------------------

class Writers:
    """``n`` training jobs (``bench/faults_writer.py``) logging until ``stop()``."""

    def __init__(self, deployment: Deployment, n: int, opts: dict) -> None:
        tag = uuid.uuid4().hex[:4]
        self.stop_file = deployment.dir / f"stop-{tag}"
        self.acks = [deployment.dir / f"acks-{tag}-{i}.jsonl" for i in range(n)]
        flush_timeout = str(opts.pop("flush_timeout", 30.0))
        linger_ms = str(opts.pop("linger_ms", 50))  # the SDK's default; longer: fewer, larger records
        flags = [f"--{k.replace('_', '-')}={v}" for k, v in opts.items()]
        self.procs = [deployment.spawn([sys.executable, str(HERE / "faults_writer.py"), "--acks", str(a),
                                        "--stop-file", str(self.stop_file), "--name", f"w{tag}-{i}",
                                        f"--keys={KEYS}", *flags], f"writer-{tag}-{i}.log",
                                       MODELOG_FLUSH_TIMEOUT=flush_timeout, MODELOG_LINGER_MS=linger_ms)
                      for i, a in enumerate(self.acks)]

    def stop(self, timeout: float = 180) -> dict:
        """Tell the jobs to finish their runs; wait; return what they were acknowledged."""
        self.stop_file.touch()
        for p in self.procs:
            p.wait(timeout)
        return acknowledged(self.acks)


def acknowledged(files: list[Path]) -> dict:
    """{"upto": {run: highest acknowledged step}, "errors": [...], "failed_runs": {run ids told DeliveryError},
    "summaries": [...]} over the jobs' files."""
    upto: dict[str, int] = {}
    errors, summaries, failed = [], [], set()
    for f in files:
        for line in f.read_text().splitlines():
            rec = json.loads(line)
            if "upto" in rec:
                upto[rec["run"]] = max(upto.get(rec["run"], -1), rec["upto"])
            elif "error" in rec:
                errors.append(rec["error"])
                if rec.get("run"):
                    failed.add(rec["run"])
            elif "summary" in rec:
                summaries.append(rec["summary"])
    return {"upto": upto, "errors": errors, "failed_runs": failed, "summaries": summaries}


def points_check(d: Deployment, upto: dict[str, int], timeout: float = 180, failed: set[str] = frozenset()) -> dict:
    """Wait (bounded) until the views hold every acknowledged point and no run is left RUNNING but those in
    ``failed`` (their job was told DeliveryError, and its end, FAILED, may have failed too while the broker
    was down: nothing acknowledged it); count what is lost and what is doubled."""
    acked = sum((u + 1) * KEYS for u in upto.values())
    values = ", ".join(f"('{r}', {u})" for r, u in upto.items()) or "(NULL, -1)"
    exempt = " AND run_id NOT IN (" + ", ".join(f"'{r}'" for r in sorted(failed)) + ")" if failed else ""

    def stored() -> int:
        return d.sql(f"WITH acked(run_id, upto) AS (VALUES {values}) SELECT count(DISTINCT (m.run_id, key, step)) "
                     "FROM metrics m JOIN acked a ON a.run_id = m.run_id AND m.step <= a.upto")[0][0]

    caught_up = True
    try:
        wait_for(lambda: stored() >= acked and d.sql(f"SELECT count(*) FROM runs WHERE status = 'RUNNING'{exempt}")[0][0] == 0,
                 timeout, "the views to hold every acknowledged point")
    except TimeoutError:
        caught_up = False
    rows, distinct = d.sql("SELECT count(*), count(DISTINCT (run_id, key, step)) FROM metrics")[0]
    events, event_ids = d.sql("SELECT count(*), count(DISTINCT event_id) FROM audit_log")[0]
    return {"acknowledged_points": acked, "acknowledged_lost": acked - stored(), "metric_rows": rows,
            "duplicated_rows": rows - distinct, "duplicated_events": events - event_ids,
            "runs": len(upto), "caught_up": caught_up,
            "runs_left_running_after_delivery_error": d.sql("SELECT count(*) FROM runs WHERE status = 'RUNNING'")[0][0]}


def rebuild_equals_live(d: Deployment) -> list[str]:
    """With the projector stopped: ``modelog rebuild`` into another file; the views that differ from live."""
    from modelog.processors.store import VIEW_NAMES

    out = d.workdir / f"{d.dir.name}-rebuilt.duckdb"
    done = subprocess.run([sys.executable, "-m", "modelog", "rebuild", "--output", str(out)], env=d.child_env(),
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"modelog rebuild exited {done.returncode}: {done.stderr[-2000:]}")
    live, rebuilt = views(d.settings.views_path, VIEW_NAMES), views(out, VIEW_NAMES)
    return [v for v in VIEW_NAMES if live[v] != rebuilt[v]]


# -- 1. projector-kill -------------------------------------------------------------------------------------

def projector_kill(args, workdir: Path, kills: int | None = None) -> dict:
    kills = kills or (5 if args.quick else 50)
    rng = random.Random(10)
    with Broker(workdir) as broker:
        d = Deployment(workdir, broker.address, "p")
        try:
            proj = d.projector()
            # ~3 records/s in all: tansu on s3:// serves a partition slower as its batches grow in number, and
            # 50 kills take ~15 min on a loaded machine (a first run at 60 records/s left the projector behind)
            jobs = d.writers(3, pace_ms=10, flush_every=100, steps_per_run=400, linger_ms=1000)
            restart_s = []
            for _ in range(kills):
                time.sleep(rng.uniform(0.2, 3.0))
                kill9_proc(proj)
                t0 = time.perf_counter()
                proj = d.projector()
                restart_s.append(time.perf_counter() - t0)
            time.sleep(rng.uniform(0.2, 3.0))
            acks = jobs.stop()
            figures = {"kills": kills, **points_check(d, acks["upto"]), "writer_errors": len(acks["errors"]),
                       "restart_to_ready_s_max": round(max(restart_s), 2)}
            stop(proj)
            try:
                figures["views_differing_after_rebuild"] = rebuild_equals_live(d)
            except (subprocess.TimeoutExpired, RuntimeError) as exc:  # the other figures still stand
                figures["views_differing_after_rebuild"] = [f"rebuild did not finish: {str(exc)[:200]}"]
        finally:
            d.close()
    passed = (figures["caught_up"] and figures["acknowledged_lost"] == 0 and figures["duplicated_rows"] == 0
              and figures["duplicated_events"] == 0 and not figures["views_differing_after_rebuild"]
              and figures["writer_errors"] == 0)
    return {"scenario": "projector-kill", "passed": passed,
            "what": f"{kills} x kill -9 of `modelog process` at random moments (0.2-3 s after it is ready) while 3 "
                    "jobs log 3 metrics every 10 ms and flush every 100 steps",
            "figures": figures,
            "notes": "asserts: every acknowledged point in `metrics`, no (run, key, step) twice, no event id twice "
                     "in audit_log, `modelog rebuild` equals live in every view"}


# -- 2. drift-kill -----------------------------------------------------------------------------------------

WINDOW_ROWS, BATCH_ROWS = 500, 100
DRIFT_COMPARED = {
    "drift_windows": 'SELECT "window", rows, dropped, drift_share, dataset_drift FROM drift_windows ORDER BY 1',
    "drift_metrics": 'SELECT "window", "column", method, score, threshold, drift, n_ref, n_cur FROM drift_metrics '
                     "ORDER BY 1, 2",
    "alerts": 'SELECT alert_id, rule, state, "window", value, threshold FROM alerts ORDER BY 1, 3',
}


def drift_feed(d: Deployment, windows: int, pace_s: float, during=None) -> None:
    """The same input every time: a reference, then ``windows`` windows of predictions, calm and drifted in
    blocks of three (so alerts are raised and resolved), ``BATCH_ROWS`` per event; ``during()`` between
    events."""
    import numpy as np
    import pandas as pd

    from modelog import Client, Monitor, configure_monitor, log_reference

    client = Client(d.settings)
    rng = np.random.default_rng(1)
    ref = pd.DataFrame({"income": rng.normal(50, 10, 2000), "city": rng.choice(["Lyon", "Oslo", "Kyiv"], 2000),
                        "score": rng.random(2000)})
    log_reference("faults-model", None, ref, prediction="score", client=client)
    configure_monitor("faults-model", window_rows=WINDOW_ROWS, raise_after=1, resolve_after=2, client=client)
    monitor = Monitor("faults-model", "prod", client=client, batch_rows=BATCH_ROWS, on_full="block")
    rng = np.random.default_rng(2)
    for b in range(windows * WINDOW_ROWS // BATCH_ROWS):
        shift = (b * BATCH_ROWS // WINDOW_ROWS) // 3 % 2
        for _ in range(BATCH_ROWS):
            monitor.log({"income": float(rng.normal(50 + 25 * shift, 10)),
                         "city": str(rng.choice(["Lyon", "Oslo", "Kyiv", "Rome"], p=[0.4, 0.3, 0.3 - 0.2 * shift,
                                                                                    0.2 * shift]))},
                        prediction=float(rng.random() ** (1 + 3 * shift)))
        monitor.flush()
        if during is not None:
            during()
        time.sleep(pace_s)
    monitor.close()
    client.close()


def drift_results(d: Deployment, windows: int, timeout: float = 240) -> dict[str, list]:
    wait_for(lambda: d.sql("SELECT count(*) FROM drift_windows")[0][0] >= windows, timeout,
             f"{windows} measured drift windows")
    time.sleep(3)  # anything measured twice or late would show up now
    return {name: d.sql(q) for name, q in DRIFT_COMPARED.items()}


def drift_kill(args, workdir: Path, kills: int | None = None) -> dict:
    kills = kills or (3 if args.quick else 20)
    windows = max(12, 2 * kills)
    rng = random.Random(20)
    with Broker(workdir) as broker:
        calm = Deployment(workdir, broker.address, "calm")
        try:  # the undisturbed run of the same input
            calm.projector()
            calm.drift()
            drift_feed(calm, windows, 0.0)
            expected = drift_results(calm, windows)
        finally:
            calm.close()
        d = Deployment(workdir, broker.address, "killed")
        killed_in_window = []
        try:
            d.projector()
            box = {"drift": d.drift(), "batches": 0}
            at = sorted(rng.sample(range(1, windows * WINDOW_ROWS // BATCH_ROWS), kills))

            def maybe_kill() -> None:  # after a batch: the open window holds 1-4 of its 5 batches when it is not 0
                box["batches"] += 1
                if at and box["batches"] == at[0]:
                    at.pop(0)
                    killed_in_window.append(box["batches"] % (WINDOW_ROWS // BATCH_ROWS) != 0)
                    time.sleep(rng.uniform(0, 0.5))
                    kill9_proc(box["drift"])
                    box["drift"] = d.drift()

            drift_feed(d, windows, 0.05, during=maybe_kill)
            got = drift_results(d, windows)
        finally:
            d.close()
    differing = [name for name in DRIFT_COMPARED if got[name] != expected[name]]
    first = [f"{name}: {a} after kills, {b} undisturbed" for name in differing
             for a, b in zip(got[name], expected[name]) if a != b][:3]
    figures = {"kills": kills, "kills_mid_window": sum(killed_in_window), "windows": len(got["drift_windows"]),
               "windows_expected": len(expected["drift_windows"]), "alerts": len(got["alerts"]),
               "alerts_expected": len(expected["alerts"]), "views_differing": differing}
    return {"scenario": "drift-kill", "passed": not differing and len(expected["alerts"]) > 0,
            "what": f"kill -9 of `modelog drift` {kills} times while {windows} windows of {WINDOW_ROWS} predictions "
                    f"stream in ({BATCH_ROWS} per event), restarted each time",
            "figures": figures,
            "notes": "; ".join(first) or "asserts: drift_windows, drift_metrics and alerts equal, row for row (times "
                     "aside), an undisturbed drift processor's on the same input in another deployment on the broker"}


# -- 3, 4. broker-outage, s3-kill ----------------------------------------------------------------------------

def outage_scenario(name: str, args, workdir: Path, outages: list[float], kill, restart, what: str) -> dict:
    phases = []
    with Broker(workdir) as broker:
        d = Deployment(workdir, broker.address, "o")
        try:
            proj = d.projector()
            acked: dict[str, int] = {}
            failed: set[str] = set()
            for down in outages:
                jobs = d.writers(2, pace_ms=5, flush_every=0, steps_per_run=1000, flush_timeout=FLUSH_TIMEOUT_S)
                time.sleep(8)
                t0 = time.perf_counter()
                kill(broker)
                time.sleep(down)
                restart(broker)
                back_s = time.perf_counter() - t0
                time.sleep(8)
                acks = jobs.stop(timeout=FLUSH_TIMEOUT_S * 3)
                acked |= acks["upto"]
                failed |= acks["failed_runs"]
                s = acks["summaries"]
                phases.append({"down_s": down, "down_until_ready_s": round(back_s, 1),
                               "runs_acknowledged": len(acks["upto"]),
                               "delivery_errors": len(acks["errors"]),
                               "longest_log_call_s": max(x["longest_log_metrics_s"] for x in s),
                               "longest_start_run_s": max(x["longest_start_run_s"] for x in s),
                               "longest_flush_or_end_s": max(x["longest_flush_or_end_s"] for x in s)})
            projector_alive = proj.poll() is None
            check = points_check(d, acked, failed=failed)
        finally:
            d.close()
    bad = []
    for p in phases:
        if p["longest_log_call_s"] > LOG_CALL_BOUND_S:
            bad.append(f"a log call took {p['longest_log_call_s']} s (> {LOG_CALL_BOUND_S} s)")
        if p["longest_flush_or_end_s"] > FLUSH_TIMEOUT_S + 5:
            bad.append(f"flush/end took {p['longest_flush_or_end_s']} s (> MODELOG_FLUSH_TIMEOUT + 5 s)")
        outlived = p["down_until_ready_s"] > FLUSH_TIMEOUT_S
        if bool(p["delivery_errors"]) != outlived:
            bad.append(f"{p['delivery_errors']} DeliveryError(s) with an outage of {p['down_until_ready_s']} s "
                       f"and MODELOG_FLUSH_TIMEOUT={FLUSH_TIMEOUT_S:g}")
    if not check["caught_up"] or check["acknowledged_lost"] or check["duplicated_rows"]:
        bad.append("acknowledged points lost or rows doubled")
    if not projector_alive:
        bad.append("the projector died")
    figures = {"outages_s": outages, **check, "projector_survived": projector_alive, "phases": phases}
    return {"scenario": name, "passed": not bad, "what": what, "figures": figures,
            "notes": "; ".join(bad) or f"asserts: every acknowledged point stored once; log calls <= "
                                       f"{LOG_CALL_BOUND_S:g} s; flush/end <= MODELOG_FLUSH_TIMEOUT "
                                       f"({FLUSH_TIMEOUT_S:g} s) + 5 s; DeliveryError only when the outage outlived it"}


def broker_outage(args, workdir: Path) -> dict:
    outages = [5.0] if args.quick else [5.0, 30.0, 120.0]
    return outage_scenario("broker-outage", args, workdir, outages, Broker.kill_tansu, Broker.restart,
                           f"tansu (s3://) kill -9-ed while 2 jobs log 3 metrics every 5 ms (a run ends every 5 s), "
                           f"started again on its port after {', '.join(f'{o:g}' for o in outages)} s; the projector "
                           "keeps running")


def s3_kill(args, workdir: Path) -> dict:
    outages = [5.0] if args.quick else [5.0, 30.0]
    return outage_scenario("s3-kill", args, workdir, outages, Broker.kill_s3, Broker.restart_s3,
                           f"the embedded S3 server under tansu kill -9-ed while 2 jobs log, started again on its "
                           f"port after {', '.join(f'{o:g}' for o in outages)} s; tansu and the projector keep running")


SCENARIOS = {"projector-kill": projector_kill, "drift-kill": drift_kill, "broker-outage": broker_outage,
             "s3-kill": s3_kill}

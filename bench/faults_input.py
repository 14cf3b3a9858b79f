"""The fault campaign's bad-input and resource scenarios (issue 10; the runner is ``bench/faults.py``).

Each scenario starts the real embedded broker on durable ``s3://`` storage and a real ``modelog process`` in a
fresh work directory, does its damage, asserts on the views, and ends everything it started:

* ``mutated-records``: 10,000 mutated records (``bench/faults_mutations.py``) produced straight to every topic
  the projector reads, interleaved with good ones -> every sure-bad one in the dead letters with a reason (on
  the dead-letter topic and in ``dead_letters``), every record accounted for, the processor never stops, every
  good record projected.
* ``disk-full``: the views on a small tmpfs, logged until it fills -> the processor stops projecting with an
  error naming the file, the views hold whole batches only; the tmpfs grown -> it catches up to every
  acknowledged point, none doubled.
* ``slow-reader``: long queries in a loop through the processor's SQL endpoint while a writer logs -> the
  writer's points per second and the event-to-query freshness with and without it.

    python bench/faults_input.py [--only NAME[,NAME]] [--quick] [--out bench/results/faults_input.json]

``--quick`` scales the counts down (500 mutated records). Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from compare_common import cleanup_spawned, machine, record_spawn, terminate_tree, write_json  # noqa: E402

SESSION_TIMEOUT_MS = 2000


# -- the stack: embedded broker (s3://) + modelog process ------------------------------------------------------

class Stack:
    """The embedded broker on durable ``s3://`` storage under ``workdir/home`` and ``modelog process`` as a child
    process (``extra_env``: e.g. ``MODELOG_DB`` elsewhere). Every pid goes to ``workdir/spawned.jsonl``."""

    def __init__(self, workdir: Path, extra_env: dict[str, str] | None = None) -> None:
        self.workdir = Path(workdir)
        self.home = self.workdir / "home"
        self.extra_env = extra_env or {}
        self.broker = None
        self.proc: subprocess.Popen | None = None
        self.log = self.workdir / "processor.log"
        self.env: dict[str, str] = {}
        self.settings = None

    def start_broker(self) -> Stack:
        from modelog import Settings
        from modelog.local.broker import EmbeddedBroker

        self.broker = EmbeddedBroker(self.home, storage="s3")
        bootstrap = self.broker.start()
        st = self.broker.status()
        for what in ("pid", "s3_pid"):
            if st.get(what):
                record_spawn(self.workdir, int(st[what]), f"embedded broker ({what})")
        self.env = {"MODELOG_HOME": str(self.home), "MODELOG_KAFKA_BOOTSTRAP": bootstrap,
                    "MODELOG_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS), "MODELOG_PRINCIPAL": "faults",
                    "MODELOG_LINGER_MS": "20", **self.extra_env}
        self.settings = Settings.load(env=self.env)
        return self

    def start_processor(self, timeout: float = 120) -> Stack:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MODELOG_")} | self.env
        with self.log.open("ab") as fh:
            self.proc = subprocess.Popen([sys.executable, "-m", "modelog", "process", "--loglevel", "info"], env=env,
                                         stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        record_spawn(self.workdir, self.proc.pid, "modelog process", group=True)
        info_file = self.home / "processor.json"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the processor exited {self.proc.returncode}: {self.tail()}")
            try:
                info = json.loads(info_file.read_text())
                if info.get("pid") == self.proc.pid and info.get("ready"):
                    return self
            except (OSError, ValueError):
                pass
            time.sleep(0.1)
        raise TimeoutError(f"the processor was not ready after {timeout:.0f} s: {self.tail()}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, n: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def sql(self, query: str, cache: bool = True) -> list[dict]:
        import modelog

        return modelog.sql_arrow(query, self.settings, cache=cache).to_pylist()

    def topic(self, name: str) -> str:
        return f"{self.settings.topic_prefix}{name}"

    def stop(self) -> None:
        if self.proc is not None:
            terminate_tree(self.proc.pid, timeout=30)
            try:  # reaped by terminate_tree: let the Popen know (no "still running" warning)
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        if self.broker is not None:
            self.broker.stop()
        cleanup_spawned(self.workdir)


def wait_until(pred: Callable[[], object], timeout: float, step: float = 0.25):
    """``pred()``'s first truthy value within ``timeout`` seconds, else None."""
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > deadline:
            return None
        time.sleep(step)


def result(name: str, passed: bool, what: str, figures: dict, notes: str) -> dict:
    return {"scenario": name, "passed": bool(passed), "what": what, "figures": figures, "notes": notes}


# -- mutated-records ---------------------------------------------------------------------------------------------

def mutated_records(args: argparse.Namespace, workdir: Path) -> dict:
    from confluent_kafka import Consumer, Producer

    from faults_mutations import campaign

    total = getattr(args, "mutations", None) or (500 if args.quick else 10_000)
    what = f"{total:,} mutated records (13 kinds) + good ones between them, straight to the 3 projected topics"
    stack = Stack(workdir)
    try:
        stack.start_broker().start_processor()
        records = campaign(total)
        placed: dict[int, tuple[str, int, int]] = {}  # record index -> (topic, partition, offset)
        failed: list[str] = []

        def report(i):
            def cb(err, msg):
                if err is not None:
                    failed.append(f"{i}: {err}")
                else:
                    placed[i] = (msg.topic(), msg.partition(), msg.offset())
            return cb

        producer = Producer({"bootstrap.servers": stack.settings.resolve_bootstrap(), "enable.idempotence": True,
                             "message.max.bytes": 2_000_000, "linger.ms": 20})
        t0 = time.perf_counter()
        alive_samples = []
        for i, r in enumerate(records):
            producer.produce(stack.topic(r.topic), key=r.key, value=r.value, headers=r.headers, on_delivery=report(i))
            producer.poll(0)
            if i % 500 == 0:
                alive_samples.append(stack.alive())
        left = producer.flush(120)
        produce_s = time.perf_counter() - t0
        bad = [i for i, r in enumerate(records) if r.kind]
        good = [i for i, r in enumerate(records) if not r.kind]

        def settled():  # every record we placed is an event or a dead letter (all the topics' records are ours)
            alive_samples.append(stack.alive())
            if not stack.alive():
                return "stopped"
            n = stack.sql("SELECT (SELECT count(*) FROM audit_log) + (SELECT count(*) FROM dead_letters) AS n")[0]["n"]
            return n >= len(placed) and "ok"

        # bounded, but by the load: on 2 cores shared with other work the projector took ~20 records/s here
        state = wait_until(settled, max(120.0, 0.2 * len(records)), 1.0)
        all_s = time.perf_counter() - t0
        events = {(r["topic"], r["partition"], r["offset"]): r["event_id"]
                  for r in stack.sql('SELECT topic, "partition", "offset", event_id FROM audit_log')}
        dead = {(r["topic"], r["partition"], r["offset"]): r["reason"]
                for r in stack.sql('SELECT topic, "partition", "offset", reason, detail FROM dead_letters')
                if r["reason"] and r["detail"]}
        # the dead-letter topic: one record per dead letter, with its reason and source in headers
        on_topic: dict[tuple[str, int, int], str] = {}
        consumer = Consumer({"bootstrap.servers": stack.settings.resolve_bootstrap(), "group.id": f"faults-{uuid.uuid4().hex}",
                             "auto.offset.reset": "earliest", "session.timeout.ms": 6000, "enable.auto.commit": False})
        consumer.subscribe([stack.topic("deadletter")])
        try:
            # up to 120 s for the group join and the first fetch, then until 15 s pass without a record
            quiet, wait = time.monotonic(), 120.0
            while time.monotonic() - quiet < wait and len(on_topic) < len(dead):
                m = consumer.poll(0.5)
                if m is None or m.error():
                    continue
                quiet, wait = time.monotonic(), 15.0
                h = dict(m.headers() or [])
                topic, part, off = h["modelog.source"].decode().rsplit("/", 2)
                on_topic[(topic, int(part), int(off))] = h["modelog.reason"].decode()
        finally:
            consumer.close()

        outcome: Counter = Counter()
        reasons: Counter = Counter()
        missing_bad, lost, good_dead, doubled_dead = [], [], [], []
        for i, r in enumerate(records):
            pos = placed.get(i)
            if pos is None:
                continue
            in_dead, in_views = pos in dead, pos in events
            if r.kind is None:
                if not in_views:
                    (good_dead if in_dead else lost).append(i)
                continue
            outcome[(r.kind, "dead" if in_dead else "projected" if in_views else "missing")] += 1
            if in_dead:
                reasons[dead[pos]] += 1
                if pos not in on_topic:
                    doubled_dead.append(i)
            elif r.sure_bad:
                missing_bad.append(f"{r.kind}@{pos}")
            elif not in_views:
                lost.append(i)
        sure = sum(1 for i in bad if records[i].sure_bad)
        sure_dead = sum(1 for i in bad if records[i].sure_bad and placed.get(i) in dead)
        crashed = [ln for ln in stack.tail(200_000).splitlines() if "Traceback" in ln or "crashed" in ln.lower()]
        figures = {
            "mutated_records": len(bad), "good_records": len(good), "produce_failures": len(failed) + left,
            "sure_bad": sure, "sure_bad_dead_lettered": sure_dead,
            "sure_bad_dead_lettered_pct": round(100 * sure_dead / max(1, sure), 2),
            "bit_flip_body_dead": outcome[("bit-flip-body", "dead")],
            "bit_flip_body_projected": outcome[("bit-flip-body", "projected")],
            "dead_letters_in_view": len(dead), "dead_letters_on_topic": len(on_topic),
            "good_projected": len(good) - len(lost) - len(good_dead), "good_lost": len(lost), "good_dead": len(good_dead),
            "unaccounted": len(lost) + len(missing_bad), "processor_alive_throughout": all(alive_samples),
            "processor_errors_logged": len(crashed), "produce_s": round(produce_s, 1), "all_settled_s": round(all_s, 1),
            "records_per_s": round(len(records) / all_s), "reasons": dict(reasons),
            "by_kind": {f"{k}: {o}": n for (k, o), n in sorted(outcome.items())},
        }
        passed = (state == "ok" and not failed and not left and sure_dead == sure and not lost and not good_dead
                  and not missing_bad and not doubled_dead and all(alive_samples) and not crashed)
        notes = []
        if missing_bad:
            notes.append(f"sure-bad records not dead-lettered: {missing_bad[:10]}")
        if lost or good_dead:
            notes.append(f"good records not projected: {len(lost)} lost, {len(good_dead)} dead-lettered")
        if doubled_dead:
            notes.append(f"{len(doubled_dead)} dead letters in the view but not on the dead-letter topic")
        if crashed:
            notes.append("processor log: " + " | ".join(crashed[:3]))
        if state != "ok":
            notes.append(f"not settled ({state}): {stack.tail(1500)}")
        return result("mutated-records", passed, what, figures, "; ".join(notes) or
                      "every sure-bad record dead-lettered with a reason on the topic and in the view; "
                      "every good record projected; the processor never stopped")
    finally:
        stack.stop()


# -- disk-full ------------------------------------------------------------------------------------------------------

KEYS = [f"m{j:02d}" for j in range(20)]


def mount_tmpfs(path: Path, mib: int, remount: bool = False) -> str | None:
    """Mount (or resize) a tmpfs of ``mib`` MiB at ``path``; the error text, or None."""
    path.mkdir(parents=True, exist_ok=True)
    cmd = ["mount", "-o", f"remount,size={mib}m", str(path)] if remount else \
        ["mount", "-t", "tmpfs", "-o", f"size={mib}m", "tmpfs", str(path)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    return None if out.returncode == 0 else (out.stderr or out.stdout).strip() or f"exit {out.returncode}"


def umount(path: Path) -> None:
    subprocess.run(["umount", str(path)], capture_output=True)


class Writer(threading.Thread):
    """One run logging 20 metrics per step; ``acked`` = the steps a successful ``flush`` confirmed."""

    def __init__(self, settings, name: str, flush_every: int = 50, pace_s: float = 0.0) -> None:
        super().__init__(name=f"writer-{name}", daemon=True)
        self.settings, self.run_name, self.flush_every, self.pace_s = settings, name, flush_every, pace_s
        self.stop_event = threading.Event()
        self.acked = 0
        self.run_id: str | None = None
        self.error: str | None = None
        self.flush_times: list[float] = []

    def run(self) -> None:
        from modelog import Client

        client = Client(self.settings)
        try:
            with client.start_run(experiment="faults", name=self.run_name) as run:
                self.run_id = run.id
                step = 0
                while not self.stop_event.is_set():
                    run.log_metrics({k: step + j * 0.001 for j, k in enumerate(KEYS)}, step=step)
                    step += 1
                    if step % self.flush_every == 0:
                        t0 = time.perf_counter()
                        client.flush()
                        self.flush_times.append(time.perf_counter() - t0)
                        self.acked = step
                    if self.pace_s:
                        time.sleep(self.pace_s)
            client.flush()
            self.acked = step
        except Exception as exc:  # noqa: BLE001 -- reported by the scenario
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            client.close()


def run_consistency(stack: Stack, run_id: str) -> dict:
    """What the views hold of one writer's run: points, distinct (key, step), whole steps, the step prefix."""
    r = stack.sql(f"""SELECT count(*) AS points, count(DISTINCT (key, step)) AS distinct_points,
                             count(DISTINCT step) AS steps, coalesce(max(step) + 1, 0) AS prefix
                      FROM metrics WHERE run_id = '{run_id}'""")[0]
    partial = stack.sql(f"""SELECT count(*) AS n FROM (SELECT step FROM metrics WHERE run_id = '{run_id}'
                            GROUP BY step HAVING count(*) <> {len(KEYS)})""")[0]["n"]
    return {**r, "partial_steps": partial,
            "whole": r["points"] == r["distinct_points"] == r["steps"] * len(KEYS) == r["prefix"] * len(KEYS)
            and partial == 0}


def disk_full(args: argparse.Namespace, workdir: Path) -> dict:
    size, grown = (6, 256) if args.quick else (12, 512)
    what = (f"views on a {size} MiB tmpfs, one writer logging 20 metrics/step until it fills; then grown "
            f"to {grown} MiB")
    views = workdir / "views"
    err = mount_tmpfs(views, size)
    if err:
        return result("disk-full", False, what, {}, f"cannot mount a tmpfs at {views} ({err}): needs root")
    db = views / "views.duckdb"
    stack = Stack(workdir, {"MODELOG_DB": str(db)})
    writer = None
    figures: dict = {"tmpfs_mib": size, "grown_mib": grown}
    notes: list[str] = []
    try:
        stack.start_broker().start_processor()
        pid = stack.proc.pid
        writer = Writer(stack.settings, "disk-full")
        t0 = time.perf_counter()
        writer.start()
        wait_until(lambda: writer.run_id, 60)
        run_id = writer.run_id

        def full_error() -> str | None:
            for line in stack.tail(400_000).splitlines():
                if "cannot write the views" in line:
                    return line.strip()
            return None

        line = wait_until(full_error, 240 if args.quick else 480, 0.5)
        figures["filled_after_s"] = round(time.perf_counter() - t0, 1)
        if not line:
            notes.append(f"the tmpfs did not fill: {run_consistency(stack, run_id)} of {writer.acked * len(KEYS)} "
                         f"acknowledged points projected; df: {subprocess.run(['df', '-h', str(views)], capture_output=True, text=True).stdout!r}")
        time.sleep(5)  # the writer goes on meanwhile: a backlog the processor must catch up on
        writer.stop_event.set()
        writer.join(120)
        figures["acked_points"] = acked = writer.acked * len(KEYS)
        figures["writer_error"] = writer.error
        time.sleep(3)
        figures["processor_alive_when_full"] = stack.alive() and stack.proc.pid == pid
        held = run_consistency(stack, run_id) if stack.alive() else {"whole": False}
        figures["when_full"] = held
        figures["error_line"] = (line or "")[:1000]
        names_disk = bool(line) and str(db) in line and "No space left" in line
        # space back
        err = mount_tmpfs(views, grown, remount=True)
        if err:
            notes.append(f"remount failed: {err}")
        t1 = time.perf_counter()
        resumed = wait_until(lambda: "projecting resumes" in stack.tail(400_000) and "ok", 60, 0.5)
        figures["resumed_line"] = bool(resumed)
        caught = wait_until(lambda: stack.alive() and run_consistency(stack, run_id)["points"] >= acked and "ok",
                            180 if args.quick else 300, 1.0)
        figures["caught_up_s"] = round(time.perf_counter() - t1, 1) if caught else None
        after = run_consistency(stack, run_id) if stack.alive() else {"whole": False, "points": None}
        figures["after"] = after
        figures["same_processor_throughout"] = stack.alive() and stack.proc.pid == pid
        passed = (bool(line) and names_disk and figures["processor_alive_when_full"] and held["whole"]
                  and held.get("points", 0) < acked and bool(caught) and after["whole"] and after["points"] >= acked
                  and figures["same_processor_throughout"])
        if not line:
            notes.append(f"no 'cannot write the views' log line: {stack.tail(1500)}")
        elif not names_disk:
            notes.append("the error does not name the views file")
        if not held["whole"]:
            notes.append(f"views not whole batches when full: {held}")
        if writer.error:  # the last flush's events may still be delivered: at least the acknowledged ones count
            notes.append(f"the writer's last flush failed ({writer.error}): only the points flushed before count")
        if not caught or (after.get("points") or 0) < acked:
            notes.append(f"not caught up: {after.get('points')} of {acked} acknowledged points")
        if not figures["same_processor_throughout"]:
            notes.append(f"the processor stopped: {stack.tail(1500)}")
        return result("disk-full", passed, what, figures, "; ".join(notes) or
                      "stopped projecting with an error naming the file, whole batches only, caught up after")
    finally:
        if writer is not None:
            writer.stop_event.set()
        stack.stop()
        umount(views)


# -- slow-reader --------------------------------------------------------------------------------------------------

# the bounds (docs/reliability.md): with 2 threads of ~READER_TARGET_S queries in a loop, half the probes are
# visible in less time than the reader's median query (a writer held up by the readers would wait them out),
# every probe within FRESHNESS_BOUND_S, and points/s into the views >= THROUGHPUT_FLOOR of without (the reader
# takes CPU from the projector on 2 shared cores: that is contention, not blocking)
FRESHNESS_BOUND_S = 10.0
THROUGHPUT_FLOOR = 0.25
READER_TARGET_S = 2.0  # the slow reader's query is sized to take at least half this long


class SlowReader(threading.Thread):
    """Heavy queries in a loop through the processor's SQL endpoint (``modelog.sql_arrow``)."""

    def __init__(self, stack: Stack, query: str) -> None:
        super().__init__(name="slow-reader", daemon=True)
        self.stack, self.query = stack, query
        self.stop_event = threading.Event()
        self.durations: list[float] = []
        self.errors: list[str] = []

    def run(self) -> None:
        while not self.stop_event.is_set():
            t0 = time.perf_counter()
            try:
                self.stack.sql(self.query, cache=False)  # run every time, not answered as kept (decision 0028)
                self.durations.append(time.perf_counter() - t0)
            except Exception as exc:  # noqa: BLE001 -- counted and reported
                self.errors.append(f"{type(exc).__name__}: {exc}"[:300])
                time.sleep(0.5)


def heavy_query(rows: int) -> str:
    """A self-join of ``rows`` x ``rows`` metric points (CPU-bound in DuckDB, reads the views)."""
    return (f"SELECT count(*) AS n FROM (SELECT value FROM metrics LIMIT {rows}) a, "
            f"(SELECT value FROM metrics LIMIT {rows}) b WHERE a.value < b.value")


def write_phase(stack: Stack, client, label: str, steps: int, probes: int) -> dict:
    """One run of ``steps`` x 20 metrics as fast as the SDK takes them -> points/s until all are in SQL; then
    ``probes`` single points, each polled with SQL until visible -> freshness."""
    points = steps * len(KEYS)
    t0 = time.perf_counter()
    with client.start_run(experiment="faults-reader", name=label) as run:
        for step in range(steps):
            run.log_metrics({k: step + j * 0.001 for j, k in enumerate(KEYS)}, step=step)
        run_id = run.id
    client.flush()
    seen = wait_until(lambda: stack.sql(f"SELECT count(*) AS n FROM metrics WHERE run_id = '{run_id}'")[0]["n"]
                      >= points, 300, 0.05)
    total = time.perf_counter() - t0
    lat = []
    with client.start_run(experiment="faults-reader", name=f"{label}-probe") as run:
        for i in range(probes):
            t1 = time.perf_counter()
            run.log_metric("probe", float(i), step=i)
            client.flush()
            def visible(i=i, run_id=run.id):
                got = stack.sql(f"SELECT max(step) AS s FROM metrics WHERE run_id = '{run_id}'")[0]["s"]
                return got is not None and got >= i

            wait_until(visible, 60, 0.01)
            lat.append(time.perf_counter() - t1)
    lat.sort()
    return {"points": points, "all_visible": bool(seen), "points_per_s": round(points / total),
            "freshness_p50_ms": round(1000 * lat[len(lat) // 2]), "freshness_p99_ms": round(1000 * lat[int(0.99 * (len(lat) - 1))]),
            "freshness_max_ms": round(1000 * lat[-1])}


def slow_reader(args: argparse.Namespace, workdir: Path) -> dict:
    steps, probes = (1000, 20) if args.quick else (5000, 60)
    what = (f"a writer logging {steps:,} steps x 20 metrics, then {probes} freshness probes, without and with 2 "
            f"threads running ~{READER_TARGET_S:.0f} s queries in a loop through the SQL endpoint")
    stack = Stack(workdir)
    readers: list[SlowReader] = []
    try:
        stack.start_broker().start_processor()
        from modelog import Client

        client = Client(stack.settings)
        try:
            write_phase(stack, client, "warm-up", 50, 3)  # first run, first fetches: not measured
            quiet = write_phase(stack, client, "quiet", steps, probes)
            rows = 1000  # size the reader's query to about READER_TARGET_S on this machine now
            while True:
                t0 = time.perf_counter()
                stack.sql(heavy_query(rows))
                took = time.perf_counter() - t0
                if took >= READER_TARGET_S / 2 or rows >= 400_000:
                    break
                rows = int(rows * min(4.0, max(1.5, (READER_TARGET_S / max(took, 1e-3)) ** 0.5)))
            readers = [SlowReader(stack, heavy_query(rows)) for _ in range(2)]
            for r in readers:
                r.start()
            time.sleep(READER_TARGET_S)  # both readers inside a query before the writer starts
            busy = write_phase(stack, client, "busy", steps, probes)
        finally:
            client.close()
        for r in readers:
            r.stop_event.set()
        for r in readers:
            r.join(120)
        durations = sorted(d for r in readers for d in r.durations)
        errors = [e for r in readers for e in r.errors]
        figures = {
            "points_per_s_quiet": quiet["points_per_s"], "points_per_s_with_reader": busy["points_per_s"],
            "throughput_ratio": round(busy["points_per_s"] / max(1, quiet["points_per_s"]), 2),
            "freshness_p50_ms_quiet": quiet["freshness_p50_ms"], "freshness_p99_ms_quiet": quiet["freshness_p99_ms"],
            "freshness_max_ms_quiet": quiet["freshness_max_ms"],
            "freshness_p50_ms_with_reader": busy["freshness_p50_ms"],
            "freshness_p99_ms_with_reader": busy["freshness_p99_ms"],
            "freshness_max_ms_with_reader": busy["freshness_max_ms"],
            "reader_queries": len(durations), "reader_query_rows": rows,
            "reader_query_median_s": round(durations[len(durations) // 2], 2) if durations else None,
            "reader_errors": len(errors), "freshness_bound_ms": round(FRESHNESS_BOUND_S * 1000),
            "throughput_floor": THROUGHPUT_FLOOR,
        }
        query_ms = 1000 * (figures["reader_query_median_s"] or 0)
        passed = (quiet["all_visible"] and busy["all_visible"] and busy["freshness_max_ms"] <= FRESHNESS_BOUND_S * 1000
                  and busy["freshness_p50_ms"] < query_ms
                  and figures["throughput_ratio"] >= THROUGHPUT_FLOOR and len(durations) >= 2 and not errors
                  and stack.alive())
        notes = []
        if errors:
            notes.append(f"reader errors: {errors[:3]}")
        if busy["freshness_max_ms"] > FRESHNESS_BOUND_S * 1000:
            notes.append(f"a probe took {busy['freshness_max_ms']} ms with the reader (bound {FRESHNESS_BOUND_S} s)")
        if busy["freshness_p50_ms"] >= query_ms:
            notes.append(f"freshness p50 {busy['freshness_p50_ms']} ms >= the reader's median query {query_ms:.0f} ms")
        if figures["throughput_ratio"] < THROUGHPUT_FLOOR:
            notes.append(f"points/s with the reader fell to {figures['throughput_ratio']:.0%} of without")
        return result("slow-reader", passed, what, figures, "; ".join(notes) or
                      f"writes not blocked: every probe visible within {FRESHNESS_BOUND_S:.0f} s, half of them "
                      "sooner than one of the reader's queries takes")
    finally:
        for r in readers:
            r.stop_event.set()
        stack.stop()


SCENARIOS: dict[str, Callable[[argparse.Namespace, Path], dict]] = {
    "mutated-records": mutated_records,
    "disk-full": disk_full,
    "slow-reader": slow_reader,
}


# -- running alone ---------------------------------------------------------------------------------------------------

def run(names: list[str], args: argparse.Namespace, base: Path) -> list[dict]:
    out = []
    for name in names:
        workdir = base / name
        workdir.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        try:
            r = SCENARIOS[name](args, workdir)
        except Exception as exc:  # noqa: BLE001 -- one scenario's failure is reported, the others still run
            r = result(name, False, "", {}, f"{type(exc).__name__}: {exc}\n{traceback.format_exc()[-2000:]}")
        finally:
            cleanup_spawned(workdir)
        r["seconds"] = round(time.perf_counter() - t0, 1)
        out.append(r)
    return out


def table(results: list[dict]) -> str:
    lines = [f"{'scenario':<16} {'result':<6} {'s':>6}  figures"]
    for r in results:
        f = {k: v for k, v in r["figures"].items() if not isinstance(v, dict)}
        lines.append(f"{r['scenario']:<16} {'PASS' if r['passed'] else 'FAIL':<6} {r.get('seconds', 0):>6}  "
                     + ", ".join(f"{k}={v}" for k, v in f.items()))
        if not r["passed"]:
            lines.append(f"{'':<30}{r['notes'][:600]}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="", help="comma-separated scenario names (default: all)")
    ap.add_argument("--quick", action="store_true", help="smaller counts")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "faults_input.json")
    ap.add_argument("--workdir", type=Path, default=None, help="default: a fresh temporary directory")
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        ap.error(f"--only: unknown scenario(s) {unknown}; known: {list(SCENARIOS)}")
    before = machine()
    base = args.workdir or Path(tempfile.mkdtemp(prefix="modelog-faults-input-"))
    results = run(names, args, base)
    data = {"machine": before, "machine_after": machine(), "quick": args.quick, "results": results}
    print(f"\nmodelog fault campaign: bad input and resources ({'quick' if args.quick else 'full'}); "
          f"{before['cpus']} CPUs, load {before['loadavg_1_5_15']}")
    print(table(results))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, data)
    print(f"\nwrote {args.out}")
    return 0 if all(r["passed"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())

"""What read scoping costs (decision 0022): building a scoped connection, and queries through it vs unscoped.

    .venv/bin/python bench/read_scope.py [--runs 2000] [--experiments 20] [--points 50] [--repeat 5]

A views file with RUNS runs spread over EXPERIMENTS experiments, each with 5 params, 5 tags and POINTS points of
one metric, written straight into the base tables (and the current-state tables, as the store keeps them). The
log is governed; "bob" holds a role on one experiment. Times (median of REPEAT):

- shadows: building bob's scoped connection (``shadow_views``: every base table shadowed, every view re-created);
  the SQL endpoint does this once per (scope, grants version) and keeps the connection
- per query, unscoped (the admin) vs scoped (bob, on the kept connection): the runs page the UI asks for, a
  by-id read, the latest metrics of the readable runs, the audit log's first page

Prints a table, writes bench/results/read_scope.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from modelog.processors.current import CURRENT, definition_sql
from modelog.processors.query_server import arrow_result, shadow_views
from modelog.processors.scope import read_scope
from modelog.processors.store import ViewStore

QUERIES = {
    "runs page (ORDER BY start_time LIMIT 100)": "SELECT * FROM runs ORDER BY start_time DESC LIMIT 100",
    "one run by id": "SELECT * FROM runs WHERE run_id = 'r00000000000000000000000000000000'",
    "latest_metrics (all readable)": "SELECT count(*) FROM latest_metrics",
    "audit_log first page": "SELECT * FROM audit_log ORDER BY occurred_at DESC, event_id DESC LIMIT 100",
    "metrics history of one run": "SELECT * FROM metrics WHERE run_id = 'r00000000000000000000000000000000'",
}


def build(path: Path, runs: int, experiments: int, points: int) -> ViewStore:
    store = ViewStore(path)
    con = store.con
    con.execute(f"""
        INSERT INTO log_experiments SELECT 'ex' || i, 'exp-' || i, NULL, now(), 'alice' FROM range({experiments}) t(i);
        INSERT INTO log_run_started (event_id, run_id, experiment, name, start_time, actor)
            SELECT 'rs' || i, 'r' || lpad(i::VARCHAR, 32, '0'), 'exp-' || (i % {experiments}), 'run-' || i,
                   now() - to_seconds(i), 'alice' FROM range({runs}) t(i);
        INSERT INTO log_run_ended (event_id, run_id, status, end_time, actor)
            SELECT 're' || i, 'r' || lpad(i::VARCHAR, 32, '0'), 'FINISHED', now(), 'alice' FROM range({runs}) t(i);
        INSERT INTO log_params (event_id, run_id, key, value, value_type, logged_at)
            SELECT 'rp' || i, 'r' || lpad(i::VARCHAR, 32, '0'), 'p' || k, k::VARCHAR, 'int', now()
            FROM range({runs}) t(i), range(5) u(k);
        INSERT INTO log_tags (event_id, run_id, key, value, set_at)
            SELECT 'rt' || i, 'r' || lpad(i::VARCHAR, 32, '0'), 't' || k, 'v', now() FROM range({runs}) t(i), range(5) u(k);
        INSERT INTO log_metrics (event_id, run_id, key, value, step, "timestamp")
            SELECT 'rm' || i, 'r' || lpad(i::VARCHAR, 32, '0'), 'loss', 1.0 / (s + 1), s, now()
            FROM range({runs}) t(i), range({points}) u(s);
        INSERT INTO log_events (event_id, event_type, occurred_at, actor, entity_type, entity_key)
            SELECT 'rs' || i, 'RunStarted', now() - to_seconds(i), 'alice', 'run', 'r' || lpad(i::VARCHAR, 32, '0')
            FROM range({runs}) t(i);
        INSERT INTO log_keys (event_id, key_id, principal, public_key, bootstrap, registered_at)
            VALUES ('k0', 'ed25519:0', 'alice', '\\x00'::BLOB, true, now());
        INSERT INTO log_events (event_id, event_type, occurred_at, actor, entity_type, entity_key, logged_at)
            VALUES ('k0', 'KeyRegistered', now(), 'alice', 'key', 'keys', now());
        INSERT INTO log_access (event_id, principal, role, model, experiment, granted, changed_at, changed_by)
            VALUES ('a0', 'bob', 'reader', NULL, 'exp-0', true, now(), 'alice');
    """)
    con.execute("INSERT INTO log_metric_summaries BY NAME " + __import__("modelog.processors.tables", fromlist=["x"])
                .METRIC_SUMMARY_SELECT.replace("{points}", "log_metrics"))
    for c in CURRENT.values():
        con.execute(f"INSERT INTO {c.name} BY NAME {definition_sql(c)}")
    return store


def median_ms(fn, repeat: int) -> float:
    fn()  # warm
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=2000)
    ap.add_argument("--experiments", type=int, default=20)
    ap.add_argument("--points", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = build(Path(tmp) / "views.duckdb", args.runs, args.experiments, args.points)
        admin = store.reader()
        admin_scope = read_scope(admin, "alice")
        bob_scope = read_scope(admin, "bob")
        assert admin_scope.everything and bob_scope.experiments == {"exp-0"}, (admin_scope, bob_scope)

        def shadows():
            cur = store.reader()
            shadow_views(cur, scope=bob_scope)
            cur.close()

        results = {"runs": args.runs, "experiments": args.experiments, "points": args.points,
                   "shadows_ms": median_ms(shadows, args.repeat), "queries": {}}
        bob = store.reader()
        shadow_views(bob, scope=bob_scope)
        for name, sql in QUERIES.items():
            results["queries"][name] = {
                "unscoped_ms": median_ms(lambda: arrow_result(admin, sql, scope=admin_scope), args.repeat),
                "scoped_ms": median_ms(lambda: arrow_result(bob, sql, scope=bob_scope, shadowed=True), args.repeat),
                "scoped_rows": arrow_result(bob, sql, scope=bob_scope, shadowed=True).num_rows,
            }
        store.close()
    print(f"read scoping: {args.runs} runs in {args.experiments} experiments, {args.points} points each; "
          f"bob reads 1 experiment")
    print(f"building bob's scoped connection: {results['shadows_ms']:.0f} ms (once per scope and grants version)")
    print(f"{'query':45} {'unscoped ms':>12} {'scoped ms':>10} {'rows':>6}")
    for name, r in results["queries"].items():
        print(f"{name:45} {r['unscoped_ms']:12.1f} {r['scoped_ms']:10.1f} {r['scoped_rows']:6d}")
    out = Path(__file__).parent / "results" / "read_scope.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

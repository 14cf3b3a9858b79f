"""The HTTP API against MLflow's tracking server on the same data (issue 11), and the runs page's first render.

    .venv/bin/python bench/api.py [--runs 10000] [--points 1000000] [--repeat 50] [--quick]
                                  [--storage s3|memory] [--skip-mlflow] [--mlflow-load server|direct]
                                  [--render-loads 7] [--budget-s 90]

The dataset (``bench/api_common.Dataset``, the same for both): ``--runs`` runs in one experiment, each with
5 params, 2 tags and 3 metrics (one point each, so the latest values), plus one run (another experiment)
whose metric ``curve`` has ``--points`` points.

* **modelog**: logged through the SDK into the embedded broker (tansu ``s3://`` on localbucket by default;
  ``--storage memory`` is quicker to load and reads the same views) with the projector running, until
  ``Client.wait_projected`` returns; then ``modelog serve`` on a free port of 127.0.0.1 with the admin token.
  Timed over one kept-alive ``http.client`` connection, each request's JSON decoded:
  ``GET /api/v1/runs?experiment=…&filter=metrics.auc > 0.5 AND params.depth = 6&order_by=metrics.auc DESC&limit=100``
  and ``GET /api/v1/runs/{id}/metrics/curve?max_points=2000``; plus the unbucketed history through
  ``modelog.sql_arrow`` (every point, Arrow) for comparison with MLflow's full answer.
* **MLflow 3.17.2** (``bench/api_mlflow.py`` in the peers' venv ``bench/.venv-peers``): ``mlflow server``
  with a sqlite backend, loaded with ``log_batch``, timing ``MlflowClient.search_runs`` (same filter and
  order, ``max_results=100``) and ``get_metric_history`` (every point: MLflow has no downsampling).
* **First render**: headless chromium (Selenium) logged in through ``/?token=…`` loads
  ``/experiments/bench-api``; the time from navigation start until the runs table holds its rows is read
  in the page (a MutationObserver installed before any script runs records ``performance.now()``).

Each request: warm-up, then p50 / p99 over ``--repeat`` calls, each loop also bounded by ``--budget-s``.
Both sides answer the same first page (run names, in order), checked. Prints a table, writes
``bench/results/api.json``. Every process started is ended, also on error.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import traceback
import urllib.parse
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from api_common import (  # noqa: E402
    EXPERIMENT,
    FILTER_MODELOG,
    HISTORY_EXPERIMENT,
    HISTORY_KEY,
    HISTORY_RUN,
    MAX_POINTS,
    ORDER_MODELOG,
    PAGE,
    Dataset,
    timed,
)
from compare_common import cleanup_spawned, machine, record_spawn, run_bounded, write_json  # noqa: E402

GOAL_SPEEDUP = 10.0
GOAL_RENDER_MS = 1000.0
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
# records when the runs table first holds rows, before any of the page's scripts runs
FIRST_ROWS_JS = """
(() => {
  const done = () => {
    const t = document.getElementById("runs-table");
    return t && t.tBodies[0] && t.tBodies[0].rows.length > 0 && t.dataset.rows !== undefined;
  };
  const obs = new MutationObserver(() => {
    if (window.__firstRows === undefined && done()) { window.__firstRows = performance.now(); obs.disconnect(); }
  });
  obs.observe(document, { childList: true, subtree: true, attributes: true });
})();
"""


def loadavg() -> list[str] | None:
    try:
        return Path("/proc/loadavg").read_text().split()[:3]
    except OSError:
        return None


# -- modelog -----------------------------------------------------------------------------------------------

class Api:
    """GET requests over one kept-alive HTTP/1.1 connection with the bearer token; JSON decoded."""

    def __init__(self, base: str, token: str) -> None:
        u = urllib.parse.urlsplit(base)
        self.host, self.port = u.hostname, u.port
        self.headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=120)

    def get(self, path: str, params: dict | None = None):
        url = path + ("?" + urllib.parse.urlencode(params) if params else "")
        for attempt in (0, 1):
            try:
                self.conn.request("GET", url, headers=self.headers)
                resp = self.conn.getresponse()
                body = resp.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
                if attempt:
                    raise
        if resp.status != 200:
            raise RuntimeError(f"GET {url}: {resp.status} {body[:500]!r}")
        return json.loads(body)

    def close(self) -> None:
        self.conn.close()


def load_modelog(client, ds: Dataset, deadline: float) -> dict:
    t0 = time.perf_counter()
    for r in range(ds.runs):
        if time.monotonic() > deadline:
            raise TimeoutError(f"modelog load over its time budget after {r:,} runs")
        run = client.start_run(experiment=EXPERIMENT, name=ds.name(r), tags=ds.tags(r), environment=False)
        run.log_params(ds.params(r))
        run.log_metrics(ds.metrics(r), step=0)
        run.end()
    runs_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    run = client.start_run(experiment=HISTORY_EXPERIMENT, name=HISTORY_RUN, environment=False)
    curve = ds.curve
    for i in range(ds.points):
        if i % 100_000 == 0 and time.monotonic() > deadline:
            raise TimeoutError(f"modelog history load over its time budget after {i:,} points")
        run.log_metric(HISTORY_KEY, curve(i), step=i)
    run.end()
    hist_s = time.perf_counter() - t1
    waited = client.wait_projected(timeout=max(60.0, deadline - time.monotonic()))
    total = time.perf_counter() - t0
    return {"history_run_id": run.id,
            "load": {"runs_publish_s": round(runs_s, 1), "history_publish_s": round(hist_s, 1),
                     "wait_projected_after_last_end_s": round(waited, 1), "total_until_projected_s": round(total, 1),
                     "runs_per_s_published": round(ds.runs / runs_s, 1),
                     "history_points_per_s_published": round(ds.points / hist_s) if ds.points else None}}


def first_render(base: str, login_url: str, loads: int, timeout: float = 60.0) -> dict:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        opts.add_argument(a)
    d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        d.set_page_load_timeout(timeout)
        d.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": FIRST_ROWS_JS})
        d.get(base + "/login")
        d.get(login_url)
        if "token=" in d.current_url:
            raise RuntimeError("login through /?token= did not take")
        url = base + "/experiments/" + urllib.parse.quote(EXPERIMENT)
        samples = []
        t_all = time.monotonic()
        for _ in range(loads):
            if time.monotonic() - t_all > 10 * timeout:
                break
            d.get(url)
            WebDriverWait(d, timeout, poll_frequency=0.02).until(
                lambda drv: drv.execute_script("return window.__firstRows !== undefined"))
            nav = d.execute_script(
                "const n = performance.getEntriesByType('navigation')[0];"
                "const rows = document.querySelectorAll('#runs-table tbody tr').length;"
                "return {first_rows_ms: window.__firstRows, response_end_ms: n.responseEnd,"
                " dom_content_loaded_ms: n.domContentLoadedEventEnd, load_ms: n.loadEventEnd, rows: rows,"
                " api_ms: (performance.getEntriesByType('resource').find(e => e.name.includes('/api/v1/runs'))"
                "          || {}).duration};")
            samples.append({k: (round(v, 1) if isinstance(v, float) else v) for k, v in nav.items()})
        firsts = [s["first_rows_ms"] for s in samples]
        return {"url": "/experiments/" + EXPERIMENT, "loads": len(samples), "median_ms": round(statistics.median(firsts), 1),
                "first_load_ms": firsts[0], "min_ms": min(firsts), "max_ms": max(firsts),
                "rows_shown": samples[-1]["rows"], "samples": samples,
                "measured": "navigation start -> runs table has its rows (performance.now() in a MutationObserver "
                            "installed before the page's scripts)"}
    finally:
        d.quit()


def modelog_side(args, ds: Dataset, workdir: Path) -> dict:
    import modelog
    from modelog import Client, Settings
    from modelog.local.broker import EmbeddedBroker
    from modelog.local.processes import start_processor_background, start_server_background, stop_processor, stop_server
    from modelog.wire.home import free_port
    from modelog.wire.home import admin_token_file, running_processor

    out: dict = {"system": "modelog", "storage": args.storage, "errors": []}
    home = workdir / "home"
    broker = EmbeddedBroker(home, storage=args.storage)
    settings = None
    api = None
    try:
        address = broker.start()
        st = broker._state()
        record_spawn(workdir, st["pid"], "tansu")
        if st.get("s3_pid"):
            record_spawn(workdir, st["s3_pid"], "localbucket")
        settings = Settings.load(env={}, home=home, bootstrap=address, session_timeout_ms=2000)
        record_spawn(workdir, start_processor_background(settings), "projector")
        client = Client(settings)
        client.create_experiment(EXPERIMENT)
        client.flush()
        loaded = load_modelog(client, ds, time.monotonic() + args.load_budget_s)
        out["load"] = loaded["load"]
        hid = loaded["history_run_id"]
        client.close()
        print(f"modelog: {ds.runs:,} runs + {ds.points:,} points projected in {out['load']['total_until_projected_s']} s",
              flush=True)

        info = start_server_background(settings, "127.0.0.1", free_port(), timeout=120)
        record_spawn(workdir, int(info["pid"]), "modelog serve")
        base = info["url"].rstrip("/")
        token = admin_token_file(settings).read_text().strip()
        api = Api(base, token)

        params = {"experiment": EXPERIMENT, "filter": FILTER_MODELOG, "order_by": ORDER_MODELOG, "limit": PAGE}
        r = timed(lambda: api.get("/api/v1/runs", params), args.repeat, args.budget_s)
        page = r.pop("result")["runs"]
        out["runs_table"] = {"api": "GET /api/v1/runs?" + urllib.parse.urlencode(params), **r, "rows": len(page),
                             "page_as_expected": [x["name"] for x in page] == ds.expected_page(),
                             "params_per_row": len(page[0]["params"]) if page else None}
        print(f"modelog GET /runs p50 {r['p50_ms']} ms", flush=True)
        path = f"/api/v1/runs/{hid}/metrics/{HISTORY_KEY}"
        r = timed(lambda: api.get(path, {"max_points": MAX_POINTS}), args.repeat, args.budget_s)
        buckets = r.pop("result")["buckets"]
        out["history_bucketed"] = {"api": f"GET {path.replace(hid, '{id}')}?max_points={MAX_POINTS}", **r,
                                   "rows": len(buckets), "points_covered": sum(b["points"] for b in buckets)}
        print(f"modelog GET /metrics?max_points p50 {r['p50_ms']} ms", flush=True)
        q = (f"SELECT step, value, timestamp FROM metrics WHERE run_id = '{hid}' AND key = '{HISTORY_KEY}' "
             "ORDER BY step")
        r = timed(lambda: modelog.sql_arrow(q, settings), args.repeat, args.budget_s)
        out["history_full_sql_arrow"] = {"api": "modelog.sql_arrow(SELECT step, value, timestamp FROM metrics ...) "
                                                "(every point, Arrow)", **r, "rows": r.pop("result").num_rows}
        body = json.dumps({"query": q}).encode()
        conn = api.conn
        conn.close()  # idle through the sql_arrow loop: uvicorn dropped it after its keep-alive timeout

        def via_http_sql():
            conn.request("POST", "/api/v1/sql", body=body,
                         headers={**api.headers, "Content-Type": "application/json"})
            resp = conn.getresponse()
            data = resp.read()
            if resp.status != 200:
                raise RuntimeError(f"POST /api/v1/sql: {resp.status} {data[:300]!r}")
            return data

        try:
            r = timed(via_http_sql, args.repeat, args.budget_s, warmup=1)
            raw = r.pop("result")
            out["history_full_http_sql"] = {"api": "POST /api/v1/sql (the same SELECT; every point, as the server "
                                                   "answers it)", **r, "bytes": len(raw)}
        except Exception as exc:  # reported, the rest stands
            out["errors"].append(f"POST /api/v1/sql: {type(exc).__name__}: {exc}")
        if args.render_loads:
            try:
                out["first_render"] = first_render(base, f"{base}/?token={token}", args.render_loads)
                print(f"modelog runs page first render: median {out['first_render']['median_ms']} ms", flush=True)
            except Exception:
                out["errors"].append(f"first render: {traceback.format_exc()}")
    except Exception:
        out["errors"].append(traceback.format_exc())
        raise
    finally:
        if api is not None:
            api.close()
        if settings is not None:
            try:
                stop_server(settings)
            except Exception as exc:
                out["errors"].append(f"stop server: {exc}")
            info = running_processor(settings)
            if info:
                stop_processor(settings, info)
        broker.stop()
    return out


# -- MLflow (in the peers' venv) --------------------------------------------------------------------------

def mlflow_side(args, workdir: Path) -> dict:
    from compare import ensure_peers_venv

    python = ensure_peers_venv()
    sub = workdir / "mlflow"
    sub.mkdir(parents=True, exist_ok=True)
    out, log = workdir / "mlflow.json", workdir / "mlflow.log"
    cmd = [str(python), str(HERE / "api_mlflow.py"), "--workdir", str(sub), "--out", str(out), "--runs",
           str(args.runs), "--points", str(args.points), "--repeat", str(args.repeat), "--budget-s", str(args.budget_s),
           "--load-budget-s", str(args.load_budget_s), "--load", args.mlflow_load]
    how = "through its server" if args.mlflow_load == "server" else "with MlflowClient on its sqlite file"
    print(f"mlflow: loading {args.runs:,} runs and {args.points:,} points {how} (log: {log})", flush=True)
    with log.open("wb") as fh:
        rc = run_bounded(cmd, fh, sub, args.load_budget_s + 6 * args.budget_s + 300)
    try:
        data = json.loads(out.read_text())
    except (OSError, ValueError):
        data = {"system": "mlflow", "errors": []}
    if rc != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        data.setdefault("errors", []).append(f"api_mlflow.py exited with {rc}; last lines of {log}:\n{tail}")
    return data


# -- report -----------------------------------------------------------------------------------------------

def _ratio(a: dict | None, b: dict | None, key: str) -> float | None:
    if not a or not b or not b.get(key):
        return None
    return round(a[key] / b[key], 1)


def report(res: dict) -> list[str]:
    m, f = res.get("modelog", {}), res.get("mlflow") or {}
    rows = [("runs table: first page of 100, filtered + ordered", m.get("runs_table"), f.get("runs_table")),
            (f"{res['dataset']['history_points']:,}-point history: modelog max_points={MAX_POINTS} vs MLflow all "
             "points", m.get("history_bucketed"), f.get("history")),
            ("history, every point: modelog.sql_arrow vs MLflow", m.get("history_full_sql_arrow"), f.get("history")),
            ("history, every point: POST /api/v1/sql vs MLflow", m.get("history_full_http_sql"), f.get("history"))]
    lines = ["| request | modelog p50 / p99 ms | MLflow p50 / p99 ms | MLflow ÷ modelog p50 / p99 | reps (modelog / MLflow) |",
             "|---|---:|---:|---:|---:|"]
    res["ratios"] = {}
    for label, a, b in rows:
        if not a:
            continue
        r50, r99 = _ratio(b, a, "p50_ms"), _ratio(b, a, "p99_ms")
        res["ratios"][label] = {"p50": r50, "p99": r99}
        lines.append(f"| {label} | {a['p50_ms']:.1f} / {a['p99_ms']:.1f} | "
                     + (f"{b['p50_ms']:.1f} / {b['p99_ms']:.1f}" if b else "–") + " | "
                     + (f"{r50}× / {r99}×" if r50 else "–") + f" | {a['reps']} / {b['reps'] if b else '–'} |")
    fr = m.get("first_render")
    if fr:
        lines.append(f"\nfirst render of /experiments/{EXPERIMENT} ({res['dataset']['runs']:,} runs, "
                     f"{fr['rows_shown']} rows shown): median {fr['median_ms']:.0f} ms over {fr['loads']} loads "
                     f"(first load {fr['first_load_ms']:.0f} ms, range {fr['min_ms']:.0f}–{fr['max_ms']:.0f})")
    goals = []
    rt = res["ratios"].get(rows[0][0])
    ht = res["ratios"].get(rows[1][0])
    if rt and rt["p50"]:
        goals.append(("runs table ≥ 10× faster (p50)", rt["p50"], rt["p50"] >= GOAL_SPEEDUP))
    if ht and ht["p50"]:
        goals.append(("bucketed history ≥ 10× faster (p50)", ht["p50"], ht["p50"] >= GOAL_SPEEDUP))
    if fr:
        goals.append(("first render ≤ 1 s (median)", f"{fr['median_ms']:.0f} ms", fr["median_ms"] <= GOAL_RENDER_MS))
    res["goals"] = [{"goal": g, "measured": v, "met": ok} for g, v, ok in goals]
    lines.append("")
    lines += [f"goal: {g}: {v} -> {'met' if ok else 'NOT met'}" for g, v, ok in goals]
    load = []
    for side, d in (("modelog", m.get("load")), ("mlflow runs", f.get("load_runs")), ("mlflow history", f.get("load_history"))):
        if d:
            load.append(f"{side}: {json.dumps(d)}")
    lines += ["", "load times:"] + [f"  {x}" for x in load]
    for side, d in (("modelog", m), ("mlflow", f)):
        for key in ("runs_table",):
            if d.get(key) and not d[key].get("page_as_expected"):
                lines.append(f"WARNING: {side}'s first page is not the expected one")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=50, help="timed calls per request after the warm-up")
    ap.add_argument("--budget-s", type=float, default=90.0, help="time bound of each request's timing loop (>= 3 calls)")
    ap.add_argument("--load-budget-s", type=float, default=3600.0, help="time bound of each side's loading")
    ap.add_argument("--render-loads", type=int, default=7, help="page loads for the first-render median (0: skip)")
    ap.add_argument("--storage", choices=("s3", "memory"), default="s3", help="the embedded broker's storage")
    ap.add_argument("--skip-mlflow", action="store_true", help="modelog only (no ratios)")
    ap.add_argument("--mlflow-load", choices=("server", "direct"), default="server",
                    help="load MLflow through its server, or straight into its sqlite store before the server "
                         "starts (quicker at 10,000 runs; the timed reads go through the server either way)")
    ap.add_argument("--quick", action="store_true", help="1,000 runs, 10^5 points, 10 repetitions, 30 s bounds")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "api.json")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--sql-cache", action="store_true",
                    help="let the processor keep SQL answers between commits (decision 0028); by default every "
                         "timed read runs its statement, as the figures before 2026-12-01 did")
    args = ap.parse_args()
    if args.quick:
        args.runs, args.points, args.repeat, args.budget_s, args.render_loads = 1000, 100_000, 10, 30.0, 3
    for k in [k for k in os.environ if k.startswith("MODELOG_")]:
        del os.environ[k]  # the stack is configured here only (children inherit the environment)
    if not args.sql_cache:
        os.environ["MODELOG_SQL_CACHE_MB"] = "0"  # the processor started below inherits it

    ds = Dataset(args.runs, args.points)
    res: dict = {"benchmark": "api", "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                 "machine": machine(), "nproc": os.cpu_count(), "dataset": ds.as_dict(),
                 "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                 "loadavg": {"before": loadavg()}}
    print(f"dataset: {ds.runs:,} runs x (5 params, 2 tags, 3 metrics) + one {ds.points:,}-point history; "
          f"{ds.expected_matches():,} runs match the filter; load average {' '.join(res['loadavg']['before'] or [])}",
          flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="modelog-bench-api-"))
    t0 = time.perf_counter()
    try:
        res["modelog"] = modelog_side(args, ds, workdir)
        res["loadavg"]["after_modelog"] = loadavg()
        if not args.skip_mlflow:
            res["mlflow"] = mlflow_side(args, workdir)
    finally:
        ended = cleanup_spawned(workdir)
        if ended:
            res["cleanup_ended"] = ended
        res["loadavg"]["after"] = loadavg()
        res["wall_s"] = round(time.perf_counter() - t0, 1)
        lines = report(res)
        lines.append(f"\nload average (1/5/15 min): before {res['loadavg']['before']}, after modelog "
                     f"{res['loadavg'].get('after_modelog')}, after {res['loadavg']['after']}; {os.cpu_count()} CPUs")
        print("\n" + "\n".join(lines))
        errors = [e for side in ("modelog", "mlflow") for e in (res.get(side) or {}).get("errors", [])]
        for e in errors:
            print(f"\nERROR: {e}")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_json(args.out, res)
        print(f"\nwrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out} "
              f"({res['wall_s']:.0f} s)")
        if args.keep:
            print(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Screenshots of every web UI page, from a fresh local stack filled with demo data.

    .venv/bin/python bench/ui_screenshots.py [--out docs/ui] [--keep-running]

Starts the embedded broker (in memory) and the processor under a temporary MODELOG_HOME, logs demo
data with the real SDK (runs with metrics, params, tags, artifacts and datasets; a model with
versions, a governed promotion, a pending request, deployments with a rollback; lineage; drift
windows and alerts), runs ``modelog serve --background``, and saves one PNG per page with Debian's
headless chromium. ``fill`` is also what the UI tests use (tests/ui/conftest.py imports it).
Also prints the page weight (gzip) of each page's own HTML, CSS and JavaScript.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import json
import math
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
XSS = "<img src=x onerror=alert(1)>"


def fill(client, *, runs: int = 8, steps: int = 2000, seed: int = 7) -> dict:
    """Demo data through the real SDK ``client``; returns the ids and names it made."""
    import pandas as pd

    rng = random.Random(seed)
    reg = client.registry
    tmp = Path(tempfile.mkdtemp(prefix="modelog-ui-"))
    train = pd.DataFrame({"income": [rng.gauss(50_000, 9_000) for _ in range(400)],
                          "age": [rng.randint(18, 80) for _ in range(400)],
                          "city": [rng.choice(["Lyon", "Paris", "Nantes"]) for _ in range(400)]})
    made: dict = {"runs": [], "experiment": "credit-risk"}
    for i in range(runs):
        model = ["gbt", "rf", "logreg"][i % 3]
        lr, depth = [0.3, 0.1, 0.03, 0.01][i % 4], 3 + i % 5
        tags = {"team": "risk", "note": XSS} if i == 0 else {"team": rng.choice(["risk", "growth"])}
        with client.start_run(experiment="credit-risk", name=f"{model}-d{depth}-lr{lr}", tags=tags) as run:
            run.log_params({"model": model, "lr": lr, "depth": depth, "features": 24 + i})
            ceiling = 0.7 + 0.25 * (1 - math.exp(-depth * lr * 3))
            for s in range(steps):
                loss = math.exp(-s * lr / 60) + rng.random() * 0.04 + (3.0 if s == steps // 3 + i else 0.0)
                run.log_metrics({"loss": loss, "val_loss": loss * 1.1 + 0.02,
                                 "auc": ceiling * (1 - math.exp(-s / 300)) + rng.random() * 0.01}, step=s)
            if i < 3:
                ds = run.log_dataset("applications", train, role="train")
                model_file = tmp / f"model-{i}.pkl"
                model_file.write_bytes(os.urandom(2048))
                run.log_artifact(model_file, "model.pkl")
                made.setdefault("datasets", []).append(ds.node)
        made["runs"].append({"run_id": run.id, "name": run.name})
    client.wait_projected(timeout=60)

    clean = client.register_dataset("applications-clean", train.dropna(), derived_from=[made["datasets"][0]],
                                    transform="dedupe and drop missing")
    made["clean_dataset"] = clean.node
    r0, r1, r2 = (made["runs"][k]["run_id"] for k in range(3))
    reg.set_policy([{"name": "needs-approval", "kind": "APPROVAL", "action": "PROMOTE", "stage": "production", "role": "approver"}])
    reg.grant("bob", "approver")
    versions = []
    for rid, semver in ((r0, "1.0.0"), (r1, "1.1.0"), (r2, "2.0.0")):
        versions.append(reg.register_model("credit-risk", run_id=rid, artifact="model.pkl", semver=semver).version)
    reg.promote("credit-risk", 1, "staging", wait=True)
    req = reg.promote("credit-risk", 1, "production", comment="quarterly refresh", wait=True, timeout=10)
    made["approved_request"] = req.request_id
    bob = client.__class__(dataclasses.replace(client.settings, principal="bob"))
    try:
        bob.registry.approve("credit-risk", req.request_id, "checked calibration")
    finally:
        bob.close()
    reg.wait_decision(req.request_id, timeout=30)
    reg.set_alias("credit-risk", "champion", 1, wait=True)
    pending = reg.promote("credit-risk", 2, "production", comment=f"better recall {XSS}", wait=True, timeout=5)
    made["pending_request"] = pending.request_id
    reg.record_deployment("credit-risk", 1, "prod", endpoint="https://models.example/credit-risk")
    reg.record_deployment("credit-risk", 2, "prod", endpoint="https://models.example/credit-risk", comment="canary ok")
    client.wait_projected(timeout=30)
    reg.rollback("credit-risk", "prod", comment="latency regression")
    reg.record_deployment("credit-risk", 1, "staging")
    client.record_lineage(f"model:credit-risk/1", "deployed", "deployment:credit-risk/prod")

    # drift windows and alerts, as the drift processor publishes them
    t0 = int(time.time() * 1e6) - 12 * 3600 * 10**6
    for w in range(12):
        cols = []
        for c, method, thr in (("income", "ks", 0.05), ("age", "ks", 0.05), ("city", "chisquare", 0.05),
                               ("tenure", "psi", 0.1), ("score", "wasserstein", 0.1)):
            drifting = w >= 7 and c in ("income", "city", "score")
            score = (rng.uniform(0.0001, 0.02) if drifting else rng.uniform(0.1, 0.9)) if method in ("ks", "chisquare") \
                else (rng.uniform(0.15, 0.4) if drifting else rng.uniform(0.0, 0.06))
            drift = score < thr if method in ("ks", "chisquare") else score > thr
            cols.append({"column": c, "kind": "cat" if c == "city" else "num", "role": "FEATURE", "method": method,
                         "score": score, "threshold": thr, "drift": drift, "n_ref": 400, "n_cur": 500,
                         "missing_ref": 0.0, "missing_cur": 0.0, "ks_stat": None, "ks_p": None, "psi": None,
                         "js": None, "wasserstein_norm": None, "chi2_p": None, "unseen": 0})
        share = sum(c["drift"] for c in cols) / len(cols)
        client.publish("DriftMeasured", "monitor", "monitor:credit-risk/prod", model="credit-risk", deployment="prod",
                       version=1, window=w, window_start=t0 + w * 3600 * 10**6, window_end=t0 + (w + 1) * 3600 * 10**6,
                       rows=500, dropped=0, drift_share=share, dataset_drift=share >= 0.5, columns=cols)
    publish_alert(client, "credit-risk/prod/dataset_drift/3", "credit-risk", "RAISED", window=3, value=0.6)
    publish_alert(client, "credit-risk/prod/dataset_drift/3", "credit-risk", "RESOLVED", window=5, value=0.2)
    publish_alert(client, "credit-risk/prod/dataset_drift/8", "credit-risk", "RAISED", window=8, value=0.6)
    client.wait_projected(timeout=60)
    return made


def publish_alert(client, alert_id: str, model: str, state: str = "RAISED", deployment: str = "prod",
                  window: int = 0, value: float = 0.6, message: str | None = None) -> None:
    client.publish("AlertChanged", "monitor", f"monitor:{model}/{deployment}", alert_id=alert_id, model=model,
                   deployment=deployment, rule="dataset_drift", state=state, severity="warning", window=window,
                   value=value, threshold=0.5,
                   message=message or f"{model}/{deployment}: {value:.0%} of features drifted in window {window}")


def browser(width: int = 1400, height: int = 1000):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={width},{height}"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)


def settle(d, timeout: float = 20.0) -> None:
    """Wait until every chart on the page has fetched and drawn its data (``data-state=ready``), then a
    moment for the drawing to reach the screen."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and d.execute_script(
            "return document.querySelectorAll('figure.chart:not([data-state=ready])').length"):
        time.sleep(0.2)
    time.sleep(1.0)


def page_weight(base: str, cookie: str, path: str) -> dict:
    """Bytes (raw, gzip) of a page's HTML plus the CSS and scripts it links from /static."""
    def get(url: str) -> bytes:
        req = urllib.request.Request(url, headers={"Cookie": cookie})
        with urllib.request.urlopen(req) as r:
            return r.read()
    html = get(base + path)
    assets = re.findall(rb'(?:src|href)="(/static/[^"]+)"', html)
    raw = gz = 0
    for body in [html] + [get(base + a.decode()) for a in dict.fromkeys(assets)]:
        raw += len(body)
        gz += len(gzip.compress(body, 9))
    return {"path": path, "files": 1 + len(set(assets)), "bytes": raw, "gzip": gz}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "ui"))
    ap.add_argument("--keep-running", action="store_true")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from modelog import Client, Settings
    from modelog.local.broker import running_broker
    from modelog.wire.home import free_port

    home = Path(tempfile.mkdtemp(prefix="modelog-ui-home-"))
    with running_broker(home / "broker-home", storage="memory") as bootstrap:
        env = {"MODELOG_HOME": str(home), "MODELOG_KAFKA_BOOTSTRAP": bootstrap, "MODELOG_LINGER_MS": "20",
               "MODELOG_TOPIC_PREFIX": f"ui{uuid.uuid4().hex[:6]}.", "MODELOG_SESSION_TIMEOUT_MS": "2000",
               "MODELOG_PRINCIPAL": "alice", "MODELOG_ARTIFACT_URI": (home / "artifacts").as_uri()}
        full = {**{k: v for k, v in os.environ.items() if not k.startswith("MODELOG_")}, **env}
        cli = [sys.executable, "-m", "modelog"]
        subprocess.run(cli + ["process", "--background"], env=full, check=True, capture_output=True)
        try:
            client = Client(Settings.load(env=env))
            t = time.monotonic()
            made = fill(client)
            print(f"demo data logged and projected in {time.monotonic() - t:.1f} s")
            port = free_port()
            served = subprocess.run(cli + ["serve", "--background", "--port", str(port)], env=full, check=True,
                                    capture_output=True, text=True).stdout
            login = re.search(r"open: (\S+)", served).group(1)
            base = login.split("/?")[0]
            run_id = made["runs"][0]["run_id"]
            pages = [
                ("experiments", "/"),
                ("runs", "/experiments/credit-risk"),
                ("run", f"/runs/{run_id}"),
                ("compare", "/compare?" + "&".join(f"run={r['run_id']}" for r in made["runs"][:4])),
                ("models", "/models"),
                ("model", "/models/credit-risk"),
                ("lineage", "/lineage?node=" + urllib.parse.quote("deployment:credit-risk/prod") + "&depth=4"),
                ("monitoring", "/monitoring?model=credit-risk&deployment=prod"),
                ("audit", "/audit"),
            ]
            d = browser()
            try:
                d.get(login)
                cookie = "; ".join(f"{c['name']}={c['value']}" for c in d.get_cookies())
                for name, path in pages:
                    d.get(base + path)
                    settle(d)
                    height = d.execute_script("return document.documentElement.scrollHeight")
                    d.set_window_size(1400, min(max(900, height + 40), 1600))
                    settle(d)  # the charts draw again at the new size
                    d.save_screenshot(str(out / f"{name}.png"))
                    d.set_window_size(1400, 1000)
                    errors = [e["message"] for e in d.get_log("browser") if e["level"] == "SEVERE"
                              and "favicon" not in e["message"]]
                    print(f"{name:12} {path[:60]:60} {'errors: ' + str(errors) if errors else 'ok'}")
                weights = [page_weight(base, cookie, p) for _, p in pages]
            finally:
                d.quit()
            print(json.dumps(weights, indent=1))
            if args.keep_running:
                print(f"serving at {login}; Ctrl-C to stop")
                while True:
                    time.sleep(3600)
        finally:
            subprocess.run(cli + ["serve", "--stop"], env=full, capture_output=True)
            subprocess.run(cli + ["process", "--stop"], env=full, capture_output=True)


if __name__ == "__main__":
    main()

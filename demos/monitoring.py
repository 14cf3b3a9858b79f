"""The monitoring demo: a model in production drifts, and the alert reaches every consumer.

Starts the embedded broker, the projector and the drift processor; trains a classifier on
scikit-learn's bundled breast-cancer data, registers and deploys it, logs its reference profile;
starts a local webhook receiver and the webhook forwarder; then a simulated service logs
predictions (and, later, labels) -- calm at first, then with injected drift. It prints what
`modelog alerts tail` shows, what the webhook received, the Prometheus lines, and the drift
and performance views.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import click

from modelog.sdk.client import Client
from modelog.wire.settings import Settings

MODEL = "breast-cancer-gbt"
DEPLOYMENT = "prod"
WINDOW = 100


class _Receiver:
    """A webhook receiver on 127.0.0.1 that keeps what it was sent."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                return None

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.received.append((self.headers.get("Idempotency-Key", ""), json.loads(body or b"{}")))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/modelog"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(0.2)
    raise click.ClickException(f"timed out waiting for {what}")


def run_monitoring_demo(settings: Settings, keep_running: bool = False) -> None:
    try:
        import numpy as np
        from sklearn.datasets import load_breast_cancer
        from sklearn.ensemble import GradientBoostingClassifier
        from sklearn.model_selection import train_test_split
    except ImportError as exc:
        raise click.ClickException("the demo trains with scikit-learn: pip install 'modelog[demo]'") from exc
    import urllib.request

    from modelog.cli import output as _output
    from modelog.local.broker import EmbeddedBroker
    from modelog.local.processes import start_processor_background, stop_processor
    from modelog.local.processes import start_drift_background, stop_drift
    from modelog.sdk.monitoring import Monitor, configure_monitor, log_reference
    from modelog.consumers.query import sql_arrow
    from modelog.wire.home import running_processor

    started: list[str] = []
    broker = EmbeddedBroker(settings.home)
    if not settings.bootstrap:
        if broker.address() is None:
            started.append("broker")
        settings = settings.replace(bootstrap=broker.start())
    if running_processor(settings) is None:
        click.echo("starting the projector and the drift processor ...", err=True)
        start_processor_background(settings)
        started.append("processor")
    start_drift_background(settings)
    started.append("drift")
    receiver = _Receiver()
    env = dict(os.environ, MODELOG_HOME=str(settings.home), MODELOG_KAFKA_BOOTSTRAP=settings.bootstrap)
    forwarder = subprocess.Popen([sys.executable, "-m", "modelog", "alerts", "webhook", receiver.url,
                                  "--model", MODEL], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    client = Client(settings)
    try:
        data = load_breast_cancer(as_frame=True)
        X, y = data.data, data.target
        X_tr, X_live, y_tr, y_live = train_test_split(X, y, test_size=0.3, random_state=7, stratify=y)
        click.echo("training the model and registering it ...", err=True)
        with client.start_run(experiment="monitoring-demo", name="gbt") as run:
            model = GradientBoostingClassifier(n_estimators=100, max_depth=2, random_state=7).fit(X_tr, y_tr)
            run.log_params({"n_estimators": 100, "max_depth": 2})
            ds = run.log_dataset("breast-cancer-train", X_tr.assign(target=y_tr), role="train")
        mv = run.register_model(MODEL, description="monitoring demo")
        client.registry.record_deployment(MODEL, mv.version, DEPLOYMENT, endpoint="http://127.0.0.1/predict")
        reference = X_tr.assign(prediction=[str(c) for c in model.predict(X_tr)])  # the class, as served
        log_reference(MODEL, mv.version, reference, prediction="prediction", client=client)
        configure_monitor(MODEL, window_rows=WINDOW, raise_after=1, resolve_after=2, client=client)
        client.flush()
        time.sleep(1.0)  # let the drift processor read the reference before the first predictions
        click.echo(f"model {MODEL} v{mv.version} deployed to {DEPLOYMENT}; trained on {ds.node}", err=True)

        rng = np.random.default_rng(11)
        monitor = Monitor(MODEL, DEPLOYMENT, version=mv.version, client=client, batch_rows=50)
        drifted = ["mean radius", "mean perimeter", "mean area", "worst radius", "worst perimeter", "worst area",
                   "mean texture", "worst texture", "mean concavity", "worst concavity", "mean compactness",
                   "worst compactness", "mean concave points", "worst concave points", "area error",
                   "radius error", "perimeter error"]
        for window in range(6):
            rows = X_live.sample(WINDOW, replace=True, random_state=int(rng.integers(1 << 31)))
            truth = y_live.loc[rows.index]
            if window >= 3:  # a new scanner calibration: most size/texture features inflate
                rows = rows.copy()
                rows[drifted] = rows[drifted] * rng.normal(1.6, 0.05, size=(WINDOW, len(drifted)))
            scores = model.predict_proba(rows)[:, 1]
            ids = monitor.log_frame(rows, predictions=[str(int(s > 0.5)) for s in scores], scores=scores)
            monitor.log_labels(ids, [str(int(t)) for t in truth])
            click.echo(f"  served window {window}: {WINDOW} predictions"
                       + (" (drift injected)" if window >= 3 else ""), err=True)
        monitor.close()

        _wait(lambda: sql_arrow("SELECT count(*) AS n FROM alerts WHERE state = 'RAISED'",
                                settings).to_pylist()[0]["n"], 90, "the alert in the views")
        tail = subprocess.run([sys.executable, "-m", "modelog", "alerts", "tail", "--from-beginning", "--max", "1",
                               "--model", MODEL], env=env, capture_output=True, text=True, timeout=60)
        click.echo("\n$ modelog alerts tail --from-beginning --max 1")
        click.echo(tail.stdout.rstrip() or tail.stderr.rstrip())
        _wait(lambda: receiver.received, 60, "the webhook delivery")
        key, body = receiver.received[0]
        click.echo(f"\nwebhook {receiver.url} received: Idempotency-Key={key}  "
                   f"state={body.get('state')}  rule={body.get('rule')}  message={body.get('message')}")
        info = running_processor(settings) or {}
        if info.get("metrics_url"):
            with urllib.request.urlopen(info["metrics_url"], timeout=10) as resp:
                lines = [ln for ln in resp.read().decode().splitlines()
                         if ln.startswith(("modelog_alert_open", "modelog_dataset_drift_share"))]
            click.echo(f"\n$ curl {info['metrics_url']}  (excerpt)")
            click.echo("\n".join(lines))
        click.echo("\nDrift per window (modelog sql):")
        click.echo(_output.table(sql_arrow(
            "SELECT \"window\", rows, round(drift_share, 2) AS drift_share, dataset_drift FROM drift_windows "
            f"WHERE model = '{MODEL}' ORDER BY \"window\"", settings)))
        click.echo("\nMost drifted features in the last window:")
        click.echo(_output.table(sql_arrow(
            "SELECT \"column\", method, round(score, 4) AS score, threshold, drift FROM drift_metrics "
            f"WHERE model = '{MODEL}' AND \"window\" = (SELECT max(\"window\") FROM drift_windows "
            f"WHERE model = '{MODEL}') ORDER BY drift DESC, "
            "CASE WHEN method IN ('ks', 'chisquare', 'z') THEN score ELSE -score END LIMIT 5", settings)))
        click.echo("\nPerformance per window (labels joined by request id):")
        click.echo(_output.table(sql_arrow(
            "SELECT \"window\", labelled, round(accuracy, 3) AS accuracy, round(f1_macro, 3) AS f1_macro, "
            f"round(auc, 3) AS auc FROM performance WHERE model = '{MODEL}' ORDER BY \"window\"", settings)))
    finally:
        client.close()
        forwarder.terminate()
        try:
            forwarder.wait(15)
        except subprocess.TimeoutExpired:
            forwarder.kill()
        receiver.close()
        if not keep_running:
            stop_drift(settings)
            info = running_processor(settings)
            if "processor" in started and info:
                stop_processor(settings, info)
            if "broker" in started:
                broker.stop()
            click.echo("\nstopped what the demo started (use --keep-running to keep it); the log and views stay in "
                       f"{settings.home}", err=True)

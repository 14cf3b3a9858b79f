"""The main job: broker + processor + real training runs + a SQL leaderboard.

Trains gradient-boosted classifiers on scikit-learn's bundled breast-cancer
data set (it ships inside scikit-learn: no download) over a small
hyperparameter grid, logging params, per-iteration metrics, the model file and
tags through the SDK; then waits until the views hold everything and prints
the leaderboard with SQL.
"""

from __future__ import annotations

import itertools
import pickle
import time

import click

from modelog.sdk.client import Client
from modelog.wire.settings import Settings

LEADERBOARD = """
SELECT r.name AS run, p_lr.value AS learning_rate, p_depth.value AS max_depth, p_n.value AS n_estimators,
       round(auc.value, 4) AS val_auc, round(acc.value, 4) AS val_accuracy, round(loss.value, 4) AS val_logloss,
       auc.points AS steps, r.status, round(r.duration_s, 2) AS seconds
FROM runs r
JOIN latest_metrics auc ON auc.run_id = r.run_id AND auc.key = 'val_auc'
JOIN latest_metrics acc ON acc.run_id = r.run_id AND acc.key = 'val_accuracy'
JOIN latest_metrics loss ON loss.run_id = r.run_id AND loss.key = 'val_logloss'
JOIN params p_lr ON p_lr.run_id = r.run_id AND p_lr.key = 'learning_rate'
JOIN params p_depth ON p_depth.run_id = r.run_id AND p_depth.key = 'max_depth'
JOIN params p_n ON p_n.run_id = r.run_id AND p_n.key = 'n_estimators'
WHERE r.experiment = '{experiment}'
ORDER BY val_auc DESC, val_logloss ASC
"""


def train(client: Client, experiment: str, runs: int, artifacts_dir) -> list[str]:
    try:
        from sklearn.datasets import load_breast_cancer
        from sklearn.ensemble import GradientBoostingClassifier
        from sklearn.metrics import accuracy_score, log_loss, roc_auc_score
        from sklearn.model_selection import train_test_split
    except ImportError as exc:
        raise click.ClickException("the demo trains with scikit-learn: pip install 'modelog[demo]'") from exc

    X, y = load_breast_cancer(return_X_y=True)
    X_tr, X_val, y_tr, y_val = train_test_split(X, y, test_size=0.3, random_state=7, stratify=y)
    grid = list(itertools.product([0.05, 0.1, 0.3], [2, 3], [150]))[:runs]
    run_ids = []
    for i, (lr, depth, n) in enumerate(grid):
        with client.start_run(experiment=experiment, name=f"gbt-lr{lr}-d{depth}", tags={"model": "gbt"}) as run:
            run.log_params({"learning_rate": lr, "max_depth": depth, "n_estimators": n, "subsample": 0.8,
                            "dataset": "sklearn.breast_cancer", "random_state": 7})
            model = GradientBoostingClassifier(learning_rate=lr, max_depth=depth, n_estimators=n, subsample=0.8,
                                               random_state=7).fit(X_tr, y_tr)
            for step, (p_tr, p_val) in enumerate(zip(model.staged_predict_proba(X_tr),
                                                     model.staged_predict_proba(X_val))):
                run.log_metrics({
                    "train_logloss": log_loss(y_tr, p_tr[:, 1], labels=[0, 1]),
                    "val_logloss": log_loss(y_val, p_val[:, 1], labels=[0, 1]),
                    "val_auc": roc_auc_score(y_val, p_val[:, 1]),
                    "val_accuracy": accuracy_score(y_val, p_val[:, 1] > 0.5),
                }, step=step)
            path = artifacts_dir / f"{run.id}-model.pkl"
            path.write_bytes(pickle.dumps(model))
            run.log_artifact(path, "model.pkl")
            run.set_tags({"candidate": "yes" if roc_auc_score(y_val, model.predict_proba(X_val)[:, 1]) > 0.99 else "no"})
            run_ids.append(run.id)
        click.echo(f"  run {i + 1}/{len(grid)}: {run.name} ({run.id}) {run.status}", err=True)
    return run_ids


def run_demo(settings: Settings, runs: int = 6, keep_running: bool = False, experiment: str = "breast-cancer-gbt") -> None:
    from modelog.cli import output as _output
    from modelog.local.broker import EmbeddedBroker
    from modelog.local.processes import start_processor_background, stop_processor
    from modelog.consumers.query import sql_arrow
    from modelog.wire.home import running_processor

    started_broker = started_processor = False
    broker = EmbeddedBroker(settings.home)
    if not settings.bootstrap:
        if broker.address() is None:
            click.echo("starting the embedded broker (tansu, log on disk under MODELOG_HOME) ...", err=True)
            started_broker = True
        settings = settings.replace(bootstrap=broker.start())
    click.echo(f"broker: {settings.bootstrap}", err=True)
    if running_processor(settings) is None:
        click.echo("starting the processor (faust projector -> DuckDB) ...", err=True)
        t = time.monotonic()
        start_processor_background(settings)
        started_processor = True
        click.echo(f"processor ready in {time.monotonic() - t:.1f}s", err=True)
    try:
        client = Client(settings)
        artifacts = settings.home / "artifacts"
        artifacts.mkdir(parents=True, exist_ok=True)
        click.echo(f"training {runs} runs (scikit-learn GradientBoostingClassifier, breast-cancer data) ...", err=True)
        t = time.monotonic()
        train(client, experiment, runs, artifacts)
        waited = client.wait_projected(timeout=60)
        click.echo(f"trained in {time.monotonic() - t:.1f}s; views caught up {waited * 1000:.0f} ms after the last flush",
                   err=True)
        click.echo("")
        click.echo(f"Leaderboard (modelog sql, experiment {experiment!r}):")
        click.echo(_output.table(sql_arrow(LEADERBOARD.format(experiment=experiment), settings)))
        counts = sql_arrow("SELECT (SELECT count(*) FROM runs) AS runs, (SELECT count(*) FROM metrics) AS metric_points, "
                           "(SELECT count(*) FROM audit_log) AS events", settings).to_pylist()[0]
        click.echo(f"\nviews hold {counts['runs']} runs, {counts['metric_points']} metric points, {counts['events']} events "
                   f"in {settings.views_path}")
        client.close()
    finally:
        if not keep_running:
            info = running_processor(settings)
            if started_processor and info:
                stop_processor(settings, info)
            if started_broker:
                broker.stop()
            if started_processor or started_broker:
                click.echo("stopped what the demo started (use --keep-running to keep it); the log and views stay "
                           f"in {settings.home}: try  modelog sql \"SELECT * FROM runs\"", err=True)

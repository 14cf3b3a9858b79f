"""``modelog import tensorboard``: history from other tools becomes modelog events (integrations/)."""

from __future__ import annotations

from pathlib import Path

import click


@click.group("import")
def import_cmd() -> None:
    """Import history from other tools (idempotent: what was imported before is skipped)."""


@import_cmd.command("tensorboard")
@click.argument("logdir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--experiment", default=None, help="Experiment of the imported runs (default: LOGDIR's name).")
@click.pass_context
def import_tensorboard(ctx: click.Context, logdir: Path, experiment: str | None) -> None:
    """Each directory of LOGDIR with event files becomes a run; each scalar a metric point with its step and
    wall time, each hyperparameter of an HParams session a param. Runs imported before are skipped; a
    summary of what was imported and skipped follows."""
    from modelog.consumers.query import sql_arrow
    from modelog.integrations.tensorboard import import_logdir, run_dirs
    from modelog.sdk.client import Client
    from modelog.wire.errors import QueryError

    settings = ctx.obj["settings"]
    dirs = run_dirs(logdir)
    if not dirs:
        raise click.ClickException(f"no TensorBoard event files (events.out.tfevents.*) under {logdir}")
    try:
        existing = {r["run_id"] for r in sql_arrow("SELECT run_id FROM runs", settings).to_pylist()}
    except QueryError as exc:
        raise click.ClickException(f"cannot read the views to skip runs imported before ({exc}); "
                                   "start the processor (modelog process)") from exc
    client = Client(settings, program="modelog-import")
    try:
        with click.progressbar(length=len(dirs), label="importing runs", file=click.get_text_stream("stderr")) as bar:
            summary = import_logdir(client, logdir, experiment, existing, progress=bar.update)
        client.flush()
    finally:
        client.close()
    click.echo(f"imported {len(summary.runs)} run(s), {summary.points:,} metric point(s), "
               f"{summary.params:,} hparam(s); "
               f"skipped {len(summary.skipped)} run(s); {summary.other_values:,} non-scalar value(s) not imported")
    for name, why in summary.skipped:
        click.echo(f"  skipped {name}: {why}")
    for warning in summary.warnings:
        click.echo(f"  warning: {warning}", err=True)


@import_cmd.command("mlflow")
@click.option("--tracking-uri", required=True,
              help="An MLflow server (http://host:port; MLFLOW_TRACKING_TOKEN or MLFLOW_TRACKING_USERNAME/"
                   "PASSWORD authenticate) or an mlruns directory (a path or file://).")
@click.option("--experiment", "experiments", multiple=True,
              help="Import only this MLflow experiment (repeatable; default: every experiment).")
@click.pass_context
def import_mlflow(ctx: click.Context, tracking_uri: str, experiments: tuple[str, ...]) -> None:
    """Every experiment, run (params, tags, metric histories, status, times, user), artifact and registered
    model version becomes modelog events with its original times and user, marked as imported. Artifacts'
    bytes go to the artifact store. Runs and versions imported before are skipped; a summary follows."""
    import os

    from modelog.consumers.query import sql_arrow
    from modelog.integrations.mlflow_import import artifact_store, existing_versions, import_mlflow as run_import
    from modelog.integrations.mlflow_source import SourceError, open_source
    from modelog.sdk.client import Client
    from modelog.wire.errors import QueryError

    settings = ctx.obj["settings"]
    try:
        source = open_source(tracking_uri, dict(os.environ))
    except SourceError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        runs = {r["run_id"] for r in sql_arrow("SELECT run_id FROM runs", settings).to_pylist()}
        versions = existing_versions(sql_arrow("SELECT model, tags FROM registered_versions", settings).to_pylist())
    except QueryError as exc:
        raise click.ClickException(f"cannot read the views to skip what was imported before ({exc}); "
                                   "start the processor (modelog process)") from exc
    client = Client(settings, program="modelog-import-mlflow")
    store, why = artifact_store(client)
    err = click.get_text_stream("stderr")
    bars = []

    def plan(n: int) -> None:
        bars.append(click.progressbar(length=n, label="importing runs and model versions", file=err))
        bars[0].__enter__()

    try:
        summary = run_import(client, source, experiments=list(experiments), existing_runs=runs,
                             versions_before=versions, store=store, plan=plan,
                             progress=lambda n: bars[0].update(n) if bars else None)
    except SourceError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        if bars:
            bars[0].__exit__(None, None, None)
        client.close()
    click.echo(f"imported {len(summary.experiments)} experiment(s), {len(summary.runs)} run(s), "
               f"{summary.params:,} param(s), {summary.points:,} metric point(s), {summary.artifacts} artifact(s) "
               f"({summary.stored_bytes:,} bytes stored), {len(summary.versions)} model version(s); "
               f"skipped {len(summary.skipped)}")
    if store is None:
        click.echo(f"  no artifact store ({why}): artifacts recorded as references only", err=True)
    for what, reason in summary.skipped:
        click.echo(f"  skipped {what}: {reason}")
    for warning in summary.warnings:
        click.echo(f"  warning: {warning}", err=True)

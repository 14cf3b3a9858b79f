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
    wall time. Runs imported before are skipped; a summary of what was imported and skipped follows."""
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
    click.echo(f"imported {len(summary.runs)} run(s), {summary.points:,} metric point(s); "
               f"skipped {len(summary.skipped)} run(s); {summary.other_values:,} non-scalar value(s) not imported")
    for name, why in summary.skipped:
        click.echo(f"  skipped {name}: {why}")
    for warning in summary.warnings:
        click.echo(f"  warning: {warning}", err=True)

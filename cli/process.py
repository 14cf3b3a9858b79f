"""``modelog process`` (the projector, foreground or background, N workers) and ``modelog rebuild``."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import click

from modelog.cli.daemon import control
from modelog.local.processes import start_processor_background, stop_processor
from modelog.wire.home import running_processor


@click.command("process")
@click.option("--background", "-d", is_flag=True, help="Run detached; return once it is ready.")
@click.option("--stop", is_flag=True, help="Stop the background processor.")
@click.option("--status", is_flag=True, help="Show whether a processor runs, and its SQL endpoint.")
@click.option("--loglevel", default="warning", show_default=True)
@click.option("--timeout", default=120.0, show_default=True, help="Seconds --background waits for readiness.")
@click.option("--workers", "-w", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Projector processes in one consumer group. More than 1 projects into shards published to "
                   "a lake (MODELOG_LAKE, default $MODELOG_HOME/lake) that the views read.")
@click.option("--worker", "as_worker", is_flag=True, hidden=True, help="Run as one worker of --workers N.")
@click.pass_context
def process(ctx: click.Context, background: bool, stop: bool, status: bool, loglevel: str, timeout: float,
            workers: int, as_worker: bool) -> None:
    """Run the projector: Kafka events -> DuckDB views (and the SQL endpoint)."""
    settings = ctx.obj["settings"]
    if workers > 1 and settings.lake_path is None:
        settings = dataclasses.replace(settings, lake_path=settings.home / "lake")
    if as_worker:
        from modelog.processors.app import run_processor
        from modelog.processors.workers import mark_worker_ready

        if settings.lake_path is None:
            raise click.ClickException("--worker needs MODELOG_LAKE")
        run_processor(settings, loglevel=loglevel, publish_info=False, on_joined=lambda: mark_worker_ready(settings))
        return
    info = running_processor(settings)

    def stopper() -> bool:
        if info:
            stop_processor(settings, info)
        return bool(info)

    if control(ctx, info, status=status, stop=stop, stopper=stopper,
               describe=lambda i: f"pid={i['pid']}  ready={i.get('ready')}  sql={i['sql_url']}  db={i['db']}"
               + (f"  metrics={i['metrics_url']}" if i.get("metrics_url") else ""),
               already="a processor already runs for {db} (pid {pid})"):
        return
    if background:
        pid = start_processor_background(settings, loglevel=loglevel, timeout=timeout, workers=workers)
        click.echo(f"processor running in the background (pid {pid}); log: {settings.home / 'processor.log'}")
        return
    if workers > 1:
        from modelog.processors.workers import run_workers

        run_workers(settings, workers, loglevel=loglevel)
        return
    from modelog.processors.app import run_processor

    run_processor(settings, loglevel=loglevel)


@click.command("rebuild")
@click.option("--output", type=click.Path(path_type=Path), default=None,
              help="Write the rebuilt views here instead of replacing the live file.")
@click.pass_context
def rebuild_cmd(ctx: click.Context, output: Path | None) -> None:
    """Replay the log from the beginning into fresh views (progress on stderr)."""
    from modelog.processors.rebuild import rebuild

    settings = ctx.obj["settings"]
    if output is None and running_processor(settings):
        raise click.ClickException("a processor is using the views file: stop it first "
                                   "(modelog process --stop) or pass --output PATH")
    started = time.monotonic()
    path, n = rebuild(settings, output=output)
    click.echo(f"rebuilt {path} from {n} records in {time.monotonic() - started:.1f}s")

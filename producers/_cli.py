"""The ``modelog`` command."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import click

from ._config import Settings
from ._errors import ModelogError


def _settings(ctx: click.Context) -> Settings:
    return ctx.obj["settings"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--home", type=click.Path(path_type=Path), default=None, help="Data directory (MODELOG_HOME).")
@click.version_option(package_name="modelog")
@click.pass_context
def cli(ctx: click.Context, home: Path | None) -> None:
    """modelog: event-sourced ML metadata on Kafka, queried with SQL."""
    ctx.ensure_object(dict)
    ctx.obj["settings"] = Settings.load(home=home)


# -- broker ------------------------------------------------------------------------

@cli.group()
def broker() -> None:
    """The embedded broker (tansu) under MODELOG_HOME."""


@broker.command("start")
@click.option("--storage", type=click.Choice(["s3", "memory"]), default="s3", show_default=True,
              help="s3 keeps the log on disk across restarts; memory loses it.")
@click.option("--port", type=int, default=None, help="Listen port (default: the last one, else a free one).")
@click.pass_context
def broker_start(ctx: click.Context, storage: str, port: int | None) -> None:
    """Start the embedded broker (idempotent) and print its bootstrap address."""
    from ._broker import EmbeddedBroker
    from ._topics import ensure_topics

    address = EmbeddedBroker(_settings(ctx).home, storage=storage).start(port=port)
    # create the topics now: concurrent first writers would otherwise race on creating them (issue 10)
    ensure_topics(_settings(ctx).replace(bootstrap=address))
    click.echo(address)


@broker.command("stop")
@click.pass_context
def broker_stop(ctx: click.Context) -> None:
    """Stop the embedded broker (its log stays on disk with s3 storage)."""
    from ._broker import EmbeddedBroker

    stopped = EmbeddedBroker(_settings(ctx).home).stop()
    click.echo("stopped" if stopped else "not running")


@broker.command("status")
@click.pass_context
def broker_status(ctx: click.Context) -> None:
    """Print whether the embedded broker runs, and its bootstrap address."""
    from ._broker import EmbeddedBroker

    st = EmbeddedBroker(_settings(ctx).home).status()
    if st["running"]:
        click.echo(f"running  bootstrap={st['address']}  storage={st['storage']}  pid={st['pid']}  log={st['log']}")
    else:
        click.echo("not running")
        ctx.exit(1)


# -- processor -----------------------------------------------------------------------

@cli.command("process")
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
    from ._query import running_processor

    settings = _settings(ctx)
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
    if status:
        if info:
            click.echo(f"running  pid={info['pid']}  ready={info.get('ready')}  sql={info['sql_url']}  db={info['db']}"
                       + (f"  metrics={info['metrics_url']}" if info.get("metrics_url") else ""))
        else:
            click.echo("not running")
            ctx.exit(1)
        return
    if stop:
        if not info:
            click.echo("not running")
            return
        stop_processor(settings, info)
        click.echo("stopped")
        return
    if info:
        raise click.ClickException(f"a processor already runs for {info['db']} (pid {info['pid']})")
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


def start_background(settings: Settings, command: str, ready: Callable[[int], bool], what: str, log_name: str,
                     loglevel: str = "warning", timeout: float = 120.0, args: tuple[str, ...] = ()) -> int:
    """Run ``modelog COMMAND`` detached, logging to ``$MODELOG_HOME/<log_name>``; return its pid once
    ``ready(pid)`` says so. Raises ModelogError if it exits or is not ready within ``timeout``."""
    settings.home.mkdir(parents=True, exist_ok=True)
    log_path = settings.home / log_name
    log = open(log_path, "ab")
    env = dict(os.environ, MODELOG_HOME=str(settings.home))
    if settings.db_path:
        env["MODELOG_DB"] = str(settings.db_path)
    if settings.lake_path:
        env["MODELOG_LAKE"] = str(settings.lake_path)
    if settings.bootstrap:
        env["MODELOG_KAFKA_BOOTSTRAP"] = settings.bootstrap
    proc = subprocess.Popen([sys.executable, "-m", "modelog", command, "--loglevel", loglevel, *args],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True, env=env)
    log.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ModelogError(f"{what} exited with code {proc.returncode}; see {log_path}")
        if ready(proc.pid):
            proc.returncode = 0  # detached on purpose: it outlives this Popen object
            return proc.pid
        time.sleep(0.1)
    proc.terminate()
    proc.wait(10)
    raise ModelogError(f"{what} not ready after {timeout:.0f}s; see {log_path}")


def stop_pid(pid: int, timeout: float = 30.0) -> None:
    """SIGTERM, then SIGKILL if it is still alive after ``timeout``."""
    from ._query import _pid_alive

    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _pid_alive(pid):
        time.sleep(0.1)
    if _pid_alive(pid):
        os.kill(pid, signal.SIGKILL)


def start_processor_background(settings: Settings, loglevel: str = "warning", timeout: float = 120.0,
                               workers: int = 1) -> int:
    from ._query import running_processor

    def ready(pid: int) -> bool:
        info = running_processor(settings)
        return bool(info and info.get("pid") == pid and info.get("ready"))

    return start_background(settings, "process", ready, "processor", "processor.log", loglevel, timeout,
                            ("--workers", str(workers)))


def stop_processor(settings: Settings, info: dict, timeout: float = 30.0) -> None:
    stop_pid(int(info["pid"]), timeout)


# -- queries -------------------------------------------------------------------------

@cli.command("sql")
@click.argument("query")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@click.option("--as-of", "as_of", default=None, metavar="TIME",
              help="Answer with the views as they were at TIME (ISO 8601; naive = UTC), e.g. 2026-11-01T12:00Z.")
@click.pass_context
def sql_cmd(ctx: click.Context, query: str, fmt: str, as_of: str | None) -> None:
    """Run a read-only SQL query over the views, e.g. modelog sql "SELECT * FROM runs"."""
    from . import _output
    from ._query import sql_arrow

    result = sql_arrow(query, _settings(ctx), as_of=as_of)
    text = {"table": _output.table, "csv": _output.to_csv, "json": _output.to_json}[fmt](result)
    click.echo(text.rstrip("\n"))


@cli.command("rebuild")
@click.option("--output", type=click.Path(path_type=Path), default=None,
              help="Write the rebuilt views here instead of replacing the live file.")
@click.pass_context
def rebuild_cmd(ctx: click.Context, output: Path | None) -> None:
    """Replay the log from the beginning into fresh views (progress on stderr)."""
    from modelog.processors.rebuild import rebuild

    from ._query import running_processor

    settings = _settings(ctx)
    if output is None and running_processor(settings):
        raise click.ClickException("a processor is using the views file: stop it first "
                                   "(modelog process --stop) or pass --output PATH")
    started = time.monotonic()
    path, n = rebuild(settings, output=output)
    click.echo(f"rebuilt {path} from {n} records in {time.monotonic() - started:.1f}s")


@cli.command("schemas")
@click.option("--freeze", is_flag=True, help="Record the current schemas as released (developers).")
def schemas_cmd(freeze: bool) -> None:
    """List event schemas and their fingerprints."""
    from ._schemas import current_schemas, freeze_current

    if freeze:
        for p in freeze_current():
            click.echo(f"released {p.name}")
        return
    for name, s in sorted(current_schemas().items()):
        click.echo(f"{name:<20} {s.fingerprint.hex()}")


@cli.group("demo", invoke_without_command=True)
@click.option("--runs", default=6, show_default=True, help="Number of training runs (hyperparameter grid).")
@click.option("--keep-running", is_flag=True, help="Leave the broker and processor running afterwards.")
@click.pass_context
def demo_cmd(ctx: click.Context, runs: int, keep_running: bool) -> None:
    """The main job: embedded broker + processor + real training runs + a SQL leaderboard.

    `modelog demo monitoring` runs the production-monitoring demo instead.
    """
    if ctx.invoked_subcommand is not None:
        return
    from ._demo import run_demo

    run_demo(_settings(ctx), runs=runs, keep_running=keep_running)


@demo_cmd.command("monitoring")
@click.option("--keep-running", is_flag=True, help="Leave the broker and processors running afterwards.")
@click.pass_context
def demo_monitoring_cmd(ctx: click.Context, keep_running: bool) -> None:
    """A deployed model drifts: alert in the views, on `alerts tail`, at a webhook, on /metrics."""
    from ._demo_monitoring import run_monitoring_demo

    run_monitoring_demo(_settings(ctx), keep_running=keep_running)


from ._cli_lineage import lineage  # noqa: E402  (modelog lineage upstream|downstream)

cli.add_command(lineage)

from ._cli_registry import access, deploy, model, policy, requests  # noqa: E402  (the model registry)

for _group in (model, requests, deploy, access, policy):
    cli.add_command(_group)

from ._cli_alerts import alerts  # noqa: E402  (modelog alerts tail|webhook)

cli.add_command(alerts)

from ._cli_monitor import drift, monitor  # noqa: E402  (drift processor, monitoring setup)

cli.add_command(drift)
cli.add_command(monitor)


def main() -> None:
    try:
        cli(standalone_mode=True)
    except ModelogError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)

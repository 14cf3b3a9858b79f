"""``modelog drift`` (the drift processor) and ``modelog monitor`` (reference profiles, configuration)."""

from __future__ import annotations

from pathlib import Path

import click

from modelog.cli.daemon import control
from modelog.local.processes import running_drift, start_drift_background, stop_drift
from modelog.cli.session import cli_client


@click.command("drift")
@click.option("--background", "-d", is_flag=True, help="Run detached; return once it is ready.")
@click.option("--stop", is_flag=True, help="Stop the background drift processor.")
@click.option("--status", is_flag=True, help="Show whether it runs.")
@click.option("--loglevel", default="warning", show_default=True)
@click.option("--timeout", default=120.0, show_default=True, help="Seconds --background waits for readiness.")
@click.pass_context
def drift(ctx: click.Context, background: bool, stop: bool, status: bool, loglevel: str, timeout: float) -> None:
    """Run the drift processor: prediction windows vs reference profiles -> drift metrics and alerts."""
    settings = ctx.obj["settings"]
    info = running_drift(settings)
    if control(ctx, info, status=status, stop=stop, stopper=lambda: stop_drift(settings),
               describe=lambda i: f"pid={i['pid']}  ready={i.get('ready')}",
               already="a drift processor already runs (pid {pid})"):
        return
    if background:
        pid = start_drift_background(settings, loglevel=loglevel, timeout=timeout)
        click.echo(f"drift processor running in the background (pid {pid}); log: {settings.home / 'drift.log'}")
        return
    from modelog.processors.drift_app import run_drift

    run_drift(settings, loglevel=loglevel)


@click.group("monitor")
def monitor() -> None:
    """Production monitoring setup: reference profiles and drift configuration."""


@monitor.command("reference")
@click.argument("model")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--version", "version", type=int, default=None, help="Model version (default: every version).")
@click.option("--prediction", default=None, help="Name of the prediction column.")
@click.option("--label", default=None, help="Name of the label column.")
@click.pass_context
def monitor_reference(ctx, model, path, version, prediction, label) -> None:
    """Profile a CSV or Parquet file as MODEL's reference (training) data."""
    import pandas as pd

    from modelog.sdk.monitoring import log_reference

    df = pd.read_parquet(path) if path.suffix in (".parquet", ".pq") else pd.read_csv(path)
    with cli_client(ctx) as c:
        n = log_reference(model, version, df, prediction=prediction, label=label, client=c)
        c.flush()
    click.echo(f"reference for {model}" + (f" version {version}" if version else "") + f": {n} columns, {len(df)} rows")


@monitor.command("configure")
@click.argument("model")
@click.option("--window-rows", type=int, default=None, help="Close a window after this many predictions.")
@click.option("--window-seconds", type=int, default=None, help="Tumbling windows of this length (event time).")
@click.option("--method", "methods", multiple=True, metavar="COLUMN=METHOD")
@click.option("--threshold", "thresholds", multiple=True, metavar="COLUMN=VALUE")
@click.option("--drift-share", type=float, default=0.5, show_default=True)
@click.option("--raise-after", type=int, default=1, show_default=True)
@click.option("--resolve-after", type=int, default=2, show_default=True)
@click.pass_context
def monitor_configure(ctx, model, window_rows, window_seconds, methods, thresholds, drift_share, raise_after,
                      resolve_after) -> None:
    """Set MODEL's windows, per-column methods/thresholds and alert hysteresis."""
    from modelog.sdk.monitoring import configure_monitor

    def pairs(values, what, cast):
        out = {}
        for v in values:
            k, sep, val = v.partition("=")
            if not sep:
                raise click.BadParameter(f"{what} must be COLUMN=VALUE (got {v!r})")
            out[k] = cast(val)
        return out

    with cli_client(ctx) as c:
        configure_monitor(model, window_rows=window_rows, window_seconds=window_seconds,
                          methods=pairs(methods, "--method", str), thresholds=pairs(thresholds, "--threshold", float),
                          drift_share=drift_share, raise_after=raise_after, resolve_after=resolve_after, client=c)
        c.flush()
    click.echo(f"monitor configured for {model}")

"""``modelog demo`` (the quickstart's main job) and ``modelog demo monitoring``."""

from __future__ import annotations

import click


@click.group("demo", invoke_without_command=True)
@click.option("--runs", default=6, show_default=True, help="Number of training runs (hyperparameter grid).")
@click.option("--keep-running", is_flag=True, help="Leave the broker and processor running afterwards.")
@click.pass_context
def demo_cmd(ctx: click.Context, runs: int, keep_running: bool) -> None:
    """The main job: embedded broker + processor + real training runs + a SQL leaderboard.

    `modelog demo monitoring` runs the production-monitoring demo instead.
    """
    if ctx.invoked_subcommand is not None:
        return
    from modelog.demos.training import run_demo

    run_demo(ctx.obj["settings"], runs=runs, keep_running=keep_running)


@demo_cmd.command("monitoring")
@click.option("--keep-running", is_flag=True, help="Leave the broker and processors running afterwards.")
@click.pass_context
def demo_monitoring_cmd(ctx: click.Context, keep_running: bool) -> None:
    """A deployed model drifts: alert in the views, on `alerts tail`, at a webhook, on /metrics."""
    from modelog.demos.monitoring import run_monitoring_demo

    run_monitoring_demo(ctx.obj["settings"], keep_running=keep_running)

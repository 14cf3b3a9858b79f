"""``modelog alerts tail|webhook``: follow the alerts the drift processor raises and resolves.

``tail`` prints them (text or JSON Lines) as they happen; ``webhook`` forwards each to a URL,
at least once. Both read the alerts topic directly (no processor needed). See docs/alerts.md.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from contextlib import closing, contextmanager

import click


@contextmanager
def _stop_on_signals():
    """An Event set by SIGINT / SIGTERM for the duration of the block (handlers restored after)."""
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@click.group()
def alerts() -> None:
    """Alerts (AlertChanged on the alerts topic): tail them, forward them to a webhook."""


@alerts.command("tail")
@click.option("--model", default=None, help="Only this model's alerts.")
@click.option("--deployment", default=None, help="Only this deployment's alerts.")
@click.option("--from-beginning", is_flag=True, help="Replay the alert history first (default: only new alerts).")
@click.option("--max", "max_alerts", type=click.IntRange(min=1), default=None, help="Exit after N alerts.")
@click.option("--timeout", type=click.FloatRange(min=0), default=None, help="Exit after S seconds.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="json: one JSON object per line (the webhook body).")
@click.pass_context
def tail_cmd(ctx: click.Context, model: str | None, deployment: str | None, from_beginning: bool,
             max_alerts: int | None, timeout: float | None, fmt: str) -> None:
    """Print alerts as they happen: time, state, model/deployment, rule, value vs threshold, message, alert_id.

    Runs until Ctrl-C, --max or --timeout. "Ready" goes to stderr once new alerts will be shown.
    """
    from modelog.consumers.alerts import format_text, tail

    settings = ctx.obj["settings"]
    where = "the beginning" if from_beginning else "the end"

    def ready(partitions: int) -> None:
        click.echo(f"tailing {settings.alerts_topic} ({partitions} partitions) from {where}: ready", err=True)

    shown = 0
    with _stop_on_signals() as stop:
        timer = threading.Timer(timeout, stop.set) if timeout is not None else None
        if timer:
            timer.daemon = True
            timer.start()
        try:
            with closing(tail(settings, from_beginning=from_beginning, model=model, deployment=deployment,
                              stop=stop, on_ready=ready)) as stream:
                for alert in stream:
                    click.echo(json.dumps(alert) if fmt == "json" else format_text(alert))
                    shown += 1
                    if max_alerts is not None and shown >= max_alerts:
                        break
        finally:
            if timer:
                timer.cancel()


@alerts.command("webhook")
@click.argument("url")
@click.option("--model", default=None, help="Only this model's alerts.")
@click.option("--deployment", default=None, help="Only this deployment's alerts.")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=10.0, show_default=True,
              help="Seconds per HTTP request.")
@click.option("--max-retries", type=click.IntRange(min=0), default=10, show_default=True,
              help="Retries per alert (connection errors, 408, 429, 5xx) before the forwarder stops with an error.")
@click.option("--backoff", "backoff_base", type=click.FloatRange(min=0), default=0.5, show_default=True,
              help="First retry delay in seconds; doubles per retry (with jitter) up to 60 s.")
@click.option("--loglevel", default="info", show_default=True)
@click.pass_context
def webhook_cmd(ctx: click.Context, url: str, model: str | None, deployment: str | None, timeout: float,
                max_retries: int, backoff_base: float, loglevel: str) -> None:
    """Forward every alert to URL as a JSON POST, at least once, until Ctrl-C / SIGTERM.

    Header Idempotency-Key: <alert_id>:<state> lets the receiver drop redeliveries. The offset is
    committed only after a 2xx (consumer group modelog-webhook-<hash of URL>), so a restart resumes
    after the last acknowledged alert. Other 4xx: logged and dead-lettered (webhook_rejected).
    Exit code 1 when the retries of one alert run out (nothing is skipped: a restart retries it).
    """
    from modelog.wire.errors import DeliveryError
    from modelog.consumers.webhook import WebhookForwarder

    logging.basicConfig(stream=sys.stderr, level=loglevel.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with _stop_on_signals() as stop:
        try:
            forwarder = WebhookForwarder(ctx.obj["settings"], url, model=model, deployment=deployment,
                                         timeout=timeout, max_retries=max_retries, backoff_base=backoff_base,
                                         stop=stop)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="URL") from None
        try:
            counts = forwarder.run()
        except DeliveryError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
    click.echo(f"stopped: {counts['delivered']} delivered, {counts['rejected']} rejected, "
               f"{counts['skipped']} skipped", err=True)

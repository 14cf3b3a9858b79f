"""``modelog broker start|stop|status``: the embedded broker of the local stack."""

from __future__ import annotations

import click


@click.group()
def broker() -> None:
    """The embedded broker (tansu) under MODELOG_HOME."""


@broker.command("start")
@click.option("--storage", type=click.Choice(["s3", "memory"]), default="s3", show_default=True,
              help="s3 keeps the log on disk across restarts; memory loses it.")
@click.option("--port", type=int, default=None, help="Listen port (default: the last one, else a free one).")
@click.pass_context
def broker_start(ctx: click.Context, storage: str, port: int | None) -> None:
    """Start the embedded broker (idempotent) and print its bootstrap address."""
    from modelog.local.broker import EmbeddedBroker
    from modelog.wire.topics import ensure_topics

    address = EmbeddedBroker(ctx.obj["settings"].home, storage=storage).start(port=port)
    # create the topics now: concurrent first writers would otherwise race on creating them (issue 10)
    ensure_topics(ctx.obj["settings"].replace(bootstrap=address))
    click.echo(address)


@broker.command("stop")
@click.pass_context
def broker_stop(ctx: click.Context) -> None:
    """Stop the embedded broker (its log stays on disk with s3 storage)."""
    from modelog.local.broker import EmbeddedBroker

    stopped = EmbeddedBroker(ctx.obj["settings"].home).stop()
    click.echo("stopped" if stopped else "not running")


@broker.command("status")
@click.pass_context
def broker_status(ctx: click.Context) -> None:
    """Print whether the embedded broker runs, and its bootstrap address."""
    from modelog.local.broker import EmbeddedBroker

    st = EmbeddedBroker(ctx.obj["settings"].home).status()
    if st["running"]:
        click.echo(f"running  bootstrap={st['address']}  storage={st['storage']}  pid={st['pid']}  log={st['log']}")
    else:
        click.echo("not running")
        ctx.exit(1)

"""``modelog serve``: the HTTP API and web UI, in the foreground or in the background."""

from __future__ import annotations

import click

from modelog.cli.daemon import control
from modelog.local.processes import start_server_background, stop_server
from modelog.wire.home import admin_token_file, running_server


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (0.0.0.0: every interface).")
@click.option("--port", default=5080, show_default=True, type=click.IntRange(1, 65535))
@click.option("--background", "-d", is_flag=True, help="Run detached; return once it answers.")
@click.option("--stop", is_flag=True, help="Stop the background server.")
@click.option("--status", is_flag=True, help="Show whether it runs, and its URL.")
@click.option("--loglevel", default="warning", show_default=True)
@click.option("--timeout", default=120.0, show_default=True, help="Seconds --background waits for readiness.")
@click.pass_context
def serve(ctx: click.Context, host: str, port: int, background: bool, stop: bool, status: bool, loglevel: str,
          timeout: float) -> None:
    """Serve the REST API (/api/v1), the web UI (/) and the OpenAPI document; print the URL to open."""
    settings = ctx.obj["settings"]
    info = running_server(settings)
    if control(ctx, info, status=status, stop=stop, stopper=lambda: stop_server(settings),
               describe=lambda i: f"pid={i['pid']}  url={i['url']}",
               already="a server already runs at {url} (pid {pid})"):
        return
    if background:
        info = start_server_background(settings, host, port, loglevel=loglevel, timeout=timeout)
        token = admin_token_file(settings).read_text().strip()
        click.echo(f"modelog serving at {info['url']} (pid {info['pid']}); log: {settings.home / 'server.log'}\n"
                   f"  open: {info['url']}/?token={token}")
        return
    from modelog.server.runner import serve as run

    run(settings, host=host, port=port, loglevel=loglevel)

"""What the commands that run a service in the background (``process``, ``drift``, ``serve``) share:
``--status``, ``--stop`` and the refusal to start a second one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click


def control(ctx: click.Context, info: dict[str, Any] | None, *, status: bool, stop: bool,
            describe: Callable[[dict[str, Any]], str], stopper: Callable[[], bool], already: str) -> bool:
    """Handle ``--status`` (exit 1 when nothing runs) and ``--stop``, or refuse to start beside a running
    one (``already`` names it, formatted with its info); True when the command is done."""
    if status:
        if not info:
            click.echo("not running")
            ctx.exit(1)
        click.echo("running  " + describe(info))
        return True
    if stop:
        click.echo("stopped" if stopper() else "not running")
        return True
    if info:
        raise click.ClickException(already.format(**info))
    return False

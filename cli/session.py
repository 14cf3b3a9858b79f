"""The SDK client a CLI command publishes and reads with: opened with the command's settings under the
program name ``modelog-cli``, and closed (its events flushed) when the command is done."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import click


@contextlib.contextmanager
def cli_client(ctx: click.Context) -> Iterator:
    from modelog.sdk.client import Client

    client = Client(ctx.obj["settings"], program="modelog-cli")
    try:
        yield client
    finally:
        client.close()

"""``modelog artifacts list|get``: a run's artifacts, and their bytes from the artifact store, checked.

``get`` checks every byte against the sha256 logged with the artifact: a missing or corrupted object
is an error (exit 2) that names the run, the path, the expected and the actual sha256, and leaves no
file behind (docs/artifacts.md).
"""

from __future__ import annotations

from pathlib import Path

import click


@click.group()
def artifacts() -> None:
    """A run's artifacts: list them, get their stored bytes (checked against their sha256)."""


@artifacts.command("list")
@click.argument("run_id")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@click.pass_context
def artifacts_list(ctx: click.Context, run_id: str, fmt: str) -> None:
    """List RUN_ID's artifacts: path, size, sha256, and where the bytes are stored (content_address)."""
    from modelog.cli import output as _output
    from modelog.consumers.query import sql_arrow
    from modelog.sdk.artifacts import COLUMNS

    result = sql_arrow(f"SELECT {COLUMNS} FROM artifacts WHERE run_id = ? ORDER BY path", ctx.obj["settings"],
                       params=[run_id])
    click.echo({"table": _output.table, "csv": _output.to_csv, "json": _output.to_json}[fmt](result).rstrip("\n"))


@artifacts.command("get")
@click.argument("run_id")
@click.argument("path")
@click.option("-o", "--output", "dest", type=click.Path(path_type=Path), default=None,
              help="File to write, or an existing directory to write into (default: the current directory). "
                   "For a directory artifact: the directory that receives its files.")
@click.pass_context
def artifacts_get(ctx: click.Context, run_id: str, path: str, dest: Path | None) -> None:
    """Download artifact PATH of RUN_ID (a file, or every file under a directory), checked against its sha256."""
    from modelog.sdk.artifacts import download

    written = download(run_id, path, dest, ctx.obj["settings"])
    click.echo(str(written))

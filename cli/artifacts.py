"""``modelog artifacts log|list|get``: a run's artifacts, and their bytes in the artifact store, checked.

``get`` checks every byte against the sha256 logged with the artifact: a missing or corrupted object
is an error (exit 2) that names the run, the path, the expected and the actual sha256, and leaves no
file behind (docs/artifacts.md).
"""

from __future__ import annotations

from pathlib import Path

import click
from modelog.cli.session import cli_client


@click.group()
def artifacts() -> None:
    """A run's artifacts: log (and store) them, list them, get their stored bytes (checked against their sha256)."""


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


@artifacts.command("log")
@click.argument("run_id")
@click.argument("local_path", type=click.Path(exists=True, path_type=Path))
@click.option("--artifact-path", default=None, help="Its path in the run (default: the file or directory name).")
@click.option("--no-store", is_flag=True, help="Record a reference only (sha256, size, file:// URI): the bytes stay here.")
@click.pass_context
def artifacts_log(ctx: click.Context, run_id: str, local_path: Path, artifact_path: str | None, no_store: bool) -> None:
    """Log LOCAL_PATH (a file, or a directory's files under its name) as an artifact of RUN_ID and store it;
    waits until the bytes are stored and the events acknowledged."""
    from modelog.sdk.uploads import files_under, record_files

    with cli_client(ctx) as client:
        base = artifact_path or local_path.name
        files = ([(local_path, base)] if local_path.is_file()
                 else [(f, f"{base}/{f.relative_to(local_path).as_posix()}") for f in files_under(local_path)])
        recorded = record_files(client, run_id, files, store=not no_store)
        if not no_store:
            client.uploads.wait(run_id, client.settings.flush_timeout)
        client.flush()
    for art in recorded:
        click.echo(f"{art['path']}  {art['sha256']}  {art['content_address'] or art['uri'] + ' (reference only)'}")


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

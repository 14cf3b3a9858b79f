"""``modelog sql`` (read-only SQL over the views) and ``modelog schemas`` (the event contract)."""

from __future__ import annotations

import click

from modelog.cli import output


@click.command("sql")
@click.argument("query")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@click.option("--as-of", "as_of", default=None, metavar="TIME",
              help="Answer with the views as they were at TIME (ISO 8601; naive = UTC), e.g. 2026-11-01T12:00Z.")
@click.pass_context
def sql_cmd(ctx: click.Context, query: str, fmt: str, as_of: str | None) -> None:
    """Run a read-only SQL query over the views, e.g. modelog sql "SELECT * FROM runs"."""
    from modelog.consumers.query import sql_arrow

    result = sql_arrow(query, ctx.obj["settings"], as_of=as_of)
    text = {"table": output.table, "csv": output.to_csv, "json": output.to_json}[fmt](result)
    click.echo(text.rstrip("\n"))


@click.command("schemas")
@click.option("--freeze", is_flag=True, help="Record the current schemas as released (developers).")
def schemas_cmd(freeze: bool) -> None:
    """List event schemas and their fingerprints."""
    from modelog.wire.schemas import current_schemas, freeze_current

    if freeze:
        for p in freeze_current():
            click.echo(f"released {p.name}")
        return
    for name, s in sorted(current_schemas().items()):
        click.echo(f"{name:<20} {s.fingerprint.hex()}")

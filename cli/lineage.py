"""``modelog lineage upstream|downstream <entity>``: walk the lineage graph from one node.

Runs the ``lineage_upstream`` / ``lineage_downstream`` table macros of the views through the
ordinary query path (the processor's SQL endpoint, else the file read-only).
"""

from __future__ import annotations

import re

import click

from modelog.wire import rules as _rules
from modelog.wire.settings import Settings
from modelog.wire.errors import ModelogError, ValidationError

UNLIMITED = 1_000_000  # --depth not given: walks still stop, because no path revisits a node
_SHORT = re.compile(r"(dataset:[^@]*@)([0-9a-f]{12})[0-9a-f]{52}")


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def resolve_node(entity: str, settings: Settings) -> str:
    """The full node id of ``entity``; a dataset version may be a unique prefix of >= 8 hex digits.

    Raises ValidationError for bad syntax, ModelogError for an unknown or ambiguous entity.
    """
    from modelog.consumers.query import sql_arrow

    try:
        kind, parts = _rules.parse_node(entity, version_prefix=True)
    except ValueError as exc:
        raise ValidationError("entity", entity, str(exc)) from None
    if kind == "dataset" and len(parts[1]) < 64:
        name, prefix = parts
        found = sql_arrow(f"SELECT node FROM dataset_versions WHERE name = {_literal(name)} "
                          f"AND starts_with(version, {_literal(prefix)}) ORDER BY node", settings)
        nodes = found.column("node").to_pylist()
        if len(nodes) > 1:
            raise ModelogError(f"dataset version prefix {prefix!r} of {name!r} is ambiguous: it matches "
                               + ", ".join(n.rsplit("@", 1)[1][:16] for n in nodes) + "; give more hex digits")
        if nodes:
            return nodes[0]
    else:
        found = sql_arrow(f"SELECT node FROM lineage_nodes WHERE node = {_literal(entity)}", settings)
        if found.num_rows:
            return entity
    raise ModelogError(f"unknown entity {entity!r}: no run, dataset version, artifact, model or deployment with "
                       "that id is in the views (list them: modelog sql \"SELECT node FROM lineage_nodes\")")


def walk(direction: str, entity: str, depth: int | None, settings: Settings):
    """The rows of ``lineage_<direction>(entity, depth)`` as an Arrow table (ordered by depth)."""
    from modelog.consumers.query import sql_arrow

    node = resolve_node(entity, settings)
    return sql_arrow(f"SELECT node, kind, relation, via, role, depth, path FROM lineage_{direction}("
                     f"{_literal(node)}, {depth or UNLIMITED})", settings)


def _short(text: str | None) -> str | None:
    return None if text is None else _SHORT.sub(r"\1\2", text)


def _for_terminal(result):
    """Table output: drop the path and shorten dataset versions to 12 hex digits (still a valid prefix)."""
    import pyarrow as pa

    cols = ["depth", "kind", "node", "relation", "via", "role"]
    return pa.table({c: ([_short(v) for v in result.column(c).to_pylist()] if c in ("node", "via")
                         else result.column(c)) for c in cols})


def _command(direction: str, help_text: str) -> click.Command:
    @click.command(direction, help=help_text)
    @click.argument("entity")
    @click.option("--depth", type=click.IntRange(min=1), default=None,
                  help="Follow at most N edges (default: all).")
    @click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
    @click.pass_context
    def command(ctx: click.Context, entity: str, depth: int | None, fmt: str) -> None:
        from modelog.cli import output as _output

        result = walk(direction, entity, depth, ctx.obj["settings"])
        if fmt == "table":
            text = _output.table(_for_terminal(result), max_width=80)
        else:
            text = {"csv": _output.to_csv, "json": _output.to_json}[fmt](result)
        click.echo(text.rstrip("\n"))

    return command


@click.group("lineage")
def lineage() -> None:
    """Walk the lineage graph from an entity.

    ENTITY is a node id: run:<run_id>, dataset:<name>@<version> (a unique prefix of >= 8 hex
    digits will do), model:<name>/<version>, deployment:<model>/<environment> or
    artifact:<run_id>/<path>.
    """


lineage.add_command(_command("upstream", "What ENTITY came from: data, runs and models upstream of it."))
lineage.add_command(_command("downstream", "What was made from ENTITY: runs, models, deployments downstream of it."))

"""The ``modelog`` command: the root group and its entry point; each command group has a module here."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from modelog.cli.alerts import alerts
from modelog.cli.artifacts import artifacts
from modelog.cli.audit import audit
from modelog.cli.broker import broker
from modelog.cli.demo import demo_cmd
from modelog.cli.importers import import_cmd
from modelog.cli.keys import init_cmd, keys
from modelog.cli.lineage import lineage
from modelog.cli.monitor import drift, monitor
from modelog.cli.privacy import erase_cmd
from modelog.cli.process import process, rebuild_cmd
from modelog.cli.registry import access, deploy, model, policy, requests
from modelog.cli.serve import serve
from modelog.cli.sql import schemas_cmd, sql_cmd
from modelog.cli.token import token
from modelog.wire.errors import ModelogError
from modelog.wire.settings import Settings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--home", type=click.Path(path_type=Path), default=None, help="Data directory (MODELOG_HOME).")
@click.version_option(package_name="modelog")
@click.pass_context
def cli(ctx: click.Context, home: Path | None) -> None:
    """modelog: event-sourced ML metadata on Kafka, queried with SQL."""
    ctx.ensure_object(dict)
    ctx.obj["settings"] = Settings.load(home=home)


for _command in (broker, process, sql_cmd, rebuild_cmd, schemas_cmd, demo_cmd, lineage, model, requests, deploy,
                 access, policy, token, alerts, drift, monitor, serve, artifacts, init_cmd, keys, import_cmd, audit,
                 erase_cmd):
    cli.add_command(_command)


def main() -> None:
    try:
        cli(standalone_mode=True)
    except ModelogError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)

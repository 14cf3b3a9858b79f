"""Every CLI command has an authorization rule (cli/authz.py); adding one without a rule fails here."""

from __future__ import annotations

import click

from modelog.cli.authz import ADMIN, APPROVER, LOCAL, READ, RULES, WRITE
from modelog.cli.main import cli


def commands(cmd: click.Command, path: tuple[str, ...] = ("modelog",)):
    """Every command a user can run: the leaves, and the groups that run without a subcommand."""
    if isinstance(cmd, click.Group):
        if cmd.invoke_without_command and len(path) > 1:
            yield " ".join(path)
        for name, sub in cmd.commands.items():
            yield from commands(sub, path + (name,))
    else:
        yield " ".join(path)


def test_every_cli_command_has_an_authorization_rule_and_every_rule_a_command():
    found = set(commands(cli))
    assert "modelog model promote" in found and "modelog demo" in found
    assert sorted(found - set(RULES)) == [], "commands without an authorization rule (add them to cli/authz.py)"
    assert sorted(set(RULES) - found) == [], "rules for commands that do not exist"
    assert set(RULES.values()) <= {LOCAL, READ, WRITE, APPROVER, ADMIN}


def test_a_command_added_without_a_rule_is_caught():
    @click.group()
    def root() -> None: ...

    @root.command("leak")
    def leak() -> None: ...

    assert sorted(set(commands(root)) - set(RULES)) == ["modelog leak"]


def test_governing_commands_are_admin_and_reads_do_not_publish():
    assert {c for c, r in RULES.items() if r == ADMIN} >= {"modelog access grant", "modelog policy set",
                                                           "modelog keys revoke", "modelog token create"}
    assert RULES["modelog requests approve"] == APPROVER and RULES["modelog sql"] == READ

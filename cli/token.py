"""``modelog token create|list|revoke``: API tokens for the HTTP server (``Authorization: Bearer <token>``).

``create`` prints the new token once, on stdout (and on stderr that it will not be shown again); only
its SHA-256 goes on the log, in a ``TokenIssued`` event. Issuing and revoking are events, so the
``audit_log`` view records who did each and when. ``list`` never shows hashes.

``create`` and ``revoke`` wait until the views hold the change (a processor must be running), so a
``token list`` right after sees it; exit 3 if the views did not catch up within ``--timeout`` (the
change is on the log and takes effect once projected).
"""

from __future__ import annotations

import sys
from datetime import datetime, timezone

import click

from modelog.wire import tokens as _tokens
from modelog.wire.errors import QueryError
from modelog.cli.session import cli_client

_fmt = click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table",
                    show_default=True)
_timeout = click.option("--timeout", type=float, default=30.0, show_default=True,
                        help="Seconds to wait for the views to show the change.")
_no_wait = click.option("--no-wait", is_flag=True, help="Do not wait for the views (e.g. no processor running yet).")


def _q(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _when(micros: int | None) -> str:
    if micros is None:
        return "never"
    return datetime.fromtimestamp(micros / 1e6, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _now_literal() -> str:
    """Now (UTC) as a TIMESTAMP literal: the views' times are naive UTC, whatever the reader's time zone."""
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    return f"TIMESTAMP '{now.isoformat(sep=' ')}'"


def _wait(client, timeout: float, what: str) -> None:
    try:
        client.wait_projected(timeout)
    except QueryError as exc:
        click.echo(f"warning: {what} is on the log but not yet in the views ({exc}); it takes effect once a "
                   "processor projects it (`modelog process`)", err=True)
        sys.exit(3)


@click.group()
def token() -> None:
    """API tokens for the HTTP server: create (shown once), list, revoke."""


@token.command("create")
@click.argument("principal")
@click.option("--role", "roles", multiple=True, type=click.Choice(_tokens.ROLES),
              help="A role the token carries (repeat for several; default: reader).")
@click.option("--expires", default="never", show_default=True, metavar="30d|12h|90m|never",
              help="How long the token works.")
@click.option("--description", default=None, help="What the token is for (kept in the log).")
@_timeout
@_no_wait
@click.pass_context
def token_create(ctx, principal, roles, expires, description, timeout, no_wait) -> None:
    """Issue a token for PRINCIPAL and print it once on stdout; only its hash is stored."""
    from modelog.sdk.tokens import issue_token

    _tokens.parse_expires(expires)  # a bad --expires fails before anything happens, naming the option
    with cli_client(ctx) as c:
        issued = issue_token(c, principal, roles or None, expires=expires, description=description)
        click.echo(issued.token)
        sys.stdout.flush()
        click.echo(f"token {issued.token_id} for {issued.principal} (roles: {', '.join(issued.roles)}; expires: "
                   f"{_when(issued.expires_at)}). Store it now: it will not be shown again.", err=True)
        if not no_wait:
            _wait(c, timeout, f"token {issued.token_id}")


@token.command("list")
@click.option("--all", "everything", is_flag=True,
              help="Revoked and expired tokens too, with a status column (active, revoked, expired).")
@_fmt
@click.pass_context
def token_list(ctx, everything, fmt) -> None:
    """Active tokens (not revoked, not expired). Hashes are never shown."""
    from modelog.cli import output as _output
    from modelog.consumers.query import sql_arrow

    now = _now_literal()
    expired = f"(expires_at IS NOT NULL AND expires_at <= {now})"
    if everything:
        query = ("SELECT token_id, principal, roles, description, issued_at, issued_by, expires_at, "
                 f"CASE WHEN revoked_at IS NOT NULL THEN 'revoked' WHEN {expired} THEN 'expired' ELSE 'active' END "
                 "AS status, revoked_at, revoked_by, revoke_reason FROM api_tokens ORDER BY issued_at, token_id")
    else:
        query = ("SELECT token_id, principal, roles, description, issued_at, issued_by, expires_at FROM api_tokens "
                 f"WHERE revoked_at IS NULL AND NOT {expired} ORDER BY issued_at, token_id")
    result = sql_arrow(query, ctx.obj["settings"])
    click.echo({"table": _output.table, "csv": _output.to_csv, "json": _output.to_json}[fmt](result).rstrip("\n"))


@token.command("revoke")
@click.argument("token_id")
@click.option("--reason", default=None, help="Why (kept in the log).")
@_timeout
@click.pass_context
def token_revoke(ctx, token_id, reason, timeout) -> None:
    """Revoke the token TOKEN_ID: from then on it authenticates nothing."""
    from modelog.consumers.query import sql_arrow
    from modelog.sdk.tokens import revoke_token

    _tokens.check_token_id(token_id, "TOKEN_ID")
    rows = sql_arrow(f"SELECT revoked_at, revoked_by FROM api_tokens WHERE token_id = {_q(token_id)}",
                     ctx.obj["settings"]).to_pylist()
    if not rows:
        click.echo(f"error: no token {token_id} (see `modelog token list --all`)", err=True)
        sys.exit(1)
    if rows[0]["revoked_at"] is not None:
        click.echo(f"token {token_id} was already revoked at {rows[0]['revoked_at']} by {rows[0]['revoked_by']}",
                   err=True)
        return
    with cli_client(ctx) as c:
        revoke_token(c, token_id, reason)
        _wait(c, timeout, f"the revocation of token {token_id}")
    click.echo(f"revoked token {token_id}")

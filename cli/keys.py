"""``modelog init`` and ``modelog keys create|list|revoke``: Ed25519 signing keys (decision 0015).

Events published with a key are signed (one signature per record, over its bytes, topic and event id);
the processor verifies them against the keys registered on the log. Registrations and revocations are
admin-only once the log has its bootstrap admin (``modelog init``); a refused one is a dead letter
(``modelog sql "SELECT * FROM dead_letters"``) and changes no view.
"""

from __future__ import annotations

import click

from modelog.cli.registry import _fmt, _show
from modelog.cli.session import cli_client


@click.command("init")
@click.pass_context
def init_cmd(ctx) -> None:
    """Make MODELOG_PRINCIPAL this log's bootstrap admin: its signing key (MODELOG_SIGNING_KEY, or a new one
    under $MODELOG_HOME/keys/), recorded by a self-signed KeyRegistered event, and the admin role; also keys
    for the projector and the HTTP server. From then on only admins may register or revoke keys, grant admin
    or set policies. Refused by the processor if the log has a bootstrap admin already."""
    from modelog.sdk.keys import bootstrap

    for principal, key_id, path in bootstrap(ctx.obj["settings"]):
        click.echo(f"{principal}: key {key_id}" + (f" ({path}, mode 0600)" if path else " (MODELOG_SIGNING_KEY)"))
    click.echo("bootstrap published; `modelog keys list` shows the keys once the processor admitted them")


@click.group()
def keys() -> None:
    """Ed25519 signing keys: what makes an event's actor proven (docs/decisions/0015-signed-events.md)."""


@keys.command("create")
@click.option("--principal", default=None, help="Whom the key speaks for (default: MODELOG_PRINCIPAL).")
@click.option("--delegate", is_flag=True, help="The key may sign for principals it authenticated (a server's key).")
@click.option("--description", default=None, help="What the key is for.")
@click.pass_context
def keys_create(ctx, principal, delegate, description) -> None:
    """Create a key for PRINCIPAL and register its public key (an admin's registration takes effect).
    The private key goes to $MODELOG_HOME/keys/<principal>.key (mode 0600), or, for yourself with
    MODELOG_SIGNING_KEY set, that key is registered."""
    from modelog.sdk.keys import create_key

    with cli_client(ctx) as c:
        signer, path = create_key(c, principal, capabilities=("delegate",) if delegate else (),
                                  description=description)
    who = principal or ctx.obj["settings"].principal
    click.echo(f"key {signer.key_id} for {who}" + (f": {path} (mode 0600)" if path else " (MODELOG_SIGNING_KEY)"))


@keys.command("list")
@click.option("--all", "everything", is_flag=True, help="Revoked keys too.")
@_fmt
@click.pass_context
def keys_list(ctx, everything, fmt) -> None:
    """The registered keys (active ones; --all: revoked too)."""
    where = "" if everything else "WHERE status = 'active' "
    _show(ctx, "SELECT key_id, principal, capabilities, bootstrap, status, registered_at, registered_by, "
               f"revoked_at, revoked_by, description FROM signing_keys {where}ORDER BY registered_at", fmt)


@keys.command("revoke")
@click.argument("key_id")
@click.option("--reason", default=None, help="Why (kept in the audit trail).")
@click.pass_context
def keys_revoke(ctx, key_id, reason) -> None:
    """Revoke KEY_ID: its signatures on records logged from now on are refused (earlier ones still verify)."""
    from modelog.sdk.keys import revoke_key
    from modelog.wire import rules

    try:
        rules.key_id(key_id)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="KEY_ID") from None
    with cli_client(ctx) as c:
        revoke_key(c, key_id, reason)
    click.echo(f"revocation of {key_id} published")


__all__ = ["init_cmd", "keys"]

"""``modelog erase --subject ID``: crypto-shredding of one data subject (decision 0018).

Sensitive params and tags (``modelog policy set --sensitive-param KEY``) are sealed with their run's
subject's data key, kept in ``$MODELOG_HOME/keystore``; erasing the subject deletes that key and publishes
``SubjectErased``, after which the views, a rebuild and every copy of the log hold no readable value of it.
"""

from __future__ import annotations

import click

from modelog.cli.session import cli_client


@click.command("erase")
@click.option("--subject", required=True, help="The data subject's opaque id (as given to start_run(subject=...)).")
@click.option("--reason", default=None, help="Why, e.g. a ticket number (recorded in the log: no personal data).")
@click.pass_context
def erase_cmd(ctx, subject, reason) -> None:
    """Erase SUBJECT: publish SubjectErased and delete its data key, so its sealed values can never be read
    again. The views show them as [erased] once the processor applied the event; `modelog rebuild` too.
    Irreversible."""
    from modelog.sdk.privacy import erase

    with cli_client(ctx) as c:
        key_ids = erase(c, subject, reason)
    if key_ids:
        click.echo(f"subject {subject} erased: data key {', '.join(key_ids)} deleted; its values show as [erased]")
    else:
        click.echo(f"subject {subject}: no data key in the key store (erasure recorded)")


__all__ = ["erase_cmd"]

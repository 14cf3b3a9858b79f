"""Signing keys from the SDK: register, revoke, and the bootstrap admin of a new log (``modelog init``).
Admin operations, reached through ``modelog keys`` / ``modelog init``; not part of ``import modelog``'s surface.

    signer, path = create_key(client, "bob")        # writes $MODELOG_HOME/keys/bob.key (0600)
    revoke_key(client, signer.key_id, reason="left the team")

Each verb publishes one event keyed ``keys`` (``KeyRegistered``, ``KeyRevoked``), signed with the caller's
own key, and flushes. The processor admits it only when the caller is an admin at that time (or, for the
bootstrap, when the log has no admin yet); otherwise it is dead-lettered with the reason
(docs/decisions/0015-signed-events.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from modelog.wire.envelope import Event
from modelog.wire.errors import ConfigError
from modelog.wire.models import validate
from modelog.wire.signing import DELEGATE, Signer, key_path, load_signer, write_key

if TYPE_CHECKING:
    from modelog.sdk.client import Client

KEYS = "keys"  # the Kafka key of every key event: one partition, in order
SERVER_PRINCIPAL = "modelog-server"


def _publish(client: Client, event_type: str, **payload) -> str:
    event = client.events.make(event_type, "key", KEYS, **payload)
    validate(event_type, event.record)
    client.emitter.emit([event])
    client.emitter.flush()
    return event.event_id


def register_key(client: Client, principal: str, signer: Signer, *, capabilities: tuple[str, ...] = (),
                 description: str | None = None, bootstrap: bool = False) -> str:
    """Publish a ``KeyRegistered`` for ``signer``'s public key. Returns the event id."""
    unknown = set(capabilities) - {DELEGATE}
    if unknown:
        raise ConfigError(f"capabilities: unknown {sorted(unknown)} (known: {DELEGATE})")
    return _publish(client, "KeyRegistered", key_id=signer.key_id, principal=principal,
                    public_key=signer.public_key, algorithm="ed25519", capabilities=list(capabilities),
                    bootstrap=bootstrap, description=description)


def create_key(client: Client, principal: str | None = None, *, capabilities: tuple[str, ...] = (),
               description: str | None = None) -> tuple[Signer, Path | None]:
    """A key for ``principal`` (default: the client's), registered by the client's principal.

    The client's own principal with ``MODELOG_SIGNING_KEY`` set registers that key (no file is written);
    otherwise a new key is written to ``$MODELOG_HOME/keys/<principal>.key`` (mode 0600; never over an
    existing file). Returns (signer, path or None)."""
    s = client.settings
    principal = principal or s.principal
    path: Path | None = None
    if principal == s.principal and s.signing_key:
        signer = load_signer(s.signing_key, s.home, principal)
        assert signer is not None
    else:
        signer = Signer.generate()
        path = write_key(key_path(s.home, principal), signer)
    register_key(client, principal, signer, capabilities=capabilities, description=description)
    return signer, path


def revoke_key(client: Client, key_id: str, reason: str | None = None) -> str:
    """Publish a ``KeyRevoked``: the key's signatures on records logged from now on are refused."""
    return _publish(client, "KeyRevoked", key_id=key_id, reason=reason)


def bootstrap(settings, program: str = "modelog-cli") -> list[tuple[str, str, Path | None]]:
    """Make this principal the log's first admin: its key (``MODELOG_SIGNING_KEY`` or a new key file), a
    self-signed bootstrap ``KeyRegistered``, an ``AccessChanged`` granting it ``admin``, and keys for the
    projector (``MODELOG_PROCESSOR_ID``: it signs its decisions) and the HTTP server (``delegate``).
    Returns [(principal, key id, key file or None)]."""
    from modelog.sdk.client import Client

    out: list[tuple[str, str, Path | None]] = []
    me = settings.principal
    signer = load_signer(settings.signing_key, settings.home, me)
    path: Path | None = None
    if signer is None:
        signer = Signer.generate()
        path = write_key(key_path(settings.home, me), signer)
    client = Client(settings, program=program)
    try:
        register_key(client, me, signer, bootstrap=True, description="bootstrap admin (modelog init)")
        out.append((me, signer.key_id, path))
        # the admin grant (the access model's record of who is admin) travels on the keys partition, right
        # after the registration whose key signs it, so that no processor can read it first
        grant = client.events.make("AccessChanged", "access", f"access:{me}", principal=me, role="admin",
                                   model=None, granted=True)
        validate("AccessChanged", grant.record)
        client.emitter.emit([Event("AccessChanged", KEYS, grant.record)])
        for principal, caps, what in ((settings.processor_id, (), "the projector's decisions"),
                                      (SERVER_PRINCIPAL, (DELEGATE,), "the HTTP server, for its tokens' principals")):
            p = key_path(settings.home, principal)
            other = load_signer(None, settings.home, principal)
            if other is None:
                other = Signer.generate()
                write_key(p, other)
            register_key(client, principal, other, capabilities=caps, description=what)
            out.append((principal, other.key_id, p))
    finally:
        client.close()
    return out

"""Writes for the server: events published as the authenticated principal, through one shared emitter.

The server is one more publisher like the SDK: the same schemas, the same validation before
anything is published, the same emitter and delivery guarantee. Only the actor differs per
request, and it is always the token's principal. Every record is signed with the server's key, registered
with the ``delegate`` capability: the server vouches for the principal its token authenticated.
"""

from __future__ import annotations

import dataclasses
import threading

from modelog.sdk.client import Client
from modelog.sdk.keys import SERVER_PRINCIPAL
from modelog.wire.emitter import Emitter, KafkaEmitter
from modelog.wire.settings import Settings
from modelog.wire.signing import signer_for


class Publisher:
    """A :class:`modelog.Client` per principal, all sharing one emitter (one producer per server)."""

    def __init__(self, settings: Settings, emitter: Emitter | None = None) -> None:
        self.settings = settings
        self._emitter = emitter
        self._clients: dict[str, Client] = {}
        self._lock = threading.Lock()

    @property
    def emitter(self) -> Emitter:
        with self._lock:
            if self._emitter is None:
                # signed with the server's delegate key ($MODELOG_HOME/keys/modelog-server.key, registered by
                # modelog init): the processor then shows each token's principal as verified (decision 0015)
                self._emitter = KafkaEmitter(self.settings, signer=signer_for(self.settings, SERVER_PRINCIPAL))
            return self._emitter

    def client(self, principal: str) -> Client:
        """The client that stamps ``principal`` as the actor of every event it publishes."""
        c = self._clients.get(principal)
        if c is None:
            emitter = self.emitter
            with self._lock:
                c = self._clients.get(principal)
                if c is None:
                    settings = dataclasses.replace(self.settings, principal=principal, actor_kind="USER")
                    c = self._clients[principal] = Client(settings, emitter=emitter, program="modelog-server")
        return c

    def close(self) -> None:
        with self._lock:
            emitter, self._emitter = self._emitter, None
            self._clients.clear()
        if emitter is not None:
            emitter.close()

"""Signed events: Ed25519 signatures over the exact bytes of a record, its topic and its event id.

A publisher with a signing key puts two Kafka headers on every record it produces::

    modelog.key_id   ed25519:<first 32 hex digits of sha256(raw public key)>
    modelog.sig      64 bytes: Ed25519 signature of pae(topic, event_id, value)

``pae`` is DSSE's pre-authentication encoding (``DSSEv1 <len> <type> <len> <body>``) of the SHA-256 of
the record's value, with a payload type that binds the topic and the event id, so a signature cannot be
moved to another topic, another event id or other bytes. Signing the 32-byte digest rather than the value
itself hashes a 100 KB batch event once instead of Ed25519's twice (SHA-512): about 3x faster to sign. The verifier (the processor) checks the signature over the raw bytes before
it decodes them, with the public key the key registry holds for that key id -- a key id alone proves
nothing. One signature per record: the SDK's batch events (up to 5,000 points) cost one signature.

Keys: ``$MODELOG_HOME/keys/<principal>.key`` (PEM, PKCS#8, mode 0600), or ``MODELOG_SIGNING_KEY`` (a path
to such a file, or its PEM text). See docs/decisions/0015-signed-events.md.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from modelog.wire.errors import ConfigError

KEY_ID_HEADER = "modelog.key_id"
SIG_HEADER = "modelog.sig"
EVENT_ID_HEADER = "modelog.event_id"
PAYLOAD_TYPE = "application/vnd.modelog.event+avro.sha256"
DELEGATE = "delegate"  # capability: may sign for principals it authenticated (the HTTP server)


def key_id_of(public_key: bytes) -> str:
    """The id of a raw 32-byte Ed25519 public key."""
    return "ed25519:" + hashlib.sha256(public_key).hexdigest()[:32]


def pae(topic: str, event_id: str, value: bytes) -> bytes:
    """DSSE pre-authentication encoding of one record (its value's SHA-256, topic and event id): what is signed."""
    ptype = f"{PAYLOAD_TYPE}; topic={topic}; event_id={event_id}".encode()
    digest = hashlib.sha256(value).digest()
    return b"DSSEv1 %d %s %d %s" % (len(ptype), ptype, len(digest), digest)


def verify(public_key: bytes, topic: str, event_id: str, value: bytes, signature: bytes) -> bool:
    """True when ``signature`` is ``public_key``'s signature of this record. Never raises on bad input."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, pae(topic, event_id, value))
        return True
    except (InvalidSignature, ValueError, TypeError):
        return False


def headers_of(raw) -> dict[str, bytes]:
    """A record's headers as a dict (Kafka allows repeats: the first wins), from a list, a dict or None."""
    out: dict[str, bytes] = {}
    if not raw:
        return out
    items = raw.items() if isinstance(raw, dict) else raw
    for k, v in items:
        k = k.decode() if isinstance(k, bytes) else str(k)
        if k not in out and v is not None:
            out[k] = v if isinstance(v, bytes) else str(v).encode()
    return out


@dataclass(frozen=True)
class Signer:
    """A private signing key: ``headers(topic, event_id, value)`` gives the two headers to add."""

    private: Ed25519PrivateKey
    key_id: str
    public_key: bytes

    @classmethod
    def from_private(cls, private: Ed25519PrivateKey) -> Signer:
        public = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return cls(private, key_id_of(public), public)

    @classmethod
    def generate(cls) -> Signer:
        return cls.from_private(Ed25519PrivateKey.generate())

    @classmethod
    def from_pem(cls, pem: bytes, where: str = "key") -> Signer:
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{where}: not a PEM private key ({exc})") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError(f"{where}: must be an Ed25519 private key (got {type(key).__name__})")
        return cls.from_private(key)

    def pem(self) -> bytes:
        return self.private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption())

    def sign(self, topic: str, event_id: str, value: bytes) -> bytes:
        return self.private.sign(pae(topic, event_id, value))

    def headers(self, topic: str, event_id: str, value: bytes) -> list[tuple[str, bytes]]:
        return [(KEY_ID_HEADER, self.key_id.encode()), (SIG_HEADER, self.sign(topic, event_id, value))]

    def __repr__(self) -> str:  # never the private key
        return f"Signer({self.key_id})"


_SAFE = re.compile(r"[^A-Za-z0-9._@-]")


def key_path(home: Path, principal: str) -> Path:
    """Where ``modelog keys create`` keeps ``principal``'s private key."""
    return Path(home) / "keys" / (_SAFE.sub("_", principal) + ".key")


def write_key(path: Path, signer: Signer) -> Path:
    """Write ``signer``'s private key to ``path`` with mode 0600 (never over an existing file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(f"{path}: a key already exists there (revoke it and move it away first)") from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(signer.pem())
    return path


def load_signer(spec: str | None, home: Path, principal: str) -> Signer | None:
    """The signing key of this process: ``spec`` (MODELOG_SIGNING_KEY: a path or PEM text), else the
    key file of ``principal`` under ``home/keys``, else None (unsigned events)."""
    if spec:
        text = spec.strip()
        if text.startswith("-----BEGIN"):
            return Signer.from_pem(text.encode(), "MODELOG_SIGNING_KEY")
        path = Path(text).expanduser()
        try:
            return Signer.from_pem(path.read_bytes(), f"MODELOG_SIGNING_KEY ({path})")
        except OSError as exc:
            raise ConfigError(f"MODELOG_SIGNING_KEY: cannot read {path}: {exc.strerror}") from None
    path = key_path(home, principal)
    if path.exists():
        return Signer.from_pem(path.read_bytes(), str(path))
    return None


def signer_for(settings, principal: str | None = None) -> Signer | None:
    """The signing key of ``settings.principal`` (MODELOG_SIGNING_KEY, else its key file), or of another
    ``principal`` this process speaks for (a processor's own id: its key file only)."""
    if principal is None or principal == settings.principal:
        return load_signer(settings.signing_key, settings.home, settings.principal)
    return load_signer(None, settings.home, principal)

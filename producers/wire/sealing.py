"""Sealed values: one sensitive field's text encrypted with its subject's data key (AES-256-GCM).

A sealed value replaces the plaintext in the event, in the same string field, so every schema stays as
it was and an old reader sees opaque text::

    modelog:sealed:v1:<subject>:<key id>:<base64url(12-byte nonce | ciphertext | 16-byte tag)>

The subject and key id are in clear (the processor needs them to find the key; both are opaque ids);
the key never is. The additional authenticated data binds the ciphertext to its subject, key id and
field (``param:<key>``, ``tag:<key>``), so a sealed value moved to another field or subject does not
open. Pure: no I/O; keys come from a :class:`~modelog.wire.keystore.KeyStore` (decision 0018).
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from modelog.wire.keystore import DataKey

PREFIX = "modelog:sealed:v1:"
ERASED = "[erased]"  # what the views show for a value whose subject was erased
_TOKEN = re.compile(r"modelog:sealed:v1:([A-Za-z0-9_\-]{1,64}):(dek-[0-9a-f]{16}):([A-Za-z0-9_\-]+={0,2})")


@dataclass(frozen=True)
class Sealed:
    """A parsed sealed value."""

    subject: str
    key_id: str
    blob: bytes  # nonce | ciphertext | tag


def _aad(subject: str, key_id: str, field: str) -> bytes:
    return f"modelog-sealed-v1|{subject}|{key_id}|{field}".encode()


def seal(key: DataKey, field: str, plaintext: str) -> str:
    """``plaintext`` sealed with ``key`` for ``field`` (e.g. ``param:email``)."""
    nonce = os.urandom(12)
    blob = nonce + AESGCM(key.key).encrypt(nonce, plaintext.encode(), _aad(key.subject, key.key_id, field))
    return f"{PREFIX}{key.subject}:{key.key_id}:{base64.urlsafe_b64encode(blob).decode()}"


def is_sealed(value: object) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


def parse(value: str) -> Sealed | None:
    """The parts of a sealed value; None when ``value`` is not one (or is malformed)."""
    m = _TOKEN.fullmatch(value) if is_sealed(value) else None
    if m is None:
        return None
    try:
        blob = base64.urlsafe_b64decode(m.group(3))
    except ValueError:
        return None
    return Sealed(m.group(1), m.group(2), blob) if len(blob) >= 28 else None


def open_sealed(sealed: Sealed, field: str, key: DataKey | None) -> str | None:
    """The plaintext, or None when the key is gone, is another key, or the value does not authenticate."""
    if key is None or key.key_id != sealed.key_id or key.subject != sealed.subject:
        return None
    try:
        return AESGCM(key.key).decrypt(sealed.blob[:12], sealed.blob[12:],
                                       _aad(sealed.subject, sealed.key_id, field)).decode()
    except (InvalidTag, ValueError, UnicodeDecodeError):
        return None


@dataclass(frozen=True)
class Opened:
    """What a reader makes of one field's value: the text to show, and the subject/key if it was sealed."""

    text: str
    subject: str | None = None
    key_id: str | None = None


def opener(lookup: Callable[[str], DataKey | None], erased: Callable[[str], bool] = lambda key_id: False
           ) -> Callable[[str, str], Opened]:
    """A function ``(field, value) -> Opened`` for a reader: plain values pass through; a sealed value opens
    with its subject's key, or shows :data:`ERASED` when the key is gone or was erased (``erased(key_id)``),
    or does not authenticate. Keys are looked up once per subject."""
    cache: dict[str, DataKey | None] = {}

    def open_value(field: str, value: str) -> Opened:
        if not is_sealed(value):
            return Opened(value)
        sealed = parse(value)
        if sealed is None:  # not a sealed value after all: shown as it is
            return Opened(value)
        if sealed.subject not in cache:
            cache[sealed.subject] = lookup(sealed.subject)
        text = None if erased(sealed.key_id) else open_sealed(sealed, field, cache[sealed.subject])
        return Opened(ERASED if text is None else text, sealed.subject, sealed.key_id)

    return open_value

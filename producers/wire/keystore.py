"""Per-subject data keys, kept outside the log (crypto-shredding; decision 0018).

A *subject* is the person (or other party) some sensitive values are about, named by an opaque id
(``patient-0042``, never an e-mail address: the id travels in the log in clear). Each subject has one
256-bit AES data key (a DEK) with a random key id. Values are sealed with it before they are published
(:mod:`modelog.wire.sealing`); erasing the subject deletes the key, and every copy of its ciphertext --
in the log, its replicas and backups -- becomes unreadable.

:class:`KeyStore` is the interface a KMS can implement later (get, create, delete). :class:`FileKeyStore`
is the local one: ``$MODELOG_HOME/keystore/<subject>.json`` (mode 0600, directory 0700), shared by the
SDK and the processor of one machine.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from modelog.wire import rules as _rules
from modelog.wire.errors import ConfigError, ValidationError


@dataclass(frozen=True)
class DataKey:
    """One subject's data key: 32 random bytes, and the random id that names it in sealed values."""

    subject: str
    key_id: str
    key: bytes

    def __repr__(self) -> str:  # never the key itself, in a log line or a traceback
        return f"DataKey(subject={self.subject!r}, key_id={self.key_id!r})"


def check_subject(subject: object) -> str:
    """A subject id: 1-64 letters, digits, '_' or '-'. Raises ValidationError."""
    try:
        return _rules.ident(subject)
    except ValueError as exc:
        raise ValidationError("subject", subject, str(exc)) from None


@runtime_checkable
class KeyStore(Protocol):
    """Where data keys live. Implementations must never write a key into the log, a header or a log line."""

    def get(self, subject: str) -> DataKey | None:
        """The subject's key, or None (never created, or erased)."""

    def create(self, subject: str) -> DataKey:
        """The subject's key, made now if it has none (concurrent callers get the same key)."""

    def delete(self, subject: str) -> list[str]:
        """Forget the subject's key; returns the key ids deleted ([] when there was none)."""


class FileKeyStore:
    """Data keys as files under one directory (``$MODELOG_HOME/keystore``), one per subject, mode 0600."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def _path(self, subject: str) -> Path:
        return self.root / f"{check_subject(subject)}.json"

    def get(self, subject: str) -> DataKey | None:
        path = self._path(subject)
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        try:
            d = json.loads(text)
            key = base64.b64decode(d["key"], validate=True)
            if len(key) != 32 or d["subject"] != subject:
                raise ValueError("not a 32-byte key of this subject")
            return DataKey(subject, str(d["key_id"]), key)
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"key store file {path} is damaged ({type(exc).__name__})") from None

    def create(self, subject: str) -> DataKey:
        found = self.get(subject)
        if found is not None:
            return found
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.root, 0o700)
        key = DataKey(subject, "dek-" + secrets.token_hex(8), secrets.token_bytes(32))
        body = json.dumps({"subject": subject, "key_id": key.key_id,
                           "key": base64.b64encode(key.key).decode()}).encode()
        path = self._path(subject)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, body)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # atomic, never replaces: a concurrent creator's key wins, and we read it
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
        return self.get(subject) or key

    def delete(self, subject: str) -> list[str]:
        try:
            found = self.get(subject)
        except ConfigError:
            found = None
        path = self._path(subject)
        try:
            size = path.stat().st_size
            with open(path, "r+b") as f:  # overwrite before unlinking (best effort on copy-on-write disks)
                f.write(b"\0" * size)
                f.flush()
                os.fsync(f.fileno())
            path.unlink()
        except FileNotFoundError:
            return []
        return [found.key_id] if found else []


def keystore_for(home: Path | str) -> FileKeyStore:
    """The key store of a ``MODELOG_HOME``."""
    return FileKeyStore(Path(home) / "keystore")

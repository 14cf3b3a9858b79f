"""Sealed values (AES-256-GCM with a subject's data key) and the file key store: the pure pieces of
decision 0018, without a broker."""

from __future__ import annotations

import base64
import stat
import threading

import pytest

from modelog.wire.errors import ValidationError
from modelog.wire.keystore import DataKey, FileKeyStore, KeyStore, keystore_for
from modelog.wire.sealing import ERASED, PREFIX, is_sealed, open_sealed, opener, parse, seal

SECRET = "alice.liddell@example.org"


@pytest.fixture
def key() -> DataKey:
    return DataKey("patient-0042", "dek-0123456789abcdef", bytes(range(32)))


def test_a_sealed_value_opens_with_its_key_and_field_only(key):
    token = seal(key, "param:email", SECRET)
    assert token.startswith(f"{PREFIX}patient-0042:dek-0123456789abcdef:") and is_sealed(token)
    assert SECRET not in token and SECRET.encode() not in base64.urlsafe_b64decode(token.rsplit(":", 1)[1])
    sealed = parse(token)
    assert (sealed.subject, sealed.key_id) == (key.subject, key.key_id)
    assert open_sealed(sealed, "param:email", key) == SECRET
    assert open_sealed(sealed, "param:other", key) is None          # moved to another field: does not open
    assert open_sealed(sealed, "tag:email", key) is None
    other = DataKey(key.subject, key.key_id, bytes(32))
    assert open_sealed(sealed, "param:email", other) is None        # another key under the same id
    assert open_sealed(sealed, "param:email", None) is None         # the key is gone


def test_two_seals_of_one_value_differ(key):
    assert seal(key, "param:email", SECRET) != seal(key, "param:email", SECRET)  # a fresh nonce each time


def test_a_changed_byte_does_not_open(key):
    token = seal(key, "param:email", SECRET)
    head, blob = token.rsplit(":", 1)
    raw = bytearray(base64.urlsafe_b64decode(blob))
    raw[-1] ^= 1
    assert open_sealed(parse(f"{head}:{base64.urlsafe_b64encode(bytes(raw)).decode()}"), "param:email", key) is None


def test_a_value_moved_to_another_subject_does_not_open(key):
    token = seal(key, "param:email", SECRET)
    moved = token.replace("patient-0042", "patient-0043")
    bob = DataKey("patient-0043", key.key_id, key.key)
    assert open_sealed(parse(moved), "param:email", bob) is None


@pytest.mark.parametrize("value", ["plain", "", f"{PREFIX}", f"{PREFIX}a:b:c", f"{PREFIX}x:dek-0123456789abcdef:!!",
                                   f"{PREFIX}x:dek-0123456789abcdef:AAAA"])
def test_what_is_not_a_whole_sealed_value_does_not_parse(value):
    assert parse(value) is None


def test_the_opener_passes_plain_values_and_shows_erased_for_a_missing_or_erased_key(key):
    token = seal(key, "tag:owner", SECRET)
    keys = {key.subject: key}
    open_value = opener(keys.get)
    assert open_value("tag:owner", "plain").text == "plain"
    opened = open_value("tag:owner", token)
    assert (opened.text, opened.subject, opened.key_id) == (SECRET, key.subject, key.key_id)
    assert opener({}.get)("tag:owner", token).text == ERASED
    assert opener(keys.get, {key.key_id}.__contains__)("tag:owner", token).text == ERASED


def test_a_data_key_never_shows_its_bytes(key):
    assert key.key.hex() not in repr(key) and str(list(key.key)) not in repr(key)


def test_the_file_key_store_keeps_one_key_per_subject_in_a_0600_file(tmp_path):
    store = keystore_for(tmp_path)
    assert isinstance(store, KeyStore)
    assert store.get("patient-0042") is None
    made = store.create("patient-0042")
    assert len(made.key) == 32 and made.key_id.startswith("dek-")
    assert store.create("patient-0042") == made == store.get("patient-0042")
    path = tmp_path / "keystore" / "patient-0042.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "keystore").stat().st_mode) == 0o700
    assert store.create("patient-0043").key != made.key
    assert store.delete("patient-0042") == [made.key_id]
    assert not path.exists() and store.get("patient-0042") is None
    assert store.delete("patient-0042") == []
    assert store.create("patient-0042").key_id != made.key_id  # a new key: the erased one never comes back


def test_concurrent_creators_get_the_same_key(tmp_path):
    store = FileKeyStore(tmp_path / "keystore")
    got: list[DataKey] = []
    threads = [threading.Thread(target=lambda: got.append(store.create("s1"))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({(k.key_id, k.key) for k in got}) == 1
    assert [p.name for p in (tmp_path / "keystore").iterdir()] == ["s1.json"]


@pytest.mark.parametrize("subject", ["../etc", "a/b", "", "x" * 65, "alice@example.org", None])
def test_a_subject_id_is_an_opaque_id(tmp_path, subject):
    with pytest.raises(ValidationError, match="subject"):
        keystore_for(tmp_path).create(subject)

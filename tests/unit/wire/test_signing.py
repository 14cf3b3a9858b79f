"""Signing: DSSE-style signatures over a record's exact bytes, its topic and its event id."""

import os
import stat

import pytest

from modelog.wire.errors import ConfigError
from modelog.wire.signing import (KEY_ID_HEADER, SIG_HEADER, Signer, headers_of, key_id_of, key_path, load_signer,
                                  pae, verify, write_key)

TOPIC, EID, VALUE = "modelog.tracking", "0190f5e0-aaaa-7000-8000-000000000001", b"\xc3\x01" + bytes(range(40))


def test_a_signature_verifies_over_the_same_bytes_topic_and_event_id():
    s = Signer.generate()
    assert verify(s.public_key, TOPIC, EID, VALUE, s.sign(TOPIC, EID, VALUE))


@pytest.mark.parametrize("topic, eid, value", [
    ("modelog.monitoring", EID, VALUE),                                   # moved to another topic
    (TOPIC, "0190f5e0-aaaa-7000-8000-000000000002", VALUE),              # another event id
    (TOPIC, EID, VALUE[:-1] + bytes([VALUE[-1] ^ 1])),                   # one bit of the body
    (TOPIC, EID, VALUE + b"\x00"),                                       # a trailing byte
])
def test_any_change_breaks_the_signature(topic, eid, value):
    s = Signer.generate()
    assert not verify(s.public_key, topic, eid, value, s.sign(TOPIC, EID, VALUE))


def test_another_key_does_not_verify_and_garbage_never_raises():
    s, other = Signer.generate(), Signer.generate()
    sig = s.sign(TOPIC, EID, VALUE)
    assert not verify(other.public_key, TOPIC, EID, VALUE, sig)
    assert not verify(b"short", TOPIC, EID, VALUE, sig)
    assert not verify(s.public_key, TOPIC, EID, VALUE, b"\x00" * 3)


def test_pae_length_prefixes_make_the_encoding_unambiguous():
    assert pae("a", "b", b"c") != pae("a", "b", b"c ")
    assert pae("a", "b", b"c").startswith(b"DSSEv1 ")
    assert b"topic=a; event_id=b" in pae("a", "b", b"c")


def test_key_id_is_a_hash_of_the_public_key_and_headers_carry_it():
    s = Signer.generate()
    assert s.key_id == key_id_of(s.public_key) and len(s.key_id) == len("ed25519:") + 32
    h = headers_of(s.headers(TOPIC, EID, VALUE))
    assert h[KEY_ID_HEADER] == s.key_id.encode() and len(h[SIG_HEADER]) == 64
    assert "PRIVATE" not in repr(s) and s.key_id in repr(s)


def test_key_file_is_mode_0600_never_overwritten_and_loads_back(tmp_path):
    s = Signer.generate()
    path = write_key(key_path(tmp_path, "bob"), s)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    with pytest.raises(ConfigError, match="already exists"):
        write_key(path, Signer.generate())
    assert load_signer(None, tmp_path, "bob").key_id == s.key_id
    assert load_signer(None, tmp_path, "carol") is None


def test_modelog_signing_key_is_a_path_or_pem_text(tmp_path):
    s = Signer.generate()
    path = tmp_path / "k.pem"
    path.write_bytes(s.pem())
    assert load_signer(str(path), tmp_path, "x").key_id == s.key_id
    assert load_signer(s.pem().decode(), tmp_path, "x").key_id == s.key_id
    with pytest.raises(ConfigError, match="MODELOG_SIGNING_KEY"):
        load_signer(str(tmp_path / "missing.pem"), tmp_path, "x")
    with pytest.raises(ConfigError, match="not a PEM"):
        load_signer("-----BEGIN nonsense", tmp_path, "x")

"""The trust rules, without a broker: who signed a record, and whether they may (decision 0015)."""

import pytest

from factories import envelope, token_records
from modelog.wire.codec import Codec
from modelog.wire.signing import Signer
from modelog.processors.projection import RawRecord
from modelog.processors.projector import Projector
from modelog.processors.trust import Refused, Trust

TOPIC = "t.tracking"
CODEC = Codec()
_n = iter(range(1, 10_000))


def _eid() -> str:
    return f"01890f5e-0000-7000-8009-{next(_n):012d}"


def record(event_type: str, actor: str, **payload) -> dict:
    env = envelope(event_type, payload.pop("_key", "exp"), event_id=_eid(), entity_type="experiment")
    env["actor"] = {"principal": actor, "kind": "USER"}
    return {"envelope": env, **payload}


def created(actor: str) -> dict:
    return record("ExperimentCreated", actor, experiment="e", description=None)


def grant(actor: str, principal: str, role: str, at_us: int, model=None, experiment=None, granted=True) -> dict:
    rec = record("AccessChanged", actor, _key=f"access:{principal}", principal=principal, role=role, model=model,
                 experiment=experiment, granted=granted)
    rec["envelope"]["occurred_at"] = at_us  # grants count from their occurred_at
    return rec


def registered(actor: str, signer: Signer, principal: str, bootstrap=False, caps=()) -> dict:
    return record("KeyRegistered", actor, _key="keys", key_id=signer.key_id, principal=principal,
                  public_key=signer.public_key, algorithm="ed25519", capabilities=list(caps), bootstrap=bootstrap,
                  description=None)


def raw(event_type: str, rec: dict, signer: Signer | None, at_ms: int, offset: int = 0, tamper=None) -> RawRecord:
    value = CODEC.encode(event_type, rec)
    eid = rec["envelope"]["event_id"]
    headers = [("modelog.event_id", eid.encode())]
    if signer is not None:
        headers += signer.headers(TOPIC, eid, value)
    if tamper:
        value = tamper(value)
    return RawRecord(TOPIC, 0, offset, at_ms, b"k", value, tuple(headers))


def run(records, trust=None):
    trust = trust if trust is not None else Trust()
    p = Projector().prepare(records, trust)
    return p, trust


ADMIN, BOB = Signer.generate(), Signer.generate()


def bootstrapped():
    """A trust with alice as bootstrap admin and bob's key registered by her (log times 1000 and 2000 ms),
    bob a writer everywhere (granted by alice, at 2500 ms)."""
    p, trust = run([raw("KeyRegistered", registered("alice", ADMIN, "alice", bootstrap=True), ADMIN, 1000),
                    raw("KeyRegistered", registered("alice", BOB, "bob"), ADMIN, 2000),
                    raw("AccessChanged", grant("alice", "bob", "writer", at_us=2_500_000), ADMIN, 2500)])
    assert not p.dead, p.dead
    return trust


def reasons(p) -> list[str]:
    return [d.reason for d in p.dead]


def test_unsigned_events_are_accepted_unverified_on_a_fresh_install():
    p, _ = run([raw("ExperimentCreated", created("bob"), None, 1)])
    assert len(p.events) == 1 and not p.signed_by


def test_a_valid_signature_is_verified_and_recorded_with_its_key():
    trust = bootstrapped()
    rec = created("bob")
    p, _ = run([raw("ExperimentCreated", rec, BOB, 3000)], trust)
    assert p.signed_by == {rec["envelope"]["event_id"]: BOB.key_id}


def test_actor_field_disagreeing_with_the_key_is_refused():
    p, _ = run([raw("ExperimentCreated", created("alice"), BOB, 3000)], bootstrapped())
    assert reasons(p) == ["actor_mismatch"] and not p.events


def test_a_changed_byte_under_a_valid_signature_is_refused_before_decoding():
    flip = lambda v: v[:-1] + bytes([v[-1] ^ 1])  # noqa: E731
    p, _ = run([raw("ExperimentCreated", created("bob"), BOB, 3000, tamper=flip)], bootstrapped())
    assert reasons(p) == ["bad_signature"]


def test_an_unknown_key_is_refused():
    p, _ = run([raw("ExperimentCreated", created("bob"), Signer.generate(), 3000)], bootstrapped())
    assert reasons(p) == ["unknown_key"]


def test_a_key_signs_only_from_its_registration_until_its_revocation():
    trust = bootstrapped()
    revoke = record("KeyRevoked", "alice", _key="keys", key_id=BOB.key_id, reason="lost")
    p, _ = run([raw("ExperimentCreated", created("bob"), BOB, 1500),          # before registration
                raw("ExperimentCreated", created("bob"), BOB, 4000),          # fine
                raw("KeyRevoked", revoke, ADMIN, 5000),
                raw("ExperimentCreated", created("bob"), BOB, 4500),          # before the revocation: still valid
                raw("ExperimentCreated", created("bob"), BOB, 5000)], trust)  # at/after it: refused
    assert reasons(p) == ["unknown_key", "revoked_key"]
    assert len(p.events) == 3


def test_require_signatures_refuses_unsigned_events_logged_after_it():
    trust = bootstrapped()
    policy = record("PolicySet", "alice", _key="policy:*", model=None, rules=[], require_signatures=True,
                    rules_unchanged=True)
    p, _ = run([raw("PolicySet", policy, ADMIN, 3000), raw("ExperimentCreated", created("bob"), None, 2999),
                raw("ExperimentCreated", created("bob"), None, 3001)], trust)
    assert reasons(p) == ["unsigned"] and len(p.events) == 2


def test_key_and_policy_changes_are_admin_only_after_the_bootstrap():
    trust = bootstrapped()
    carol = Signer.generate()
    policy = record("PolicySet", "bob", _key="policy:*", model=None, rules=[], require_signatures=False,
                    rules_unchanged=True)
    grant = record("AccessChanged", "bob", _key="access:bob", principal="bob", role="admin", model=None, granted=True)
    p, _ = run([raw("KeyRegistered", registered("bob", carol, "carol"), BOB, 3000),
                raw("PolicySet", policy, BOB, 3001),
                raw("AccessChanged", grant, BOB, 3002),
                raw("KeyRegistered", registered("mallory", carol, "mallory"), None, 3003),
                raw("KeyRevoked", record("KeyRevoked", "bob", _key="keys", key_id=ADMIN.key_id), BOB, 3004)], trust)
    assert reasons(p) == ["not_admin"] * 5 and not p.events
    assert carol.key_id not in trust.keys and not trust.signature_policy


def test_every_grant_and_token_is_admin_only_after_the_bootstrap():
    trust = bootstrapped()
    scoped = record("AccessChanged", "bob", _key="access:bob", principal="bob", role="approver", model="m",
                    granted=True)
    sample = token_records()["TokenIssued"]
    token = record("TokenIssued", "bob", _key=f"token:{sample['token_id']}", token_id=sample["token_id"],
                   principal="bob", roles=["admin"], token_hash=sample["token_hash"], expires_at=None, description=None)
    by_admin = record("AccessChanged", "alice", _key="access:bob", principal="bob", role="approver", model="m",
                      granted=True)
    p, _ = run([raw("AccessChanged", scoped, BOB, 3000), raw("TokenIssued", token, BOB, 3001),
                raw("AccessChanged", by_admin, ADMIN, 3002)], trust)
    assert reasons(p) == ["not_admin", "not_admin"] and len(p.events) == 1


def test_a_second_bootstrap_is_refused():
    intruder = Signer.generate()
    p, _ = run([raw("KeyRegistered", registered("eve", intruder, "eve", bootstrap=True), intruder, 3000)],
               bootstrapped())
    assert reasons(p) == ["not_admin"]


def test_a_delegate_key_may_sign_for_the_principal_it_authenticated():
    trust = bootstrapped()
    server = Signer.generate()
    p, _ = run([raw("KeyRegistered", registered("alice", server, "modelog-server", caps=["delegate"]), ADMIN, 3000),
                raw("AccessChanged", grant("alice", "dora", "writer", at_us=3_000_500), ADMIN, 3000),
                raw("ExperimentCreated", created("dora"), server, 3001)], trust)
    assert not p.dead and len(p.signed_by) == 3


@pytest.mark.parametrize("drop", ["modelog.sig", "modelog.event_id"])
def test_half_a_signature_is_refused(drop):
    r = raw("ExperimentCreated", created("bob"), BOB, 3000)
    r = RawRecord(r.topic, r.partition, r.offset, r.timestamp_ms, r.key, r.value,
                  tuple(h for h in r.headers if h[0] != drop))
    p, _ = run([r], bootstrapped())
    assert reasons(p) == ["bad_signature"]


def test_refused_is_an_exception_with_reason_and_detail():
    e = Refused("unsigned", "why")
    assert e.reason == "unsigned" and "why" in str(e)

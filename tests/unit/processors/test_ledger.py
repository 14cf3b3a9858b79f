"""A worker's ledger of the trust records (``processors/ledger.py``): a shard that owns only some partitions
judges its records exactly as the single processor judges the whole log (decision 0015, amended)."""

from factories import envelope
from modelog.processors.ledger import JudgedTrust, Ledger
from modelog.processors.projection import RawRecord
from modelog.processors.projector import Projector
from modelog.processors.trust import Refused, Trust
from modelog.wire.codec import Codec
from modelog.wire.signing import Signer

TOPIC = "t.tracking"
CODEC = Codec()
ADMIN, BOB, EVE = Signer.generate(), Signer.generate(), Signer.generate()
_n = iter(range(1, 10_000))


def record(event_type: str, actor: str, key: str, **payload) -> dict:
    env = envelope(event_type, key, event_id=f"01890f5e-0000-7000-8009-{next(_n):012d}", entity_type="experiment")
    env["actor"] = {"principal": actor, "kind": "USER"}
    return {"envelope": env, **payload}


def raw(event_type: str, rec: dict, signer: Signer | None, at_ms: int, partition: int, offset: int) -> RawRecord:
    value = CODEC.encode(event_type, rec)
    eid = rec["envelope"]["event_id"]
    headers = [("modelog.event_id", eid.encode())] + (signer.headers(TOPIC, eid, value) if signer else [])
    return RawRecord(TOPIC, partition, offset, at_ms, rec["envelope"]["entity"]["key"].encode(), value, tuple(headers))


def registered(signer: Signer, principal: str, at_ms: int, offset: int, bootstrap=False, by=ADMIN) -> RawRecord:
    rec = record("KeyRegistered", "alice", "keys", key_id=signer.key_id, principal=principal,
                 public_key=signer.public_key, algorithm="ed25519", capabilities=[], bootstrap=bootstrap,
                 description=None)
    return raw("KeyRegistered", rec, by, at_ms, 0, offset)


def revoked(signer: Signer, at_ms: int, offset: int, by=ADMIN) -> RawRecord:
    return raw("KeyRevoked", record("KeyRevoked", "alice", "keys", key_id=signer.key_id, reason=None), by,
               at_ms, 0, offset)


def grant(actor: str, signer: Signer, principal: str, role: str, at_ms: int, offset: int) -> RawRecord:
    rec = record("AccessChanged", actor, f"access:{principal}", principal=principal, role=role, model=None,
                 experiment="e", granted=True)
    rec["envelope"]["occurred_at"] = at_ms * 1000  # grants count from their occurred_at
    return raw("AccessChanged", rec, signer, at_ms, 1, offset)


def created(actor: str, signer: Signer | None, at_ms: int, offset: int) -> RawRecord:
    return raw("ExperimentCreated", record("ExperimentCreated", actor, "exp:e", experiment="e", description=None),
               signer, at_ms, 2, offset)


def log() -> list[RawRecord]:
    """Partition 0: keys; 1: grants; 2: experiments (a shard of its own). In log-time order."""
    return [
        registered(ADMIN, "alice", 1000, 0, bootstrap=True),
        registered(BOB, "bob", 2000, 1),
        registered(EVE, "eve", 2100, 2),
        grant("eve", EVE, "eve", "admin", 2200, 0),        # eve is no admin: not_admin
        created("bob", BOB, 2300, 0),                       # before bob's grant: not_authorized
        grant("alice", ADMIN, "bob", "writer", 2500, 1),
        created("bob", BOB, 3000, 1),                       # verified, authorized
        created("bob", None, 3100, 2),                      # unsigned, but no policy: accepted unverified
        revoked(BOB, 4000, 3),
        revoked(ADMIN, 4100, 4),                            # alice revokes her own key, signed with it
        created("bob", BOB, 5000, 3),                       # after the revocation: revoked_key
    ]


def verdicts(prepared) -> dict[tuple[int, int], str]:
    out = {(d.record.partition, d.record.offset): d.reason for d in prepared.dead}
    out.update({(e[3].partition, e[3].offset): "ok" + ("+signed" if e[0] in prepared.signed_by else "")
                for e in prepared.events})
    return out


def test_a_shard_of_other_partitions_decides_as_the_single_processor():
    records = log()
    single = verdicts(Projector().prepare(records, Trust()))
    assert single[(2, 0)] == "not_authorized" and single[(2, 1)] == "ok+signed" and single[(2, 3)] == "revoked_key"
    assert single[(1, 0)] == "not_admin" and single[(2, 2)] == "ok"

    ledger = Ledger()
    ledger.absorb([r for r in records if r.partition != 2])  # what the worker's trust reader read
    shard = [r for r in records if r.partition == 2]
    worker = verdicts(Projector().prepare(shard, ledger.view({}, None)))
    assert worker == {k: v for k, v in single.items() if k[0] == 2}


def test_a_trust_record_on_a_shard_gets_the_ledgers_verdict_not_a_second_judgement():
    records = log()
    ledger = Ledger()
    ledger.absorb(records)
    keys = [r for r in records if r.partition == 0]
    # judged again with the registry that knows alice's revocation, alice's self-revocation would be revoked_key
    again = verdicts(Projector().prepare(keys, Trust(keys=dict(ledger.trust.keys))))
    assert again[(0, 4)] == "revoked_key"
    shard = verdicts(Projector().prepare(keys, ledger.view({}, None)))
    assert shard == verdicts(Projector().prepare(keys, Trust()))  # as the single processor: in order
    assert shard[(0, 4)] == "ok+signed"


def test_a_refused_trust_record_keeps_its_reason_and_teaches_nothing():
    records = log()
    ledger = Ledger()
    ledger.absorb(records)
    refused = next(r for r in records if (r.partition, r.offset) == (1, 0))
    view = ledger.view({}, None)
    assert isinstance(view, JudgedTrust)
    try:
        view.check_bytes(refused)
    except Refused as exc:
        assert exc.reason == "not_admin" and "eve" in exc.detail
    else:
        raise AssertionError("eve's self-grant must stay refused")
    assert not ledger.trust.is_admin("eve", 10**12)
    assert ledger.absorb(records) == 0  # each trust record is judged once


def test_the_ledger_judges_trust_records_in_log_time_order_whatever_order_they_arrive_in():
    records = log()
    trust_records = [r for r in records if r.partition in (0, 1)]
    a, b = Ledger(), Ledger()
    a.absorb(trust_records)
    b.absorb(list(reversed(trust_records)))
    assert {k: (type(v).__name__, getattr(v, "reason", None)) for k, v in a.verdicts.items()} == \
           {k: (type(v).__name__, getattr(v, "reason", None)) for k, v in b.verdicts.items()}

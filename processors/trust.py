"""Who signed an event, and may they: the key registry as of a record's log time. Pure: no faust, no duckdb.

``Trust`` holds the registered keys (with the log times they were registered and revoked at), the global
admin grants and the require-signatures switches. For each raw record the projector calls
:meth:`Trust.check_bytes` *before decoding* (the signature over the exact bytes, topic and event id, with
the registered public key of the header's key id), then :meth:`Trust.admit` on the decoded record
(event id, key window, actor, policy, admin-only changes) and, once admitted, :meth:`Trust.learn` so the
next records of the batch see a new key, revocation, grant or policy.

Time is the record's log timestamp (Kafka's record timestamp, else the envelope's occurred_at): Kafka
orders nothing across partitions, so "the registry as it stood at the event's log position" is read as
"as of the event's log time" -- the same answer live and on rebuild, whatever order partitions are read
in (decision 0015).

Once the log is governed, every other write is authorized against the grants as of its log time
(``permissions.py``, decision 0017): the actor must hold a role permitting the write in its scope.

Refusal reasons (dead-letter codes): ``unknown_key``, ``revoked_key``, ``bad_signature``,
``actor_mismatch``, ``unsigned`` (under require-signatures), ``not_admin`` (a governed change by
someone who is not an admin at that time), ``invalid_key`` (a registration whose key id or key is wrong),
``not_authorized`` (a write by someone without a role permitting it there at that time).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from modelog.wire.signing import (DELEGATE, EVENT_ID_HEADER, KEY_ID_HEADER, SIG_HEADER, headers_of, key_id_of,
                                  verify)

from .permissions import ACTIONS, Grant, UnknownRun, allowed, roles_for, scopes_of
from .rows import RawRecord

# Changes only an admin may make once the log has a bootstrap admin (modelog init): signing keys, policies,
# every grant or revocation of a role, and API tokens (each one is a way in).
GOVERNED = frozenset({"KeyRegistered", "KeyRevoked", "PolicySet", "AccessChanged", "TokenIssued", "TokenRevoked"})
ADMIN = "admin"


@dataclass
class KeyInfo:
    key_id: str
    principal: str
    public_key: bytes
    capabilities: frozenset[str] = frozenset()
    registered_at: int = 0  # log time, µs
    revoked_at: int | None = None
    bootstrap: bool = False


@dataclass(frozen=True)
class Check:
    """What the bytes said: unsigned, or signed by ``key`` (None while the key is unknown: a bootstrap?)."""

    signed: bool
    key_id: str | None = None
    key: KeyInfo | None = None
    event_id: str | None = None  # the signed event id (header)
    signature: bytes | None = None


class Refused(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def record_time(rec: RawRecord, record: dict | None = None) -> int:
    """A record's log time in µs: its Kafka timestamp, else its envelope's occurred_at (else 0)."""
    if rec.timestamp_ms is not None and rec.timestamp_ms >= 0:
        return rec.timestamp_ms * 1000
    return record["envelope"]["occurred_at"] if record is not None else 0


@dataclass
class Trust:
    keys: dict[str, KeyInfo] = field(default_factory=dict)
    admin_grants: list[tuple[str, int, bool]] = field(default_factory=list)  # principal, at (µs), granted
    signature_policy: list[tuple[int, bool]] = field(default_factory=list)  # at (µs), require
    # every grant and revocation: principal -> [(at µs, role, experiment, model, granted)]
    grants: dict[str, list[tuple[int, str, str | None, str | None, bool]]] = field(default_factory=dict)
    runs: dict[str, str] = field(default_factory=dict)  # run id -> experiment, learned from RunStarted
    run_lookup: object = None  # run id -> experiment | None, for runs started before this Trust was loaded

    # -- state as of a log time ------------------------------------------------------------------------
    def bootstrap_key(self) -> KeyInfo | None:
        boots = [k for k in self.keys.values() if k.bootstrap]
        return min(boots, key=lambda k: k.registered_at) if boots else None

    def governed(self, at: int) -> bool:
        """Whether admin-only changes are enforced at ``at`` (a bootstrap admin was registered before)."""
        b = self.bootstrap_key()
        return b is not None and b.registered_at <= at

    def is_admin(self, principal: str, at: int) -> bool:
        b = self.bootstrap_key()
        if b is not None and b.principal == principal and b.registered_at <= at:
            return True
        latest = None
        for who, t, granted in self.admin_grants:
            if who == principal and t <= at and (latest is None or t >= latest[0]):
                latest = (t, granted)
        return bool(latest and latest[1])

    def held(self, principal: str, at: int) -> list[Grant]:
        """The roles ``principal`` holds at ``at``: per (role, scope), the latest change at or before it."""
        latest: dict[tuple[str, str | None, str | None], tuple[int, bool]] = {}
        for t, role, experiment, model, granted in self.grants.get(principal, ()):
            k = (role, experiment, model)
            if t <= at and (k not in latest or t >= latest[k][0]):
                latest[k] = (t, granted)
        held = [Grant(role, experiment, model) for (role, experiment, model), (_, g) in latest.items() if g]
        if self.is_admin(principal, at) and not any(g.role == ADMIN and g.experiment is None and g.model is None
                                                    for g in held):
            held.append(Grant(ADMIN))  # the bootstrap admin
        return held

    def run_experiment(self, run_id: str) -> str | None:
        exp = self.runs.get(run_id)
        if exp is None and callable(self.run_lookup):
            exp = self.run_lookup(run_id)
            if exp is not None:
                self.runs[run_id] = exp
        return exp

    def authorize(self, event_type: str, record: dict, actor: str, at: int) -> None:
        """Raise Refused(not_authorized) unless ``actor`` may make this write at ``at`` (decision 0017)."""
        action = ACTIONS[event_type][0]
        held = self.held(actor, at)
        needs = " or ".join(roles_for(action)) if action != "reach" else "any role"
        holds = ", ".join(sorted(map(str, held))) or "no role"
        try:
            scopes = scopes_of(event_type, record, self.run_experiment)
        except UnknownRun as exc:  # only a role held everywhere reaches a run the log has not started
            if not any(g.experiment is None and g.model is None for g in held if g.role in roles_for(action)):
                raise Refused("not_authorized", f"{event_type} by {actor!r} needs {needs} everywhere: run "
                                                f"{exc.args[0]} was not started (holds: {holds})") from None
            return
        for scope in scopes or ():
            if not allowed(held, action, scope):
                raise Refused("not_authorized", f"{event_type} by {actor!r} needs {needs} on {scope} "
                                                f"(holds: {holds}; modelog access grant)")

    def requires_signatures(self, at: int) -> bool:
        latest = None
        for t, require in self.signature_policy:
            if t <= at and (latest is None or t >= latest[0]):
                latest = (t, require)
        return bool(latest and latest[1])

    # -- checks ----------------------------------------------------------------------------------------
    def check_bytes(self, rec: RawRecord) -> Check:
        """The signature over the raw record, before anything is decoded. Raises Refused."""
        h = headers_of(rec.headers)
        kid, sig = h.get(KEY_ID_HEADER), h.get(SIG_HEADER)
        if kid is None and sig is None:
            return Check(False)
        if kid is None or sig is None:
            raise Refused("bad_signature", f"header {KEY_ID_HEADER if kid is None else SIG_HEADER} is missing")
        eid_raw = h.get(EVENT_ID_HEADER)
        if eid_raw is None:
            raise Refused("bad_signature", f"signed record without a {EVENT_ID_HEADER} header")
        key_id, event_id = kid.decode(errors="replace"), eid_raw.decode(errors="replace")
        key = self.keys.get(key_id)
        if key is None:  # decided after decoding: a self-signed bootstrap registration, or unknown
            return Check(True, key_id, None, event_id, sig)
        if not verify(key.public_key, rec.topic, event_id, rec.value or b"", sig):
            raise Refused("bad_signature", f"the signature does not verify with key {key_id} of {key.principal} "
                                           "(the record's bytes, topic or event id were changed, or it is forged)")
        return Check(True, key_id, key, event_id, sig)

    def admit(self, check: Check, event_type: str, record: dict, rec: RawRecord) -> None:
        """Whether the decoded ``record`` may be applied. Raises Refused with the reason."""
        env = record["envelope"]
        at = record_time(rec, record)
        actor = env["actor"]["principal"]
        key = check.key
        if check.signed:
            if check.event_id != env["event_id"]:
                raise Refused("bad_signature", f"signed event id {check.event_id} but the record says {env['event_id']}")
            if key is None:
                key = self._bootstrap(check, event_type, record, rec, at)
            if at < key.registered_at:
                raise Refused("unknown_key", f"key {key.key_id} was not registered yet at this record's log time")
            if key.revoked_at is not None and at >= key.revoked_at:
                raise Refused("revoked_key", f"key {key.key_id} of {key.principal} was revoked before this record")
            if DELEGATE not in key.capabilities and actor != key.principal:
                raise Refused("actor_mismatch", f"actor {actor!r} but the record is signed by {key.key_id}, "
                                                f"a key of {key.principal!r}")
        elif self.requires_signatures(at):
            raise Refused("unsigned", f"unsigned {event_type} by {actor!r}: the policy requires signatures "
                                      "(modelog policy set --require-signatures)")
        if self._is_governed(event_type, record) and self.governed(at):
            if not check.signed:
                raise Refused("not_admin", f"{event_type} is an admin-only change and this one is unsigned "
                                           f"(claims {actor!r})")
            if not (record.get("bootstrap") and event_type == "KeyRegistered" and key.bootstrap
                    and key.key_id == record.get("key_id")) and not self.is_admin(actor, at):
                raise Refused("not_admin", f"{event_type} by {actor!r}, who is not an admin")
        elif event_type in ACTIONS and self.governed(at):
            self.authorize(event_type, record, actor, at)
        if event_type == "KeyRegistered":
            pk = record["public_key"]
            if len(pk) != 32 or key_id_of(pk) != record["key_id"]:
                raise Refused("invalid_key", f"key id {record['key_id']} is not the id of the public key given")
        elif event_type == "KeyRevoked" and record["key_id"] not in self.keys:
            raise Refused("unknown_key", f"cannot revoke {record['key_id']}: no such key")

    def _bootstrap(self, check: Check, event_type: str, record: dict, rec: RawRecord, at: int) -> KeyInfo:
        """An unknown key is only acceptable as the log's first admin key, signing its own registration."""
        if not (event_type == "KeyRegistered" and record.get("bootstrap") and record.get("key_id") == check.key_id):
            raise Refused("unknown_key", f"key {check.key_id} is not registered (modelog keys list)")
        if self.bootstrap_key() is not None:
            raise Refused("not_admin", f"bootstrap key {check.key_id}: this log has a bootstrap admin already")
        pk = record["public_key"]
        if len(pk) != 32 or key_id_of(pk) != check.key_id or not verify(
                pk, rec.topic, check.event_id or "", rec.value or b"", check.signature or b""):
            raise Refused("bad_signature", f"bootstrap registration of {check.key_id} is not signed by that key")
        return KeyInfo(check.key_id, record["principal"], pk, frozenset(record.get("capabilities", [])), at,
                       bootstrap=True)

    @staticmethod
    def _is_governed(event_type: str, record: dict) -> bool:
        return event_type in GOVERNED

    # -- learning from admitted events -----------------------------------------------------------------
    def learn(self, event_type: str, record: dict, rec: RawRecord) -> None:
        at = record_time(rec, record)
        if event_type == "KeyRegistered":
            if record["key_id"] not in self.keys:  # the first registration of a key id wins
                self.keys[record["key_id"]] = KeyInfo(
                    record["key_id"], record["principal"], record["public_key"],
                    frozenset(record.get("capabilities", [])), at, None,
                    bool(record.get("bootstrap")) and self.bootstrap_key() is None)
        elif event_type == "KeyRevoked":
            key = self.keys.get(record["key_id"])
            if key is not None and (key.revoked_at is None or at < key.revoked_at):
                key.revoked_at = at
        elif event_type == "PolicySet" and record.get("require_signatures") is not None:
            self.signature_policy.append((at, bool(record["require_signatures"])))
        elif event_type == "AccessChanged":
            t, granted = record["envelope"]["occurred_at"], bool(record.get("granted", True))
            self.grants.setdefault(record["principal"], []).append(
                (t, record["role"], record.get("experiment"), record.get("model"), granted))
            if record["role"] == ADMIN and record.get("model") is None and record.get("experiment") is None:
                self.admin_grants.append((record["principal"], t, granted))
        elif event_type == "RunStarted" and self.bootstrap_key() is not None:
            self.runs.setdefault(record["run_id"], record["experiment"])

"""Good and mutated records for the fault campaign's ``mutated-records`` scenario. Pure: no broker, no DuckDB.

Every record is built from a real encoded event (``tests/factories.py``'s sample of its type, with a fresh
event id, encoded by ``modelog.wire.codec.Codec``) and then, for the bad ones, mutated in one way:

=================  ===================================================================================
kind               what is done to the encoded event                             sure to be refused?
=================  ===================================================================================
bit-flip-header    one bit of the magic or the schema fingerprint flipped                  yes
bit-flip-body      1 to 3 random bits of the Avro body flipped                             no (*)
truncated          cut at a random point (header kept, some body gone)                     yes (**)
wrong-fingerprint  the fingerprint of another event type (or of none) in front            yes
absurd-length      the first length varint replaced by ~2^62, or negative                  yes
absurd-size        32 KB (every 20th: 900 KB) of junk after a valid header              yes
array-mismatch     valid Avro, a MetricsLogged whose columns disagree in length            yes
nesting            a valid header, then 10,000 nested JSON brackets                        yes
invalid-utf8       a string field's bytes replaced by invalid UTF-8 of the same length      yes
empty              no value at all                                                          yes
not-avro           plain JSON of the event (no framing)                                     yes
headers-missing    a signed-looking record with one of its signature headers missing       yes
rule-broken        valid Avro breaking a rule (bad metric key, event type mismatch)         yes
=================  ===================================================================================

(*) a flipped bit in a float or a character may leave a valid event (with its own fresh id): such a record is
projected, which is right; the scenario requires each one to be *accounted for* (projected or dead-lettered)
and counts the refused ones among the bad. (**) a cut Avro body can only decode if what is left still ends
on a field boundary of a valid record: the codec refuses trailing and missing bytes alike, so a cut always
fails; the scenario checks that too.
"""

from __future__ import annotations

import copy
import json
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "tests") not in sys.path:  # the factories (one valid record per event type)
    sys.path.insert(0, str(ROOT / "tests"))

from factories import sample_records  # noqa: E402

from modelog.wire import metric_columns  # noqa: E402
from modelog.wire.codec import SINGLE_OBJECT_MAGIC, Codec  # noqa: E402
from modelog.wire.ids import uuid7  # noqa: E402
from modelog.wire.schemas import released_schemas  # noqa: E402
from modelog.wire.signing import EVENT_ID_HEADER, KEY_ID_HEADER, SIG_HEADER  # noqa: E402

# event types of each projected topic used as good records and as the base of mutations
TOPIC_TYPES = {
    "tracking": ("ExperimentCreated", "RunStarted", "ParamsLogged", "MetricsLogged", "TagsSet", "RunEnded"),
    "monitoring": ("PredictionsLogged", "LabelsLogged"),
    "alerts": ("AlertChanged",),
}
SURE = {"bit-flip-header", "truncated", "wrong-fingerprint", "absurd-length", "absurd-size", "array-mismatch",
        "nesting", "invalid-utf8", "empty", "not-avro", "headers-missing", "rule-broken"}
KINDS = ("bit-flip-body", *sorted(SURE))
MARKER = "zzmutantzz"  # a string field's value whose bytes invalid-utf8 replaces


@dataclass
class Record:
    """One record to produce: where, what, and what it is (``kind`` None: a good record)."""

    topic: str  # "tracking" | "monitoring" | "alerts" (the settings' topic of that name)
    value: bytes | None
    key: bytes
    kind: str | None = None
    event_id: str | None = None  # the good record's (or the mutation's base event's) id
    headers: list[tuple[str, bytes]] = field(default_factory=list)

    @property
    def sure_bad(self) -> bool:
        return self.kind in SURE


class Maker:
    """Builds fresh events of the sample records and mutates them, from one seeded random source."""

    def __init__(self, seed: int = 10) -> None:
        self.rnd = random.Random(seed)
        self.codec = Codec()
        self.samples = sample_records()
        self.fingerprints = list(released_schemas())

    def event(self, event_type: str, n: int) -> tuple[dict, str]:
        """A copy of the sample ``event_type`` with a fresh event id (and run / experiment names of its own)."""
        rec = copy.deepcopy(self.samples[event_type])
        eid = uuid7()
        rec["envelope"]["event_id"] = eid
        if "run_id" in rec:
            rec["run_id"] = rec["envelope"]["entity"]["key"] = f"{n:032x}"
        if event_type == "ExperimentCreated":
            rec["experiment"] = rec["envelope"]["entity"]["key"] = f"{MARKER}-{n}"
        if event_type == "RunStarted":
            rec["name"] = f"{MARKER}-{n}"
        if event_type == "AlertChanged":
            rec["alert_id"] = f"faults/{n}"
            rec["message"] = f"{MARKER}-{n}"
        return rec, eid

    def good(self, topic: str, n: int) -> Record:
        event_type = self.rnd.choice(TOPIC_TYPES[topic])
        rec, eid = self.event(event_type, n)
        return Record(topic, self.codec.encode(event_type, rec), f"k{n % 16}".encode(), None, eid,
                      [("modelog.event_type", event_type.encode()), ("modelog.event_id", eid.encode())])

    def bad(self, topic: str, n: int, kind: str | None = None) -> Record:
        kind = kind or KINDS[n % len(KINDS)]
        event_type = self.rnd.choice(TOPIC_TYPES[topic])
        if kind in ("array-mismatch", "rule-broken"):
            event_type = "MetricsLogged" if kind == "array-mismatch" or self.rnd.random() < 0.5 else event_type
        if kind == "invalid-utf8":
            event_type = self.rnd.choice(("ExperimentCreated", "RunStarted", "AlertChanged"))
        rec, eid = self.event(event_type, n)
        headers = [("modelog.event_type", event_type.encode()), (EVENT_ID_HEADER, eid.encode())]
        value = self.codec.encode(event_type, rec)
        value = getattr(self, "_" + kind.replace("-", "_"))(value, event_type, rec, headers)
        return Record(topic, value, f"k{n % 16}".encode(), kind, eid, headers)

    # -- the mutations: (encoded value, its type, its record, headers to change in place) -> new value --------
    def _bit_flip_header(self, v: bytes, *_):
        b = bytearray(v)
        i = self.rnd.randrange(10)
        b[i] ^= 1 << self.rnd.randrange(8)
        return bytes(b)

    def _bit_flip_body(self, v: bytes, *_):
        b = bytearray(v)
        for _ in range(self.rnd.randint(1, 3)):
            b[self.rnd.randrange(10, len(b))] ^= 1 << self.rnd.randrange(8)
        return bytes(b)

    def _truncated(self, v: bytes, *_):
        return v[: self.rnd.randrange(10, len(v))]

    def _wrong_fingerprint(self, v: bytes, event_type: str, *_):
        own = v[2:10]
        others = [fp for fp, s in released_schemas().items() if s.event_type != event_type and fp != own]
        fp = self.rnd.choice(others) if self.rnd.random() < 0.7 else self.rnd.randbytes(8)
        return v[:2] + fp + v[10:]

    def _absurd_length(self, v: bytes, *_):
        # every event starts with its envelope, whose first field is the event id string: its length varint
        # is v[10]; a zig-zag varint of ~2^62 (or of -1000) claims more than any record holds
        huge = b"\xfe\xff\xff\xff\xff\xff\xff\xff\x7f" if self.rnd.random() < 0.7 else b"\xcf\x0f"
        return v[:10] + huge + v[11:]

    def _absurd_size(self, v: bytes, *_):
        self.sizes = getattr(self, "sizes", 0) + 1  # every 20th one ~900 KB, the others 32 KB (disk and time)
        return v[:10] + self.rnd.randbytes(900_000 if self.sizes % 20 == 1 else 32_768)

    def _array_mismatch(self, v: bytes, event_type: str, rec: dict, _h):
        n = self.rnd.choice((1, 3, 1000))
        cols = metric_columns.from_points([{"key": "loss", "value": 0.1 * i, "step": i, "timestamp": 1 + i}
                                           for i in range(n)])
        which = self.rnd.choice(("values", "steps", "timestamps", "key_index", "odd", "index"))
        if which == "odd":  # not a whole number of 8-byte items
            cols["values"] = cols["values"][:-3]
        elif which == "index":  # an index past the keys
            cols["key_index"] = metric_columns.np.full(n, 7, metric_columns.KEY_INDEX).tobytes()
        else:  # one array claims 10^5 more points than the others
            cols[which] = cols[which] + bytes(metric_columns.DTYPES[which].itemsize * 100_000)
        rec = dict(rec, columns=cols, points=[])
        return self.codec.encode("MetricsLogged", rec)

    def _nesting(self, v: bytes, *_):
        return v[:10] + b'{"a":' * 5_000 + b"[" * 5_000

    def _invalid_utf8(self, v: bytes, *_):
        marker = MARKER.encode()
        i = v.index(marker)
        bad = bytes(self.rnd.choice((0xFF, 0xFE, 0xC0, 0x80)) for _ in marker)
        return v[:i] + bad + v[i + len(marker):]

    def _empty(self, v: bytes, *_):
        return b"" if self.rnd.random() < 0.5 else None

    def _not_avro(self, v: bytes, event_type: str, rec: dict, _h):
        return json.dumps({"event_type": event_type, "envelope": rec["envelope"]}).encode()

    def _headers_missing(self, v: bytes, event_type: str, rec: dict, headers: list):
        # a record that says it is signed but lacks the key id, the signature or the event id header
        full = [(KEY_ID_HEADER, b"k-" + self.rnd.randbytes(4).hex().encode()), (SIG_HEADER, self.rnd.randbytes(64))]
        drop = self.rnd.choice((KEY_ID_HEADER, SIG_HEADER, EVENT_ID_HEADER))
        kept = [h for h in headers + full if h[0] != drop]
        headers[:] = kept
        return v

    def _rule_broken(self, v: bytes, event_type: str, rec: dict, _h):
        rec = copy.deepcopy(rec)
        if event_type == "MetricsLogged":
            rec["columns"] = metric_columns.from_points([{"key": "bad key!", "value": 1.0, "step": 0, "timestamp": 1}])
            rec["points"] = []
        else:  # the envelope names another type than the schema's
            rec["envelope"]["event_type"] = "RunEnded" if event_type != "RunEnded" else "TagsSet"
        return self.codec.encode(event_type, rec)


def campaign(total_bad: int, good_every: int = 2, seed: int = 10) -> list[Record]:
    """``total_bad`` mutated records over the three projected topics, every kind in turn, with a good record
    after every ``good_every`` bad ones (so each bad one has good neighbours on its partition)."""
    m = Maker(seed)
    topics = list(TOPIC_TYPES)
    out: list[Record] = []
    for n in range(total_bad):
        topic = topics[n % len(topics)]
        out.append(m.bad(topic, n))
        if n % good_every == 0:
            out.append(m.good(topic, n))
    for n, topic in enumerate(topics):  # a good record last on every topic
        out.append(m.good(topic, total_bad + n))
    return out

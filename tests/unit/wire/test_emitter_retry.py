"""The emitter's Outbox: what is re-sent, what fails, what is ignored (no Kafka involved)."""

from __future__ import annotations

from confluent_kafka import KafkaError

from modelog.wire.emitter import Outbox, Pending

TIMEOUT = 30.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def pending(n: int, at: float) -> Pending:
    return Pending("t", b"k", f"v{n}".encode(), [("modelog.event_id", f"e{n}".encode())], "TagsSet", at)


def test_ack_removes_once():
    clock = Clock()
    box = Outbox(TIMEOUT, clock)
    seq = box.add(pending(0, clock()))
    assert len(box) == 1
    assert box.acked(seq) is True
    assert box.acked(seq) is False  # a second acknowledgement (of an older attempt) counts nothing
    assert len(box) == 0 and box.take_failures() == []


def test_retriable_error_within_deadline_is_resent_with_same_bytes():
    clock = Clock()
    box = Outbox(TIMEOUT, clock)
    p = pending(0, clock())
    seq = box.add(p)
    clock.now += TIMEOUT - 1
    assert box.failed(seq, 0, KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER, "desync") == "resend"
    assert box.failed(seq, 0, KafkaError.UNKNOWN, "again, same attempt") == "resend"  # queued twice ...
    resends = box.take_resends()
    assert resends == [(seq, 1, p)]  # ... sent once, as attempt 1, with the same event (same event id)
    assert box.take_resends() == []
    assert box.resent == 1 and len(box) == 1


def test_report_about_an_older_attempt_is_ignored_but_its_ack_counts():
    clock = Clock()
    box = Outbox(TIMEOUT, clock)
    seq = box.add(pending(0, clock()))
    box.failed(seq, 0, KafkaError.UNKNOWN, "lost the race")
    [(_, attempt, _)] = box.take_resends()
    assert box.failed(seq, 0, KafkaError._PURGE_INFLIGHT, "purged") == "ignored"  # stale attempt
    assert box.take_resends() == []
    assert box.acked(seq) is True  # the old attempt made it after all: delivered once
    assert box.failed(seq, attempt, KafkaError.UNKNOWN, "new attempt failed") == "ignored"
    assert box.take_failures() == [] and len(box) == 0


def test_deadline_counts_from_emit_and_fails_with_reason():
    clock = Clock()
    box = Outbox(TIMEOUT, clock)
    seq = box.add(pending(0, clock()))
    clock.now += TIMEOUT
    assert box.failed(seq, 0, KafkaError._MSG_TIMED_OUT, "Local: Message timed out") == "failed"
    [(event_type, reason)] = box.take_failures()
    assert event_type == "TagsSet" and "Message timed out" in reason and "30s" in reason
    assert len(box) == 0 and box.take_failures() == []


def test_permanent_error_fails_at_once():
    clock = Clock()
    box = Outbox(TIMEOUT, clock)
    seq = box.add(pending(0, clock()))
    assert box.failed(seq, 0, KafkaError.MSG_SIZE_TOO_LARGE, "too large") == "failed"
    assert box.take_failures() == [("TagsSet", "too large")]


def test_take_all_bumps_every_attempt_and_drops_queued_resends():
    clock = Clock()
    box = Outbox(TIMEOUT, clock)
    seqs = [box.add(pending(i, clock())) for i in range(5)]
    box.acked(seqs[1])
    box.failed(seqs[2], 0, KafkaError.UNKNOWN, "x")
    everything = box.take_all()  # a new producer: every unacknowledged event again
    assert sorted(s for s, _, _ in everything) == [seqs[0], seqs[2], seqs[3], seqs[4]]
    assert all(a == 1 for _, a, _ in everything)
    assert box.take_resends() == []  # the queued re-send is part of take_all
    for seq in (seqs[0], seqs[3]):  # reports of the purged first attempts change nothing
        assert box.failed(seq, 0, KafkaError._PURGE_QUEUE, "purged") == "ignored"
    assert len(box) == 4


def test_discard_forgets():
    box = Outbox(TIMEOUT)
    seq = box.add(pending(0, 0.0))
    box.discard(seq)
    assert len(box) == 0 and box.failed(seq, 0, KafkaError.UNKNOWN, "x") == "ignored"


class Delivered:
    """What librdkafka hands the delivery callback; ``offset`` None: acknowledged as a duplicate."""

    def __init__(self, offset: int | None) -> None:
        self._offset = offset

    def topic(self) -> str:
        return "t"

    def partition(self) -> int:
        return 0

    def offset(self) -> int | None:
        return self._offset


def test_an_acknowledgement_without_an_offset_is_sent_again():
    """The broker answered DUPLICATE_SEQUENCE_NUMBER (librdkafka: success, no offset): tansu says so after a
    kill -9 for a batch it never wrote (bench/faults.py broker-outage lost acknowledged events that way)."""
    import threading

    from modelog.wire.emitter import KafkaEmitter

    clock = Clock()
    em = KafkaEmitter.__new__(KafkaEmitter)  # the callback only: no producer, no broker
    em._outbox, em._lock, em._fatal, em.delivered, em.positions = Outbox(TIMEOUT, clock), threading.Lock(), None, 0, {}
    p = pending(0, clock())
    seq = em._outbox.add(p)
    em._on_delivery(seq, 0, None, Delivered(None))
    assert em.delivered == 0 and len(em._outbox) == 1  # not counted as delivered ...
    assert em._outbox.take_resends() == [(seq, 1, p)]  # ... but sent again, the same event
    em._on_delivery(seq, 1, None, Delivered(7))
    assert em.delivered == 1 and len(em._outbox) == 0 and em.positions == {("t", 0): 7}


def test_pending_before_a_mark_counts_only_the_events_numbered_below_it():
    clock = Clock()
    box = Outbox(TIMEOUT, clock)
    first = [box.add(pending(n, clock())) for n in range(3)]
    mark = box.mark()
    later = box.add(pending(3, clock()))  # emitted by another thread after flush took its mark
    assert mark == later and box.pending_before(mark) == 3 and len(box) == 4
    box.acked(first[1])
    assert box.pending_before(mark) == 2
    box.acked(first[0])
    box.failed(first[2], 0, KafkaError.MSG_SIZE_TOO_LARGE, "too large")  # failed for good: not pending
    assert box.pending_before(mark) == 0 and len(box) == 1  # the later event is the next flush's
    assert box.pending_before(box.mark()) == 1
